import {
  Inject,
  Injectable,
  Logger,
  type OnApplicationShutdown,
  OnModuleInit,
} from '@nestjs/common';
import type { ConfigType } from '@nestjs/config';
import { Mutex, Semaphore } from 'async-mutex';
import { LRUCache } from 'lru-cache';
import { randomUUID } from 'node:crypto';
import { constants } from 'node:fs';
import {
  type FileHandle,
  lstat,
  mkdir,
  open,
  opendir,
  readdir,
  rename,
  rm,
  statfs,
} from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { errorMessage } from '../../../common/error-message';
import { OutageLog } from '../../../common/outage-log';
import { cacheConfig } from '../../../config/cache.config';
import { restoreCachedImage, sha256Hex } from '../cached-image';
import type { CacheTier } from '../cache-tier';
import { Clock } from '../clock';
import { LocalVariants } from '../local-variants';
import type { CachedImage } from '../cache-model';

const METADATA_SUFFIX = '.meta.json';
const BODY_SUFFIX = '.img';
const TEMP_SUFFIX = '.tmp';
const PROBE_PREFIX = '.probe-';
/** Writes of different keys at once: enough to keep misses from waiting on one another's I/O. */
const CONCURRENT_WRITES = 8;
/** Files take whole blocks on disk, and the kubelet measures an emptyDir in blocks. */
const BLOCK_BYTES = 4096;
/** Kept free of entries for the readiness probe's small file. */
const PROBE_RESERVE_BYTES = BLOCK_BYTES;
/** Of a filesystem smaller than the budget, this share is left free for the filesystem itself. */
const FILESYSTEM_HEADROOM = 0.05;
/** A disk read slower than this (a hung volume) fails, so no request waits on it for ever. */
export const DISK_READ_TIMEOUT_MS = 5000;
/** Never follows a symbolic link, and does not block opening a FIFO (refused right after). */
const SAFE_READ_FLAGS =
  constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;

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

/** What readiness reports of the disk tier. */
export interface DiskStatus {
  /** Stored images can be read: the tier can serve hits. */
  readonly readable: boolean;
  /** New images can be stored; when false, they are served from memory only. */
  readonly writable: boolean;
  /** Why the tier is not writable (or not readable). */
  readonly reason?: string;
}

/** What the in-memory index knows of a stored entry, so that finding one never reads the disk. */
interface IndexEntry {
  readonly metadata: StoredMetadata;
  /** Disk space of the body and the metadata file, in whole blocks. */
  readonly diskBytes: number;
}

/**
 * The second tier: cached images on local disk (`CACHE_DIR`), so they outlive the process,
 * within a byte budget (`CACHE_DISK_MAX_SIZE`, lowered at start to what the filesystem holds).
 *
 * Each entry is a body file named after its checksum plus a metadata file naming that body.
 * Both are written to a temporary file and renamed into place, body first, and the old body
 * is removed only after the new metadata is in place. A crash of the process at any moment
 * therefore leaves either the old entry or the new one (the kernel's page cache keeps what was
 * written), and whatever a crash left behind (temporary files, bodies no metadata names) is
 * swept at start. A power loss may tear a file that was not yet on the device: every load
 * verifies size, checksum and that the body is a complete image, so a torn entry is never
 * served, only fetched again. `CACHE_DISK_FSYNC=true` also fsyncs each file and the directory
 * before the rename counts, for entries that survive a power loss. Loads read only regular
 * files, never through a link.
 *
 * An index in memory, rebuilt from the metadata files at start, knows every entry, its size
 * and its recency, so lookups never list or read the directory. Writes run concurrently (up
 * to `CONCURRENT_WRITES`, one at a time per key): each first reserves its entry's bytes,
 * evicting least-recently-used entries until the stored entries plus every reservation fit
 * the budget, and only then writes, so the directory never holds more than the budget,
 * temporary files included. An entry leaves the index only once its files are gone; files
 * that could not be removed are found by the periodic `reconcile()` (which waits for the
 * writes in flight) and counted against the budget until they are.
 *
 * The directory can turn full or read-only under the service. A write that fails marks the
 * tier not writable at once (new images are then kept in memory only) and is logged once per
 * outage; readiness stays up as long as stored images can still be read.
 */
@Injectable()
export class DiskStore
  implements CacheTier, OnModuleInit, OnApplicationShutdown
{
  readonly name = 'disk';
  private readonly logger = new Logger(DiskStore.name);
  readonly directory: string;
  private readonly configuredMaxBytes: number;
  /** The budget in force: `CACHE_DISK_MAX_SIZE`, or less when the filesystem is smaller. */
  private budgetBytes: number;
  private readonly checkIntervalMs: number;
  private readonly index: LRUCache<string, IndexEntry>;
  private evicted = 0;
  /** Held briefly to change the index and the reservations: eviction, commit, removal. */
  private readonly writes = new Mutex();
  /** One permit per write in flight; `reconcile()` takes them all, to see no half-written entry. */
  private readonly writing = new Semaphore(CONCURRENT_WRITES);
  /** The saves not yet done, waiting for their turn or writing. */
  private readonly saving = new Set<Promise<boolean>>();
  /** The last write or removal of each key in flight, which the next one of the same key waits for. */
  private readonly turns = new Map<string, Promise<void>>();
  /** Bytes of the entries being written, counted against the budget until they are stored. */
  private reservedBytes = 0;
  private readonly fsync: boolean;
  private readonly writeOutage: OutageLog;
  /** Bytes of files in the directory that no entry accounts for and that could not be removed. */
  private unaccountedBytes = 0;
  private health: DiskStatus = { readable: true, writable: true };
  private checkedAt = -Infinity;
  private checking?: Promise<DiskStatus>;

  constructor(
    @Inject(cacheConfig.KEY) config: ConfigType<typeof cacheConfig>,
    private readonly clock: Clock,
    variants: LocalVariants,
  ) {
    this.directory = config.directory;
    this.configuredMaxBytes = config.diskMaxBytes;
    this.budgetBytes = config.diskMaxBytes;
    this.checkIntervalMs = config.readinessDiskCheckIntervalMs;
    this.fsync = config.diskFsync;
    this.writeOutage = new OutageLog(
      this.logger,
      `Writes to CACHE_DIR=${this.directory}`,
    );
    // makeRoom() keeps the entries within the budget in force, which is never more than
    // this, so the index never evicts an entry by itself and leaves its files uncounted.
    this.index = new LRUCache<string, IndexEntry>({
      maxSize: config.diskMaxBytes,
      sizeCalculation: (entry) => entry.diskBytes,
      // Every entry that leaves the index, however it leaves (never a replacement).
      dispose: (_entry, key, reason) => {
        if (reason !== 'set') {
          variants.removed(key, 'disk');
        }
      },
      onInsert: (_entry, key) => variants.added(key, 'disk'),
    });
  }

  async onModuleInit(): Promise<void> {
    try {
      await mkdir(this.directory, { recursive: true });
      this.budgetBytes = await this.budgetThatFits();
      await this.rebuildIndex();
    } catch (error) {
      throw new Error(
        `CACHE_DIR=${JSON.stringify(this.directory)} is not usable: ${errorMessage(error)}`,
      );
    }
    const status = await this.check();
    if (status.readable && !status.writable) {
      this.logger.warn(
        `CACHE_DIR=${this.directory} is read-only (${status.reason}): stored images are served, new ones are kept in memory only`,
      );
    }
  }

  /**
   * Lets the writes in flight finish once the server has stopped taking requests, for at most
   * `DISK_READ_TIMEOUT_MS` (a hung volume does not hold the exit): an image a background fetch
   * was storing is on disk for the next start, and nothing writes into the directory after.
   */
  async onApplicationShutdown(): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.allSettled([...this.saving]),
      new Promise((resolve) => {
        timer = setTimeout(resolve, DISK_READ_TIMEOUT_MS);
      }),
    ]);
    clearTimeout(timer);
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

  /** The budget in force, in bytes. */
  get maxBytes(): number {
    return this.budgetBytes;
  }

  get entryCount(): number {
    return this.index.size;
  }

  /** Entries evicted to make room since start. */
  get evictions(): number {
    return this.evicted;
  }

  /** The metadata of every stored entry, least recently used first. */
  entries(): StoredMetadata[] {
    return [...this.index.rvalues()].flatMap((entry) =>
      entry ? [entry.metadata] : [],
    );
  }

  /** The metadata of the entry of `key`, without counting as a use or reading the disk. */
  metadataOf(key: string): StoredMetadata | undefined {
    return this.index.peek(key)?.metadata;
  }

  /** The metadata of up to `limit` entries, the most recently used first, without counting as a use. */
  recent(limit: number): StoredMetadata[] {
    const found: StoredMetadata[] = [];
    for (const entry of this.index.values()) {
      if (found.length === limit) {
        break;
      }
      found.push(entry.metadata);
    }
    return found;
  }

  /**
   * The state of the tier for readiness. The directory is probed with a small write at most
   * once per `READINESS_DISK_CHECK_INTERVAL_MS`; in between, the last result is answered,
   * updated at once by any write of the tier's own that fails or succeeds.
   */
  async status(): Promise<DiskStatus> {
    if (!this.checkIsDue()) {
      return this.health;
    }
    this.checking ??= this.check().finally(() => (this.checking = undefined));
    return this.checking;
  }

  /** The entry stored for `key`, or `undefined` when there is none or it fails verification (it is then discarded). */
  async load(key: string): Promise<CachedImage | undefined> {
    const entry = this.index.get(key);
    if (!entry) {
      return undefined;
    }
    const { metadata } = entry;
    let body: Buffer;
    try {
      body = await readRegularFile(
        join(this.directory, metadata.bodyFile),
        metadata.bytes,
      );
    } catch (error) {
      return this.discard(
        key,
        entry,
        `unreadable body (${errorMessage(error)})`,
      );
    }
    const restored = restoreCachedImage({
      key,
      body,
      sha256: metadata.sha256,
      fetchedAt: Date.parse(metadata.fetchedAt),
      source: metadata.source,
      ...(metadata.picsumId ? { picsumId: metadata.picsumId } : {}),
    });
    if ('invalid' in restored) {
      return this.discard(key, entry, restored.invalid);
    }
    return restored;
  }

  /**
   * Stores `image` as the entry for its key, replacing the previous one atomically. Returns
   * false, storing nothing, when the image alone is larger than the whole budget or the
   * directory does not take writes (the failure is recorded, and logged once per outage).
   * When the filesystem is full, least-recently-used entries are evicted and the write is
   * tried once more.
   */
  save(image: CachedImage): Promise<boolean> {
    const saving = this.inTurnOf(image.key, () =>
      this.writing.runExclusive(() => this.write(image)),
    );
    this.saving.add(saving);
    const done = () => this.saving.delete(saving);
    saving.then(done, done);
    return saving;
  }

  /**
   * Runs `task` after every write or removal of `key` started before it, so that its metadata
   * file and the index agree on the last one.
   */
  private inTurnOf<T>(key: string, task: () => Promise<T>): Promise<T> {
    const previous = this.turns.get(key) ?? Promise.resolve();
    const turn = previous.then(task);
    const settled = turn.then(
      () => undefined,
      () => undefined,
    );
    this.turns.set(key, settled);
    void settled.then(() => {
      if (this.turns.get(key) === settled) {
        this.turns.delete(key);
      }
    });
    return turn;
  }

  private async write(image: CachedImage): Promise<boolean> {
    if (!this.health.writable && !this.checkIsDue()) {
      return false; // known not to take writes: memory only until the next check
    }
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
    if (diskBytes > this.budgetBytes - PROBE_RESERVE_BYTES) {
      this.logger.warn(
        `Not storing ${image.key} on disk: ${diskBytes} bytes exceed the disk budget (${this.budgetBytes} bytes)`,
      );
      return false;
    }
    try {
      const reserved = await this.writes.runExclusive(() =>
        this.reserve(image.key, diskBytes),
      );
      if (!reserved) {
        this.logger.debug(
          `Not storing ${image.key} on disk now: the writes in flight hold the rest of the budget`,
        );
        return false;
      }
    } catch (error) {
      this.recordWriteFailure(error);
      return false;
    }
    try {
      try {
        await this.writeEntry(image, bodyFile, metadataText);
      } catch (error) {
        if (!isOutOfSpace(error)) {
          throw error;
        }
        // Something else filled the filesystem: free what this entry needs, try once more.
        await this.writes.runExclusive(() => this.evict(diskBytes, image.key));
        await this.writeEntry(image, bodyFile, metadataText);
      }
    } catch (error) {
      this.reservedBytes -= diskBytes;
      this.recordWriteFailure(error);
      return false;
    }
    const replaced = await this.writes.runExclusive(() => {
      this.reservedBytes -= diskBytes;
      const previous = this.index.peek(image.key);
      this.index.set(image.key, { metadata, diskBytes });
      return previous;
    });
    if (replaced && replaced.metadata.bodyFile !== bodyFile) {
      await this.removeFile(replaced.metadata.bodyFile);
    }
    this.recordWriteSuccess();
    return true;
  }

  /**
   * Removes the entry of `key`, files and all; with `fetchedBefore` (epoch ms), only when it
   * was fetched before that moment, so a newer entry stored meanwhile stays.
   */
  delete(key: string, fetchedBefore = Infinity): Promise<void> {
    return this.inTurnOf(key, () => this.deleteNow(key, fetchedBefore));
  }

  private deleteNow(key: string, fetchedBefore: number): Promise<void> {
    return this.writes.runExclusive(async () => {
      const entry = this.index.peek(key);
      if (!entry || Date.parse(entry.metadata.fetchedAt) >= fetchedBefore) {
        return;
      }
      try {
        await this.remove(key, entry);
      } catch (error) {
        this.logger.warn(
          `Could not remove image ${key}: ${errorMessage(error)}`,
        );
      }
    });
  }

  /** Removes the entries `isExpired` picks, files and all; returns how many. */
  removeWhere(
    isExpired: (metadata: StoredMetadata) => boolean,
  ): Promise<number> {
    return this.writes.runExclusive(async () => {
      let removed = 0;
      for (const [key, entry] of [...this.index.entries()]) {
        // A key being written gets a new entry; the next cleanup sees it.
        if (!isExpired(entry.metadata) || this.turns.has(key)) {
          continue;
        }
        try {
          await this.remove(key, entry);
          removed += 1;
        } catch (error) {
          this.logger.warn(
            `Could not remove expired image ${key}: ${errorMessage(error)}`,
          );
        }
      }
      return removed;
    });
  }

  /**
   * Makes the index agree with what is really in the directory: entries whose files are gone
   * or changed leave it, files no entry names are removed, and what cannot be removed is
   * counted against the budget until it can. Runs every `CACHE_CLEANUP_INTERVAL_SECONDS`.
   */
  reconcile(): Promise<void> {
    return this.writing.runExclusive(
      () => this.writes.runExclusive(() => this.reconcileNow()),
      CONCURRENT_WRITES,
    );
  }

  private async reconcileNow(): Promise<void> {
    const expected = new Set<string>();
    for (const [key, entry] of [...this.index.entries()]) {
      const intact = await this.filesMatch(key, entry);
      if (intact) {
        expected.add(this.metadataName(key)).add(entry.metadata.bodyFile);
      } else {
        this.index.delete(key);
        await this.removeEntryFiles(key, entry).catch(() => undefined);
      }
    }
    let unaccounted = 0;
    for (const name of await readdir(this.directory)) {
      // A readiness probe's file may be there for a moment: it removes it itself.
      if (expected.has(name) || name.startsWith(PROBE_PREFIX)) {
        continue;
      }
      const path = join(this.directory, name);
      const info = await lstat(path).catch(() => undefined);
      try {
        await rm(path, { force: true });
        this.logger.log(`Removed ${name}, which no cached image names`);
      } catch (error) {
        unaccounted += blocksOf(info?.size ?? 0);
        this.logger.warn(
          `Could not remove ${name}, which no cached image names; its ${info?.size ?? 0} bytes count against the budget: ${errorMessage(error)}`,
        );
      }
    }
    this.unaccountedBytes = unaccounted;
  }

  private checkIsDue(): boolean {
    return this.clock.now() - this.checkedAt >= this.checkIntervalMs;
  }

  /** Probes writes with a small file (create, fsync, remove); if they fail, whether reads still work. */
  private async check(): Promise<DiskStatus> {
    try {
      await this.probeWrite();
      return this.record({ readable: true, writable: true });
    } catch (error) {
      const reason = errorMessage(error);
      return this.record({
        readable: await this.isReadable(),
        writable: false,
        reason,
      });
    }
  }

  private recordWriteFailure(error: unknown): void {
    this.record({
      readable: this.health.readable,
      writable: false,
      reason: errorMessage(error),
    });
  }

  /** A successful write only changes what readiness answers when the tier was failing. */
  private recordWriteSuccess(): void {
    if (!this.health.writable || !this.health.readable) {
      this.record({ readable: true, writable: true });
    }
  }

  /** What a probe or one of the tier's own writes found: readiness answers it until the next check is due. */
  private record(status: DiskStatus): DiskStatus {
    this.health = status;
    this.checkedAt = this.clock.now();
    if (status.writable) {
      this.writeOutage.succeeded();
    } else {
      this.writeOutage.failed(status.reason ?? 'not writable');
    }
    return status;
  }

  private async probeWrite(): Promise<void> {
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

  private async isReadable(): Promise<boolean> {
    try {
      const directory = await opendir(this.directory);
      await directory.close();
      return true;
    } catch {
      return false;
    }
  }

  /** Body first, then the metadata naming it; a body whose metadata could not be written goes. */
  private async writeEntry(
    image: CachedImage,
    bodyFile: string,
    metadataText: string,
  ): Promise<void> {
    const previousBody = this.index.peek(image.key)?.metadata.bodyFile;
    await this.writeFile(join(this.directory, bodyFile), image.body);
    try {
      await this.writeFile(this.metadataPath(image.key), metadataText);
    } catch (error) {
      if (bodyFile !== previousBody) {
        await this.removeFile(bodyFile);
      }
      throw error;
    }
    if (this.fsync) {
      await this.syncDirectory();
    }
  }

  /** Writes a temporary file and renames it to `path`; with `CACHE_DISK_FSYNC`, fsyncs it first. */
  private async writeFile(path: string, data: string | Buffer): Promise<void> {
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
      await rename(temporary, path);
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

  /**
   * Reserves `bytes` for a write of `key`: evicts least-recently-used entries until the stored
   * entries, every reservation (this one included), the probe's reserve and any unaccounted
   * files fit the budget. Runs under `writes`. Returns false, reserving nothing, when only
   * entries being written are left to evict; fails when an eviction fails or unaccounted
   * files take the budget.
   */
  private async reserve(key: string, bytes: number): Promise<boolean> {
    const limit =
      this.budgetBytes - PROBE_RESERVE_BYTES - this.unaccountedBytes;
    const needed = () => this.index.calculatedSize + this.reservedBytes + bytes;
    while (needed() > limit) {
      if ((await this.removeLeastRecentlyUsed(key)) === 0) {
        break;
      }
    }
    if (needed() <= limit) {
      this.reservedBytes += bytes;
      return true;
    }
    if (this.reservedBytes > 0) {
      return false;
    }
    throw new Error(
      `no room for ${bytes} bytes: ${this.unaccountedBytes} bytes of files that could not be removed take the budget`,
    );
  }

  /** Evicts least-recently-used entries until they freed at least `bytes` (or none is left). */
  private async evict(bytes: number, writing: string): Promise<void> {
    let freed = 0;
    while (freed < bytes) {
      const removed = await this.removeLeastRecentlyUsed(writing);
      if (removed === 0) {
        return;
      }
      freed += removed;
    }
  }

  /**
   * Evicts the least recently used entry that no other write is replacing (its new metadata
   * may be in place already), the previous entry of `writing` included. Returns the bytes
   * freed, 0 when there was none to evict.
   */
  private async removeLeastRecentlyUsed(writing: string): Promise<number> {
    for (const key of this.index.rkeys()) {
      if (key !== writing && this.turns.has(key)) {
        continue;
      }
      const entry = this.index.peek(key) as IndexEntry;
      await this.remove(key, entry);
      this.evicted += 1;
      return entry.diskBytes;
    }
    return 0;
  }

  /** Removes an entry's files, then the entry: while its files stay, its bytes stay counted. */
  private async remove(key: string, entry: IndexEntry): Promise<void> {
    await this.removeEntryFiles(key, entry);
    if (this.index.peek(key) === entry) {
      this.index.delete(key);
    }
  }

  /**
   * The filesystem's size, when it is smaller than the budget, minus some headroom: a budget
   * the filesystem cannot hold only ever ends in ENOSPC, with nothing evicted to make room.
   */
  private async budgetThatFits(): Promise<number> {
    let filesystemBytes: number;
    try {
      const { blocks, bsize } = await statfs(this.directory);
      filesystemBytes = blocks * bsize;
    } catch (error) {
      this.logger.warn(
        `Could not read the size of the filesystem of ${this.directory}; keeping CACHE_DISK_MAX_SIZE: ${errorMessage(error)}`,
      );
      return this.configuredMaxBytes;
    }
    const fits =
      Math.floor((filesystemBytes * (1 - FILESYSTEM_HEADROOM)) / BLOCK_BYTES) *
      BLOCK_BYTES;
    if (this.configuredMaxBytes <= fits) {
      return this.configuredMaxBytes;
    }
    this.logger.warn(
      `CACHE_DISK_MAX_SIZE (${this.configuredMaxBytes} bytes) is larger than the filesystem of ${this.directory} (${filesystemBytes} bytes); using ${fits} bytes`,
    );
    return fits;
  }

  /**
   * Rebuilds the index from the metadata files, and removes what an interrupted write left
   * behind (temporary files, bodies no metadata names) and what cannot be used (unreadable
   * metadata, a missing or wrongly sized body, anything that is not a regular file). The
   * entries fetched longest ago count as the least recently used. If they exceed the budget
   * (it was lowered), the oldest are removed. Removing is best-effort: on a read-only
   * directory what cannot go is logged, and start-up goes on.
   */
  private async rebuildIndex(): Promise<void> {
    const names = await readdir(this.directory);
    const found: IndexEntry[] = [];
    for (const name of names.filter((entry) =>
      entry.endsWith(METADATA_SUFFIX),
    )) {
      try {
        const metadataText = (
          await readRegularFile(join(this.directory, name))
        ).toString('utf8');
        const metadata = metadataSchema.parse(JSON.parse(metadataText));
        if (name !== this.metadataName(metadata.key)) {
          throw new Error(`it names key ${JSON.stringify(metadata.key)}`);
        }
        const body = await lstat(join(this.directory, metadata.bodyFile));
        if (!body.isFile()) {
          throw new Error('its body is not a regular file');
        }
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
        await this.removeFile(name);
      }
    }
    // Newest first: keep what fits the budget (it may have been lowered), remove the rest.
    found.sort((a, b) =>
      b.metadata.fetchedAt.localeCompare(a.metadata.fetchedAt),
    );
    const kept: IndexEntry[] = [];
    let keptBytes = 0;
    for (const entry of found) {
      if (
        keptBytes + entry.diskBytes <=
        this.budgetBytes - PROBE_RESERVE_BYTES
      ) {
        kept.push(entry);
        keptBytes += entry.diskBytes;
      } else {
        await this.removeEntryFiles(entry.metadata.key, entry).catch(
          (error: unknown) =>
            this.logger.warn(
              `Could not remove ${entry.metadata.key}, over the budget: ${errorMessage(error)}`,
            ),
        );
      }
    }
    if (kept.length < found.length) {
      this.logger.log(
        `Removed the ${found.length - kept.length} oldest image(s) to fit the disk budget (${this.budgetBytes} bytes)`,
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
    let removed = 0;
    for (const name of leftovers) {
      removed += (await this.removeFile(name)) ? 1 : 0;
    }
    if (removed > 0) {
      this.logger.log(
        `Removed ${removed} leftover file(s) of interrupted writes from ${this.directory}`,
      );
    }
    this.logger.log(
      `Cache directory ${this.directory} holds ${this.index.size} stored image(s), ${this.index.calculatedSize} of ${this.budgetBytes} bytes`,
    );
  }

  /** Whether an entry's files are still regular files of the sizes it was stored with. */
  private async filesMatch(key: string, entry: IndexEntry): Promise<boolean> {
    try {
      const [metadata, body] = await Promise.all([
        lstat(this.metadataPath(key)),
        lstat(join(this.directory, entry.metadata.bodyFile)),
      ]);
      return (
        metadata.isFile() && body.isFile() && body.size === entry.metadata.bytes
      );
    } catch {
      return false;
    }
  }

  /** Drops an entry that must never be served; its files go too if they can. */
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
    await this.removeEntryFiles(key, entry).catch((error: unknown) =>
      this.logger.warn(
        `Could not remove the files of ${JSON.stringify(key)} (the next reconciliation counts them): ${errorMessage(error)}`,
      ),
    );
    return undefined;
  }

  /** Metadata first: a crash in between leaves only a body that no metadata names, swept at start. */
  private async removeEntryFiles(
    key: string,
    entry: IndexEntry,
  ): Promise<void> {
    await rm(this.metadataPath(key), { force: true });
    await rm(join(this.directory, entry.metadata.bodyFile), { force: true });
  }

  /** Best-effort removal of one file of the directory: false, logged, when it stays. */
  private async removeFile(name: string): Promise<boolean> {
    try {
      await rm(join(this.directory, name), { force: true });
      return true;
    } catch (error) {
      this.logger.warn(
        `Could not remove ${join(this.directory, name)}: ${errorMessage(error)}`,
      );
      return false;
    }
  }

  private metadataPath(key: string): string {
    return join(this.directory, this.metadataName(key));
  }

  private metadataName(key: string): string {
    return `${this.baseName(key)}${METADATA_SUFFIX}`;
  }

  /** Keys may hold any character; file names are a digest of them. */
  private baseName(key: string): string {
    return sha256Hex(Buffer.from(key)).slice(0, 32);
  }
}

function blocksOf(bytes: number): number {
  return Math.ceil(bytes / BLOCK_BYTES) * BLOCK_BYTES;
}

/** Disk space of an entry, its body of `bodyBytes` and its metadata file, in whole blocks. */
function diskBytesOf(bodyBytes: number, metadataText: string): number {
  return blocksOf(bodyBytes) + blocksOf(Buffer.byteLength(metadataText));
}

function isOutOfSpace(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}

/**
 * Reads a file of the cache directory, refusing anything but a regular file (a symbolic link,
 * a FIFO, a device), one of another size than `expectedBytes` when given, and a read that takes
 * longer than `DISK_READ_TIMEOUT_MS`.
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
