import { Test } from '@nestjs/testing';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cacheConfig } from '../config/cache.config';
import { type CachedImage, createCachedImage } from './cached-image';
import { DiskStore, sha256Hex } from './disk-store';

const JPEG_START = Buffer.from([0xff, 0xd8, 0xff, 0xe0]);

function imageOf(
  key: string,
  text: string,
  fetchedAt = Date.parse('2026-01-01T00:00:00Z'),
): CachedImage {
  const body = Buffer.concat([JPEG_START, Buffer.from(text)]);
  return createCachedImage({
    key,
    body,
    contentType: 'image/jpeg',
    sha256: sha256Hex(body),
    fetchedAt,
    picsumId: '7',
    source: 'http://127.0.0.1/id/7/10/10.jpg',
  });
}

describe(DiskStore.name, () => {
  let directory: string;

  async function openStore(cacheDir = directory): Promise<DiskStore> {
    const moduleRef = await Test.createTestingModule({
      providers: [
        DiskStore,
        {
          provide: cacheConfig.KEY,
          useValue: { directory: cacheDir, ttlSeconds: 600 },
        },
      ],
    }).compile();
    await moduleRef.init();
    return moduleRef.get(DiskStore);
  }

  beforeEach(async () => {
    directory = await mkdtemp(join(tmpdir(), 'disk-store-'));
  });

  afterEach(() => rm(directory, { recursive: true, force: true }));

  it('creates a missing cache directory', async () => {
    const store = await openStore(join(directory, 'nested', 'storage'));

    await expect(readdir(store.directory)).resolves.toEqual([]);
  });

  it('refuses to start on a CACHE_DIR that cannot be created, naming it', async () => {
    const file = join(directory, 'a-file');
    await writeFile(file, 'not a directory');

    await expect(openStore(join(file, 'storage'))).rejects.toThrow(
      `CACHE_DIR="${join(file, 'storage')}" is not usable`,
    );
  });

  it('loads what it saved, in a new store on the same directory', async () => {
    const image = imageOf('1200x1200', 'first');
    await (await openStore()).save(image);

    const loaded = await (await openStore()).load('1200x1200');

    expect(loaded).toEqual(image);
  });

  it('has nothing for a key never saved', async () => {
    await expect((await openStore()).load('1x1')).resolves.toBeUndefined();
  });

  it('replaces an entry and removes the body it replaced', async () => {
    const store = await openStore();
    await store.save(imageOf('k', 'first'));

    await store.save(imageOf('k', 'second'));

    expect((await store.load('k'))?.body.toString()).toContain('second');
    const bodies = (await readdir(directory)).filter((name) =>
      name.endsWith('.img'),
    );
    expect(bodies).toHaveLength(1);
  });

  it('discards an entry whose body does not match its checksum instead of serving it', async () => {
    const store = await openStore();
    await store.save(imageOf('k', 'original'));
    const [bodyFile] = (await readdir(directory)).filter((name) =>
      name.endsWith('.img'),
    );
    await writeFile(
      join(directory, bodyFile),
      Buffer.concat([JPEG_START, Buffer.from('tampered')]),
    );

    await expect(store.load('k')).resolves.toBeUndefined();
    expect(await readdir(directory)).toEqual([]);
  });

  it('discards an entry whose body was truncated', async () => {
    const store = await openStore();
    await store.save(imageOf('k', 'a longer body that gets cut'));
    const [bodyFile] = (await readdir(directory)).filter((name) =>
      name.endsWith('.img'),
    );
    const body = await readFile(join(directory, bodyFile));
    await writeFile(join(directory, bodyFile), body.subarray(0, 8));

    await expect(store.load('k')).resolves.toBeUndefined();
  });

  it('discards metadata that is not valid JSON', async () => {
    const store = await openStore();
    await store.save(imageOf('k', 'body'));
    const [metadataFile] = (await readdir(directory)).filter((name) =>
      name.endsWith('.meta.json'),
    );
    await writeFile(join(directory, metadataFile), '{"version":1,"key":');

    await expect(store.load('k')).resolves.toBeUndefined();
  });

  it('sweeps what an interrupted write left behind at start and keeps complete entries', async () => {
    await (await openStore()).save(imageOf('k', 'kept'));
    await writeFile(join(directory, '.half-written.tmp'), 'partial');
    await writeFile(
      join(directory, '0123abcd.89ef.img'),
      'body whose metadata was never renamed into place',
    );
    await writeFile(join(directory, 'broken.meta.json'), 'not json');

    const store = await openStore();

    const names = await readdir(directory);
    expect(names.filter((name) => name.endsWith('.tmp'))).toEqual([]);
    expect(names).not.toContain('0123abcd.89ef.img');
    expect(names).not.toContain('broken.meta.json');
    expect((await store.load('k'))?.body.toString()).toContain('kept');
  });

  it('probes the directory without leaving files behind', async () => {
    const store = await openStore();

    await store.probe();

    expect(await readdir(directory)).toEqual([]);
  });

  it('fails the probe when the directory is gone', async () => {
    const store = await openStore();
    await rm(directory, { recursive: true });

    await expect(store.probe()).rejects.toThrow(/ENOENT/);
  });
});
