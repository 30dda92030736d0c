import { Inject, Injectable, Logger, OnModuleInit } from '@nestjs/common';
import type { ConfigType } from '@nestjs/config';
import { Mutex } from 'async-mutex';
import { LRUCache } from 'lru-cache';
import { createHash, randomUUID } from 'node:crypto';
import {
  mkdir,
  open,
  readFile,
  readdir,
  rename,
  rm,
  stat,
} from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { errorMessage } from '../common/error-message';
import { cacheConfig } from '../config/cache.config';
import { type CachedImage, createCachedImage } from './cached-image';

const METADATA_SUFFIX = '.meta.json';
const BODY_SUFFIX = '.img';
const TEMP_SUFFIX = '.tmp';
/** Files take whole blocks on disk, and the kubelet measures an emptyDir in blocks. */
const BLOCK_BYTES = 4096;
/** Kept free of entries for the readiness probe's small file. */
const PROBE_RESERVE_BYTES = BLOCK_BYTES;

const metadataSchema = z.object({
  version: z.literal(1),
  key: z.string().min(1),
  contentType: z.string().startsWith('image/'),
  bytes: z.number().int().positive(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  fetchedAt: z.iso.datetime(),
  picsumId: z.string().optional(),
  source: z.string(),
  bodyFile: z.string().regex(/^[0-9a-f]+\.[0-9a-f]+\.img$/),
});

export type StoredMetadata = z.infer<typeof metadataSchema>;

/** What the in-memory index knows of a stored entry, so that finding one never reads the disk. */
interface IndexEntry {
  readonly metadata: StoredMetadata;
  /** Disk space of the body and the metadata file, in whole blocks. */
  readonly diskBytes: number;
}

/**
 * The second tier: cached images on local disk (`CACHE_DIR`), so they outlive the process,
 * within a byte budget (`CACHE_DISK_MAX_SIZE`).
 *
 * Each entry is a body file named after its checksum plus a metadata file naming that body.
 * Both are written to a temporary file, fsynced and renamed into place, body first, and the
 * old body is removed only after the new metadata is durable. A crash at any moment therefore
 * leaves either the old entry or the new one, and whatever a crash left behind (temporary
 * files, bodies no metadata names) is swept at start. Every load verifies size and checksum.
 *
 * An index in memory, rebuilt from the metadata files at start, knows every entry, its size
 * and its recency, so lookups never list or read the directory. Writes take turns: each one
 * first evicts least-recently-used entries until the new entry fits, and only then writes, so
 * the directory never holds more than the budget, temporary files included.
 */
@Injectable()
export class DiskStore implements OnModuleInit {
  private readonly logger = new Logger(DiskStore.name);
  readonly directory: string;
  readonly maxBytes: number;
  private readonly index: LRUCache<string, IndexEntry>;
  private readonly writes = new Mutex();

  constructor(@Inject(cacheConfig.KEY) config: ConfigType<typeof cacheConfig>) {
    this.directory = config.directory;
    this.maxBytes = config.diskMaxBytes;
    this.index = new LRUCache<string, IndexEntry>({
      maxSize: this.maxBytes,
      sizeCalculation: (entry) => entry.diskBytes,
      // Entries are evicted by makeRoom() before a write; should the index ever drop one
      // itself, its files go too, so the disk never holds what the index has forgotten.
      dispose: (entry, key, reason) => {
        if (reason === 'evict') {
          void this.removeFiles(key, entry);
        }
      },
    });
  }

  async onModuleInit(): Promise<void> {
    try {
      await mkdir(this.directory, { recursive: true });
      await this.rebuildIndex();
    } catch (error) {
      throw new Error(
        `CACHE_DIR=${JSON.stringify(this.directory)} is not usable: ${errorMessage(error)}`,
      );
    }
  }

  has(key: string): boolean {
    return this.index.has(key);
  }

  /** Marks `key` as just used, for eviction, without touching the disk. */
  touch(key: string): void {
    this.index.get(key);
  }

  /** Bytes the stored entries take on disk, in whole blocks. */
  get usedBytes(): number {
    return this.index.calculatedSize;
  }

  get entryCount(): number {
    return this.index.size;
  }

  /** The metadata of every stored entry, least recently used first. */
  entries(): StoredMetadata[] {
    return [...this.index.rvalues()].flatMap((entry) =>
      entry ? [entry.metadata] : [],
    );
  }

  /** The entry stored for `key`, or `undefined` when there is none or it fails verification (it is then removed). */
  async load(key: string): Promise<CachedImage | undefined> {
    const entry = this.index.get(key);
    if (!entry) {
      return undefined;
    }
    const { metadata } = entry;
    let body: Buffer;
    try {
      body = await readFile(join(this.directory, metadata.bodyFile));
    } catch (error) {
      return this.discard(
        key,
        entry,
        `unreadable body (${errorMessage(error)})`,
      );
    }
    const sha256 = sha256Hex(body);
    if (body.length !== metadata.bytes || sha256 !== metadata.sha256) {
      return this.discard(
        key,
        entry,
        `body of ${body.length} bytes with SHA-256 ${sha256} does not match its metadata (${metadata.bytes} bytes, ${metadata.sha256})`,
      );
    }
    return createCachedImage({
      key,
      body,
      contentType: metadata.contentType,
      sha256,
      fetchedAt: Date.parse(metadata.fetchedAt),
      source: metadata.source,
      ...(metadata.picsumId ? { picsumId: metadata.picsumId } : {}),
    });
  }

  /**
   * Stores `image` as the entry for its key, replacing the previous one atomically. Returns
   * false, storing nothing, when the image alone is larger than the whole budget.
   */
  save(image: CachedImage): Promise<boolean> {
    return this.writes.runExclusive(async () => {
      const bodyFile = `${this.baseName(image.key)}.${image.sha256.slice(0, 16)}${BODY_SUFFIX}`;
      const metadata: StoredMetadata = {
        version: 1,
        key: image.key,
        contentType: image.contentType,
        bytes: image.body.length,
        sha256: image.sha256,
        fetchedAt: new Date(image.fetchedAt).toISOString(),
        source: image.source,
        bodyFile,
        ...(image.picsumId ? { picsumId: image.picsumId } : {}),
      };
      const metadataText = JSON.stringify(metadata);
      const diskBytes = diskBytesOf(image.body.length, metadataText);
      if (diskBytes > this.maxBytes - PROBE_RESERVE_BYTES) {
        this.logger.warn(
          `Not storing ${image.key} on disk: ${diskBytes} bytes exceed CACHE_DISK_MAX_SIZE (${this.maxBytes} bytes)`,
        );
        return false;
      }
      await this.makeRoom(diskBytes);
      await this.writeDurably(join(this.directory, bodyFile), image.body);
      await this.writeDurably(this.metadataPath(image.key), metadataText);
      await this.syncDirectory();
      const previous = this.index.peek(image.key);
      this.index.set(
        image.key,
        { metadata, diskBytes },
        { noDisposeOnSet: true },
      );
      if (previous && previous.metadata.bodyFile !== bodyFile) {
        await rm(join(this.directory, previous.metadata.bodyFile), {
          force: true,
        });
      }
      return true;
    });
  }

  /** Removes the entries `isExpired` picks, files and all; returns how many. */
  removeWhere(
    isExpired: (metadata: StoredMetadata) => boolean,
  ): Promise<number> {
    return this.writes.runExclusive(async () => {
      const expired = [...this.index.entries()].filter(([, entry]) =>
        isExpired(entry.metadata),
      );
      for (const [key, entry] of expired) {
        this.index.delete(key);
        await this.removeFiles(key, entry);
      }
      return expired.length;
    });
  }

  /** Proves the directory can take a write now: creates, syncs and removes a small file. */
  async probe(): Promise<void> {
    const path = join(this.directory, `.probe-${randomUUID()}${TEMP_SUFFIX}`);
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

  private async writeDurably(
    path: string,
    data: string | Buffer,
  ): Promise<void> {
    const temporary = join(this.directory, `.${randomUUID()}${TEMP_SUFFIX}`);
    try {
      const file = await open(temporary, 'wx', 0o644);
      try {
        await file.writeFile(data);
        await file.sync();
      } finally {
        await file.close();
      }
      await rename(temporary, path);
    } catch (error) {
      await rm(temporary, { force: true });
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

  /**
   * Makes room for `bytes` more: evicts least-recently-used entries until the stored entries,
   * the new one and the probe's reserve fit the budget. Runs inside a write's turn.
   */
  private async makeRoom(bytes: number): Promise<void> {
    const limit = this.maxBytes - PROBE_RESERVE_BYTES;
    while (this.index.size > 0 && this.index.calculatedSize + bytes > limit) {
      const key = this.index.rkeys().next().value as string;
      const entry = this.index.peek(key);
      this.index.delete(key);
      if (entry) {
        await this.removeFiles(key, entry);
      }
    }
  }

  /**
   * Rebuilds the index from the metadata files, and removes what an interrupted write left
   * behind (temporary files, bodies no metadata names) and what cannot be used (unreadable
   * metadata, a missing or wrongly sized body). The entries fetched longest ago count as the
   * least recently used. If they exceed the budget (it was lowered), the oldest are removed.
   */
  private async rebuildIndex(): Promise<void> {
    const names = await readdir(this.directory);
    const found: IndexEntry[] = [];
    for (const name of names.filter((entry) =>
      entry.endsWith(METADATA_SUFFIX),
    )) {
      const path = join(this.directory, name);
      try {
        const metadataText = await readFile(path, 'utf8');
        const metadata = metadataSchema.parse(JSON.parse(metadataText));
        if (name !== `${this.baseName(metadata.key)}${METADATA_SUFFIX}`) {
          throw new Error(`it names key ${JSON.stringify(metadata.key)}`);
        }
        const body = await stat(join(this.directory, metadata.bodyFile));
        if (body.size !== metadata.bytes) {
          throw new Error(
            `its body has ${body.size} bytes, not ${metadata.bytes}`,
          );
        }
        found.push({
          metadata,
          diskBytes: diskBytesOf(body.size, metadataText),
        });
      } catch (error) {
        this.logger.warn(
          `Removing unusable metadata ${name}: ${errorMessage(error)}`,
        );
        await rm(path, { force: true });
      }
    }
    // Newest first: keep what fits the budget (it may have been lowered), remove the rest.
    found.sort((a, b) =>
      b.metadata.fetchedAt.localeCompare(a.metadata.fetchedAt),
    );
    const kept: IndexEntry[] = [];
    let keptBytes = 0;
    for (const entry of found) {
      if (keptBytes + entry.diskBytes <= this.maxBytes - PROBE_RESERVE_BYTES) {
        kept.push(entry);
        keptBytes += entry.diskBytes;
      } else {
        await this.removeFiles(entry.metadata.key, entry);
      }
    }
    if (kept.length < found.length) {
      this.logger.log(
        `Removed the ${found.length - kept.length} oldest image(s) to fit CACHE_DISK_MAX_SIZE (${this.maxBytes} bytes)`,
      );
    }
    this.index.clear();
    for (const entry of kept.reverse()) {
      this.index.set(entry.metadata.key, entry);
    }
    const referenced = new Set(kept.map((entry) => entry.metadata.bodyFile));
    const leftovers = names.filter(
      (name) =>
        name.endsWith(TEMP_SUFFIX) ||
        (name.endsWith(BODY_SUFFIX) && !referenced.has(name)),
    );
    await Promise.all(
      leftovers.map((name) => rm(join(this.directory, name), { force: true })),
    );
    if (leftovers.length > 0) {
      this.logger.log(
        `Removed ${leftovers.length} leftover file(s) of interrupted writes from ${this.directory}`,
      );
    }
    this.logger.log(
      `Cache directory ${this.directory} holds ${this.index.size} stored image(s), ${this.index.calculatedSize} of ${this.maxBytes} bytes`,
    );
  }

  private async discard(
    key: string,
    entry: IndexEntry,
    reason: string,
  ): Promise<undefined> {
    this.logger.warn(
      `Discarding stored image ${JSON.stringify(key)}: ${reason}`,
    );
    if (this.index.peek(key) === entry) {
      this.index.delete(key);
    }
    await this.removeFiles(key, entry);
    return undefined;
  }

  /** Metadata first: a crash in between leaves only a body that no metadata names, swept at start. */
  private async removeFiles(key: string, entry: IndexEntry): Promise<void> {
    await rm(this.metadataPath(key), { force: true });
    await rm(join(this.directory, entry.metadata.bodyFile), { force: true });
  }

  private metadataPath(key: string): string {
    return join(this.directory, `${this.baseName(key)}${METADATA_SUFFIX}`);
  }

  /** Keys may hold any character; file names are a digest of them. */
  private baseName(key: string): string {
    return sha256Hex(Buffer.from(key)).slice(0, 32);
  }
}

export function sha256Hex(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Disk space of an entry, its body of `bodyBytes` and its metadata file, in whole blocks. */
function diskBytesOf(bodyBytes: number, metadataText: string): number {
  const blocks = (bytes: number) =>
    Math.ceil(bytes / BLOCK_BYTES) * BLOCK_BYTES;
  return blocks(bodyBytes) + blocks(Buffer.byteLength(metadataText));
}
