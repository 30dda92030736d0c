import type { Logger } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import { constants, type Stats } from 'node:fs';
import {
  type FileHandle,
  lstat,
  open,
  opendir,
  readdir,
  rename,
  rm,
  statfs,
} from 'node:fs/promises';
import { join } from 'node:path';
import { errorMessage } from '../../../common/error-message';
import {
  type DiskEntry,
  metadataNameOf,
  PROBE_PREFIX,
  TEMP_SUFFIX,
} from './disk-entry-format';

/** A disk read slower than this (a hung volume) fails, so no request waits on it for ever. */
export const DISK_READ_TIMEOUT_MS = 5000;
/** Never follows a symbolic link, and does not block opening a FIFO (refused right after). */
const SAFE_READ_FLAGS =
  constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;

/**
 * The files of the cache directory, by name: atomic writes (a temporary file renamed into
 * place, fsynced first with `CACHE_DISK_FSYNC`), reads of regular files only, and removal.
 * Knows the order an entry's files are written and removed in, so a crash at any moment
 * leaves either the old entry or the new one, plus files the start-up sweep removes.
 */
export class DiskFiles {
  constructor(
    readonly directory: string,
    private readonly fsync: boolean,
    private readonly logger: Logger,
  ) {}

  /** Reads the file `name`, refusing all but a regular file of `expectedBytes` (when given). */
  read(name: string, expectedBytes?: number): Promise<Buffer> {
    return readRegularFile(join(this.directory, name), expectedBytes);
  }

  /** The names in the directory. */
  list(): Promise<string[]> {
    return readdir(this.directory);
  }

  /** What the file `name` is, without following a link. */
  stat(name: string): Promise<Stats> {
    return lstat(join(this.directory, name));
  }

  /** The size of the filesystem holding the directory, in bytes. */
  async filesystemBytes(): Promise<number> {
    const { blocks, bsize } = await statfs(this.directory);
    return blocks * bsize;
  }

  /**
   * Writes an entry: body first, then the metadata naming it, so the metadata never names a
   * body that is not complete. A body whose metadata could not be written goes, unless it is
   * `previousBody`, the one the entry's current metadata names.
   */
  async writeEntry(
    key: string,
    bodyFile: string,
    body: Buffer,
    metadataText: string,
    previousBody: string | undefined,
  ): Promise<void> {
    await this.writeAtomically(bodyFile, body);
    try {
      await this.writeAtomically(metadataNameOf(key), metadataText);
    } catch (error) {
      if (bodyFile !== previousBody) {
        await this.removeQuietly(bodyFile);
      }
      throw error;
    }
    if (this.fsync) {
      await this.syncDirectory();
    }
  }

  /** Metadata first: a crash in between leaves only a body that no metadata names, swept at start. */
  async removeEntry(key: string, entry: DiskEntry): Promise<void> {
    await rm(join(this.directory, metadataNameOf(key)), { force: true });
    await rm(join(this.directory, entry.metadata.bodyFile), { force: true });
  }

  /** Removes the file `name`; fails when it stays. */
  remove(name: string): Promise<void> {
    return rm(join(this.directory, name), { force: true });
  }

  /** Best-effort removal of the file `name`: false, logged, when it stays. */
  async removeQuietly(name: string): Promise<boolean> {
    try {
      await this.remove(name);
      return true;
    } catch (error) {
      this.logger.warn(
        `Could not remove ${join(this.directory, name)}: ${errorMessage(error)}`,
      );
      return false;
    }
  }

  /** Whether an entry's files are still regular files of the sizes it was stored with. */
  async match(key: string, entry: DiskEntry): Promise<boolean> {
    try {
      const [metadata, body] = await Promise.all([
        this.stat(metadataNameOf(key)),
        this.stat(entry.metadata.bodyFile),
      ]);
      return (
        metadata.isFile() && body.isFile() && body.size === entry.metadata.bytes
      );
    } catch {
      return false;
    }
  }

  /** Creates, fsyncs and removes a small file: fails when the directory does not take writes. */
  async probeWrite(): Promise<void> {
    const path = join(
      this.directory,
      `${PROBE_PREFIX}${randomUUID()}${TEMP_SUFFIX}`,
    );
    try {
      const file = await open(path, 'wx');
      try {
        await file.writeFile('ok');
        await file.sync();
      } finally {
        await file.close();
      }
    } finally {
      await rm(path, { force: true });
    }
  }

  /** Whether the directory can be listed, so stored entries can be found and read. */
  async isReadable(): Promise<boolean> {
    try {
      const directory = await opendir(this.directory);
      await directory.close();
      return true;
    } catch {
      return false;
    }
  }

  /** Writes a temporary file and renames it to `name`; with `CACHE_DISK_FSYNC`, fsyncs it first. */
  private async writeAtomically(
    name: string,
    data: string | Buffer,
  ): Promise<void> {
    const temporary = join(this.directory, `.${randomUUID()}${TEMP_SUFFIX}`);
    try {
      const file = await open(temporary, 'wx', 0o644);
      try {
        await file.writeFile(data);
        if (this.fsync) {
          await file.sync();
        }
      } finally {
        await file.close();
      }
      await rename(temporary, join(this.directory, name));
    } catch (error) {
      await rm(temporary, { force: true }).catch(() => undefined);
      throw error;
    }
  }

  /** Makes the renames themselves durable, not only the file contents. */
  private async syncDirectory(): Promise<void> {
    const directory = await open(this.directory, 'r');
    try {
      await directory.sync();
    } finally {
      await directory.close();
    }
  }
}

/**
 * Reads a file, refusing anything but a regular file (a symbolic link, a FIFO, a device), one
 * of another size than `expectedBytes` when given, and a read that takes longer than
 * `DISK_READ_TIMEOUT_MS`.
 */
async function readRegularFile(
  path: string,
  expectedBytes?: number,
): Promise<Buffer> {
  const file = await open(path, SAFE_READ_FLAGS);
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new Error(`reading took longer than ${DISK_READ_TIMEOUT_MS} ms`),
        ),
      DISK_READ_TIMEOUT_MS,
    );
  });
  try {
    const info = await Promise.race([file.stat(), timeout]);
    if (!info.isFile()) {
      throw new Error('not a regular file');
    }
    if (expectedBytes !== undefined && info.size !== expectedBytes) {
      throw new Error(`${info.size} bytes, not ${expectedBytes}`);
    }
    return await Promise.race([file.readFile(), timeout]);
  } finally {
    clearTimeout(timer);
    // Not awaited: closing waits for a read that hangs, and the caller must not.
    closeQuietly(file);
  }
}

function closeQuietly(file: FileHandle): void {
  file.close().catch(() => undefined);
}
