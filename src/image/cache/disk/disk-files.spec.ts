import { Logger } from '@nestjs/common';
import { execFileSync } from 'node:child_process';
import {
  mkdtemp,
  readdir,
  readFile,
  rm,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cachedImageOf } from '../../../../test/support/cached-image-of';
import {
  encodeEntry,
  metadataNameOf,
  type StoredMetadata,
} from './disk-entry-format';
import { DiskFiles } from './disk-files';

describe(DiskFiles.name, () => {
  let directory: string;
  let files: DiskFiles;

  beforeEach(async () => {
    directory = await mkdtemp(join(tmpdir(), 'disk-files-'));
    const logger = new Logger('test');
    jest.spyOn(logger, 'warn').mockImplementation(() => undefined);
    files = new DiskFiles(directory, false, logger);
  });

  afterEach(() => rm(directory, { recursive: true, force: true }));

  /** Writes the entry of key `k` as the disk tier does, and returns what its metadata says. */
  async function writeEntryOfK(): Promise<{
    metadata: StoredMetadata;
    body: Buffer;
  }> {
    const image = cachedImageOf('k', 'pixels');
    const { metadata, metadataText } = encodeEntry(image);
    await files.writeEntry(
      'k',
      metadata.bodyFile,
      image.body,
      metadataText,
      undefined,
    );
    return { metadata, body: image.body };
  }

  it('writes an entry’s body and metadata, and leaves no temporary file', async () => {
    const { metadata, body } = await writeEntryOfK();

    expect((await readdir(directory)).sort()).toEqual(
      [metadata.bodyFile, metadataNameOf('k')].sort(),
    );
    expect(await readFile(join(directory, metadata.bodyFile))).toEqual(body);
    await expect(files.match('k', { metadata, diskBytes: 0 })).resolves.toBe(
      true,
    );
  });

  it('removes the metadata, then the body, of an entry', async () => {
    const { metadata } = await writeEntryOfK();

    await files.removeEntry('k', { metadata, diskBytes: 0 });

    expect(await readdir(directory)).toEqual([]);
    await expect(files.match('k', { metadata, diskBytes: 0 })).resolves.toBe(
      false,
    );
  });

  it('reads a regular file of the size expected, and refuses one of another size', async () => {
    await writeFile(join(directory, 'a.img'), 'twelve bytes');

    await expect(files.read('a.img', 12)).resolves.toEqual(
      Buffer.from('twelve bytes'),
    );
    await expect(files.read('a.img', 13)).rejects.toThrow('12 bytes, not 13');
  });

  it('never reads through a symbolic link', async () => {
    await writeFile(join(directory, 'target'), 'secret');
    await symlink(join(directory, 'target'), join(directory, 'link.img'));

    await expect(files.read('link.img')).rejects.toThrow(/ELOOP/);
  });

  it('refuses a FIFO at once instead of waiting for a writer', async () => {
    execFileSync('mkfifo', [join(directory, 'fifo.img')]);

    await expect(files.read('fifo.img')).rejects.toThrow('not a regular file');
  });

  it('probes writes without leaving a file, and tells whether the directory can be listed', async () => {
    await files.probeWrite();

    expect(await readdir(directory)).toEqual([]);
    await expect(files.isReadable()).resolves.toBe(true);
    await rm(directory, { recursive: true });
    await expect(files.probeWrite()).rejects.toThrow(/ENOENT/);
    await expect(files.isReadable()).resolves.toBe(false);
  });

  it('reports the size of the filesystem it is on', async () => {
    await expect(files.filesystemBytes()).resolves.toBeGreaterThan(0);
  });
});
