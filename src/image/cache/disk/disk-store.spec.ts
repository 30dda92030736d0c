import { execFileSync } from 'node:child_process';
import {
  type FileHandle,
  mkdir,
  mkdtemp,
  open,
  readdir,
  readFile,
  rm,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  cachedImageOf,
  JPEG_START,
} from '../../../../test/support/cached-image-of';
import { diskUsage } from '../../../../test/support/disk-usage';
import { FakeClock } from '../../../../test/support/fake-clock';
import { openDiskStore } from '../../../../test/support/open-disk-store';
import { createCachedImage, sha256Hex } from '../cached-image';
import { DiskStore } from './disk-store';

const CHECK_INTERVAL_MS = 5000;
const BLOCK = 4096;
/** A small entry takes one block for its body and one for its metadata. */
const ENTRY = 2 * BLOCK;
/** A budget that holds `entries` small entries, plus the block kept for the readiness probe. */
const budgetFor = (entries: number) => BLOCK + entries * ENTRY;

describe(DiskStore.name, () => {
  let directory: string;
  let clock: FakeClock;

  function openStore(
    cacheDir = directory,
    diskMaxBytes = 64 * 1024 * 1024,
    diskFsync = false,
  ): Promise<DiskStore> {
    return openDiskStore(
      cacheDir,
      diskMaxBytes,
      clock,
      CHECK_INTERVAL_MS,
      diskFsync,
    );
  }

  /** The prototype of Node's FileHandle, whose methods every file write of the store goes through. */
  async function fileHandlePrototype(): Promise<FileHandle> {
    const handle = await open(join(directory, 'handle-probe'), 'w');
    await handle.close();
    await rm(join(directory, 'handle-probe'));
    return Object.getPrototypeOf(handle) as FileHandle;
  }

  beforeEach(async () => {
    directory = await mkdtemp(join(tmpdir(), 'disk-store-'));
    clock = new FakeClock();
  });

  async function bodyFileOf(): Promise<string> {
    const [bodyFile] = (await readdir(directory)).filter((name) =>
      name.endsWith('.img'),
    );
    return join(directory, bodyFile);
  }

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
    const image = cachedImageOf('1200x1200', 'first');
    await (await openStore()).save(image);

    const loaded = await (await openStore()).load('1200x1200');

    expect(loaded).toEqual(image);
  });

  it('has nothing for a key never saved', async () => {
    await expect((await openStore()).load('1x1')).resolves.toBeUndefined();
  });

  it('replaces an entry and removes the body it replaced', async () => {
    const store = await openStore();
    await store.save(cachedImageOf('k', 'first'));

    await store.save(cachedImageOf('k', 'second'));

    expect((await store.load('k'))?.body.toString()).toContain('second');
    const bodies = (await readdir(directory)).filter((name) =>
      name.endsWith('.img'),
    );
    expect(bodies).toHaveLength(1);
  });

  it('takes saves of one key in turn: the last one started is the entry, and only its body stays', async () => {
    const store = await openStore();

    await Promise.all(
      ['first', 'second', 'third'].map((text) =>
        store.save(cachedImageOf('k', text)),
      ),
    );

    expect((await store.load('k'))?.body.toString()).toContain('third');
    const names = await readdir(directory);
    expect(names.filter((name) => name.endsWith('.img'))).toHaveLength(1);
    expect(names.filter((name) => name.endsWith('.meta.json'))).toHaveLength(1);
    expect(store.usedBytes).toBe(ENTRY);
  });

  it('writes entries of different keys at once', async () => {
    const store = await openStore();
    const prototype = await fileHandlePrototype();
    // The real method, called with each handle as `this` below.
    // eslint-disable-next-line @typescript-eslint/unbound-method
    const original = prototype.writeFile;
    let inFlight = 0;
    let peak = 0;
    const spy = jest
      .spyOn(prototype, 'writeFile')
      .mockImplementation(async function (this: FileHandle, ...args) {
        inFlight += 1;
        peak = Math.max(peak, inFlight);
        await new Promise((resolve) => setTimeout(resolve, 20));
        try {
          return await original.apply(this, args);
        } finally {
          inFlight -= 1;
        }
      });
    try {
      await Promise.all(
        Array.from({ length: 6 }, (_, i) =>
          store.save(cachedImageOf(`k${i}`, `${i}`)),
        ),
      );
    } finally {
      spy.mockRestore();
    }

    expect(peak).toBeGreaterThan(1);
    expect(store.entryCount).toBe(6);
  });

  it('fsyncs files and the directory only with CACHE_DISK_FSYNC', async () => {
    const prototype = await fileHandlePrototype();
    const sync = jest.spyOn(prototype, 'sync');
    try {
      const store = await openStore(directory, 64 * 1024 * 1024, false);
      sync.mockClear(); // the start-up probe's
      await store.save(cachedImageOf('plain', 'plain'));
      expect(sync).not.toHaveBeenCalled();

      const durable = await openStore(directory, 64 * 1024 * 1024, true);
      sync.mockClear();
      await durable.save(cachedImageOf('durable', 'durable'));
      // The body, the metadata and the directory.
      expect(sync).toHaveBeenCalledTimes(3);
    } finally {
      sync.mockRestore();
    }
  });

  it('reconciles without removing what the saves in flight are writing', async () => {
    const store = await openStore();

    await Promise.all([
      ...Array.from({ length: 5 }, (_, i) =>
        store.save(cachedImageOf(`k${i}`, `${i}`)),
      ),
      store.reconcile(),
    ]);

    expect(store.entryCount).toBe(5);
    for (let i = 0; i < 5; i++) {
      expect((await store.load(`k${i}`))?.body.toString()).toContain(`${i}`);
    }
    expect(await diskUsage(directory)).toBe(5 * ENTRY);
  });

  it('discards an entry whose body does not match its checksum instead of serving it', async () => {
    const store = await openStore();
    await store.save(cachedImageOf('k', 'original'));
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
    await store.save(cachedImageOf('k', 'a longer body that gets cut'));
    const [bodyFile] = (await readdir(directory)).filter((name) =>
      name.endsWith('.img'),
    );
    const body = await readFile(join(directory, bodyFile));
    await writeFile(join(directory, bodyFile), body.subarray(0, 8));

    await expect(store.load('k')).resolves.toBeUndefined();
  });

  it('discards metadata that is not valid JSON when it rebuilds its index', async () => {
    await (await openStore()).save(cachedImageOf('k', 'body'));
    const [metadataFile] = (await readdir(directory)).filter((name) =>
      name.endsWith('.meta.json'),
    );
    await writeFile(join(directory, metadataFile), '{"version":1,"key":');

    const store = await openStore();

    expect(store.has('k')).toBe(false);
    await expect(store.load('k')).resolves.toBeUndefined();
    expect(await readdir(directory)).toEqual([]);
  });

  it('keeps the directory within CACHE_DISK_MAX_SIZE, evicting the least recently used first', async () => {
    const store = await openStore(directory, budgetFor(3));
    for (const key of ['a', 'b', 'c']) {
      await store.save(cachedImageOf(key, key));
    }
    store.touch('a');

    await store.save(cachedImageOf('d', 'd'));

    expect(['a', 'b', 'c', 'd'].filter((key) => store.has(key))).toEqual([
      'a',
      'c',
      'd',
    ]);
    expect(store.usedBytes).toBe(3 * ENTRY);
    expect(await diskUsage(directory)).toBe(3 * ENTRY);
    expect((await store.load('a'))?.body.toString()).toContain('a');
  });

  it('never crosses the budget while a burst of saves runs at once', async () => {
    const budget = budgetFor(3);
    const store = await openStore(directory, budget);
    let peak = 0;
    let saving = true;
    const watch = (async () => {
      while (saving) {
        peak = Math.max(peak, await diskUsage(directory));
        await new Promise((resolve) => setImmediate(resolve));
      }
    })();

    await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        store.save(cachedImageOf(`k${i}`, `${i}`)),
      ),
    );
    saving = false;
    await watch;

    expect(peak).toBeGreaterThan(0);
    expect(peak).toBeLessThanOrEqual(budget - BLOCK);
    expect(store.entryCount).toBe(3);
    expect(await diskUsage(directory)).toBe(3 * ENTRY);
  });

  it('refuses, storing nothing, an entry larger than the whole budget', async () => {
    const store = await openStore(directory, budgetFor(2));
    await store.save(cachedImageOf('small', 'small'));

    const stored = await store.save(
      cachedImageOf('huge', 'x'.repeat(3 * ENTRY)),
    );

    expect(stored).toBe(false);
    expect(store.has('huge')).toBe(false);
    expect(store.has('small')).toBe(true);
  });

  it('rebuilds its index at start, the entries fetched longest ago first in line for eviction', async () => {
    const day = 24 * 3600 * 1000;
    const first = await openStore(directory, budgetFor(3));
    await first.save(
      cachedImageOf('newest', 'n', Date.parse('2026-01-03T00:00:00Z')),
    );
    await first.save(
      cachedImageOf('oldest', 'o', Date.parse('2026-01-01T00:00:00Z')),
    );
    await first.save(
      cachedImageOf('middle', 'm', Date.parse('2026-01-02T00:00:00Z')),
    );

    const store = await openStore(directory, budgetFor(3));

    expect(store.entries().map((metadata) => metadata.key)).toEqual([
      'oldest',
      'middle',
      'newest',
    ]);
    expect(store.usedBytes).toBe(3 * ENTRY);
    await store.save(
      cachedImageOf('new', 'x', Date.parse('2026-01-04T00:00:00Z') + day),
    );
    expect(store.has('oldest')).toBe(false);
    expect(store.has('middle')).toBe(true);
  });

  it('shrinks to a lowered budget at start, removing the oldest entries', async () => {
    const first = await openStore(directory, budgetFor(3));
    for (const [key, day] of [
      ['a', 1],
      ['b', 2],
      ['c', 3],
    ] as const) {
      await first.save(
        cachedImageOf(key, key, Date.parse(`2026-01-0${day}T00:00:00Z`)),
      );
    }

    const store = await openStore(directory, budgetFor(1));

    expect(store.entries().map((metadata) => metadata.key)).toEqual(['c']);
    expect(await diskUsage(directory)).toBe(ENTRY);
  });

  it('removes the entries a predicate picks, files and all', async () => {
    const store = await openStore();
    await store.save(
      cachedImageOf('old', 'o', Date.parse('2026-01-01T00:00:00Z')),
    );
    await store.save(
      cachedImageOf('new', 'n', Date.parse('2026-02-01T00:00:00Z')),
    );

    const removed = await store.removeWhere(
      (metadata) => metadata.fetchedAt < '2026-01-15',
    );

    expect(removed).toBe(1);
    expect(store.has('old')).toBe(false);
    expect(store.has('new')).toBe(true);
    expect(await diskUsage(directory)).toBe(ENTRY);
  });

  it('sweeps what an interrupted write left behind at start and keeps complete entries', async () => {
    await (await openStore()).save(cachedImageOf('k', 'kept'));
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

  it('probes the directory for readiness without leaving files behind', async () => {
    const store = await openStore();

    await expect(store.status()).resolves.toEqual({
      readable: true,
      writable: true,
    });
    expect(await readdir(directory)).toEqual([]);
  });

  it('probes at most once per READINESS_DISK_CHECK_INTERVAL_MS, answering the last result in between', async () => {
    const store = await openStore();
    await store.status();
    await rm(directory, { recursive: true });

    const inBetween = await store.status();
    clock.advanceSeconds(CHECK_INTERVAL_MS / 1000);
    const after = await store.status();

    expect(inBetween).toEqual({ readable: true, writable: true });
    expect(after).toMatchObject({ readable: false, writable: false });
    expect(after.reason).toMatch(/ENOENT/);
  });

  it('marks itself not writable at once when one of its own writes fails', async () => {
    const store = await openStore();
    await store.status();
    await rm(directory, { recursive: true });

    const saved = await store.save(cachedImageOf('k', 'body'));

    expect(saved).toBe(false);
    await expect(store.status()).resolves.toMatchObject({
      writable: false,
      reason: expect.stringMatching(/ENOENT/) as unknown,
    });
  });

  it('serves a stored image with the type its bytes have, not the type its metadata names', async () => {
    await (await openStore()).save(cachedImageOf('k', 'body'));
    const [metadataFile] = (await readdir(directory)).filter((name) =>
      name.endsWith('.meta.json'),
    );
    const path = join(directory, metadataFile);
    const metadata = JSON.parse(await readFile(path, 'utf8')) as object;
    await writeFile(
      path,
      JSON.stringify({ ...metadata, contentType: 'image/svg+xml' }),
    );

    const loaded = await (await openStore()).load('k');

    expect(loaded?.contentType).toBe('image/jpeg');
    expect(loaded?.bodyHeaders['content-type']).toBe('image/jpeg');
  });

  it('discards a stored body that is not a complete image even when its checksum matches', async () => {
    const store = await openStore();
    const svg = Buffer.from('<x  ftypavif="1"><script>alert(1)</script></x>');
    await store.save(
      createCachedImage({
        ...cachedImageOf('k', ''),
        body: svg,
        sha256: sha256Hex(svg),
        contentType: 'image/svg+xml',
      }),
    );

    await expect(store.load('k')).resolves.toBeUndefined();
    expect(store.has('k')).toBe(false);
  });

  it('never follows a body that was replaced by a symbolic link, even to identical bytes', async () => {
    const store = await openStore();
    const image = cachedImageOf('k', 'linked');
    await store.save(image);
    const bodyFile = await bodyFileOf();
    const elsewhere = await mkdtemp(join(tmpdir(), 'disk-store-elsewhere-'));
    await writeFile(join(elsewhere, 'same-bytes'), image.body);
    await rm(bodyFile);
    await symlink(join(elsewhere, 'same-bytes'), bodyFile);

    const loaded = await store.load('k');
    await rm(elsewhere, { recursive: true });

    expect(loaded).toBeUndefined();
    expect(store.has('k')).toBe(false);
  });

  it('discards a body that is a FIFO at once instead of waiting on it', async () => {
    const store = await openStore();
    await store.save(cachedImageOf('k', 'fifo'));
    const bodyFile = await bodyFileOf();
    await rm(bodyFile);
    execFileSync('mkfifo', [bodyFile]);

    await expect(store.load('k')).resolves.toBeUndefined();
    expect(store.has('k')).toBe(false);
  }, 10_000);

  it('starts past metadata that is a FIFO or a link, and a directory named like a leftover', async () => {
    await (await openStore()).save(cachedImageOf('k', 'kept'));
    execFileSync('mkfifo', [join(directory, 'aaaa.meta.json')]);
    await symlink('/etc/passwd', join(directory, 'bbbb.meta.json'));
    await mkdir(join(directory, 'junk.tmp'));

    const store = await openStore();

    expect(store.entryCount).toBe(1);
    expect((await store.load('k'))?.body.toString()).toContain('kept');
  }, 10_000);

  it('reconciles its index with the directory: gone entries leave it, files no entry names go', async () => {
    const store = await openStore();
    await store.save(cachedImageOf('gone', 'gone'));
    await store.save(cachedImageOf('kept', 'kept'));
    const [goneMetadata] = (await readdir(directory)).filter((name) =>
      name.endsWith('.meta.json'),
    );
    await rm(join(directory, goneMetadata));
    await writeFile(join(directory, 'stray.img'), 'nobody names me');

    await store.reconcile();

    expect(store.entryCount).toBe(1);
    expect(store.usedBytes).toBe(ENTRY);
    expect(await diskUsage(directory)).toBe(ENTRY);
    expect(await readdir(directory)).not.toContain('stray.img');
  });

  it('lets the writes in flight finish at shutdown, so nothing writes into the directory after', async () => {
    const store = await openStore();
    const prototype = await fileHandlePrototype();
    // The real method, called with each handle as `this` below.
    // eslint-disable-next-line @typescript-eslint/unbound-method
    const original = prototype.writeFile;
    let release = () => {};
    const gate = new Promise<void>((resolve) => (release = resolve));
    const spy = jest
      .spyOn(prototype, 'writeFile')
      .mockImplementation(async function (this: FileHandle, ...args) {
        await gate;
        return original.apply(this, args);
      });

    const saving = store.save(cachedImageOf('1200x1200', 'slow'));
    let shutDown = false;
    const shutdown = store.onApplicationShutdown().then(() => {
      shutDown = true;
    });
    await new Promise((resolve) => setTimeout(resolve, 50));
    const beforeRelease = shutDown;
    release();
    await shutdown;

    spy.mockRestore();

    expect(beforeRelease).toBe(false);
    await expect(saving).resolves.toBe(true);
    expect(store.has('1200x1200')).toBe(true);
  });
});
