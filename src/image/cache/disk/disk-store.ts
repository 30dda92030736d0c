import {
  Inject,
  Injectable,
  Logger,
  type OnApplicationShutdown,
  OnModuleInit,
} from '@nestjs/common';
import type { ConfigType } from '@nestjs/config';
import { mkdir } from 'node:fs/promises';
import { errorMessage } from '../../../common/error-message';
import { cacheConfig } from '../../../config/cache.config';
import { restoreCachedImage } from '../cached-image';
import type { CachedImage } from '../cache-model';
import type { CacheTier } from '../cache-tier';
import { Clock } from '../clock';
import { LocalVariants } from '../local-variants';
import { DiskBudget } from './disk-budget';
import type { DiskEntry, StoredMetadata } from './disk-entry-format';
import { DISK_READ_TIMEOUT_MS, DiskFiles } from './disk-files';
import { DiskHealth, type DiskStatus } from './disk-health';
import { DiskIndex } from './disk-index';
import { diskRecordLimit } from '../entry-costs';
import { DiskRecovery } from './disk-recovery';
import { DiskWriter } from './disk-writer';

/**
 * The second tier: cached images on local disk (`CACHE_DIR`), so they outlive the process,
 * within a byte budget (`CACHE_DISK_MAX_SIZE`, lowered at start to what the filesystem holds).
 * It puts together:
 * - `DiskIndex`, every stored entry in memory, so lookups never list or read the directory;
 * - `DiskBudget`, the byte arithmetic, and `DiskWriter`, every store, removal and eviction
 *   within it, one at a time per key;
 * - `DiskFiles`, atomic writes (body first, then the metadata naming it), safe reads and
 *   removal, so a crash leaves either the old entry or the new one;
 * - `DiskRecovery`, which rebuilds the index at start, sweeps what a crash left and
 *   reconciles the index with the directory;
 * - `DiskHealth`, whether the directory takes writes, for readiness.
 *
 * A power loss may tear a file that was not yet on the device: every load verifies size,
 * checksum and that the body is a complete image, so a torn entry is never served, only
 * fetched again (`CACHE_DISK_FSYNC=true` also fsyncs each file and the directory). The
 * directory can turn full or read-only under the service: new images are then kept in memory
 * only, and readiness stays up as long as stored images can still be read.
 */
@Injectable()
export class DiskStore
  implements CacheTier, OnModuleInit, OnApplicationShutdown
{
  readonly name = 'disk';
  private readonly logger = new Logger(DiskStore.name);
  readonly directory: string;
  private readonly index: DiskIndex;
  private readonly budget: DiskBudget;
  private readonly files: DiskFiles;
  private readonly health: DiskHealth;
  private readonly recovery: DiskRecovery;
  private readonly writer: DiskWriter;

  constructor(
    @Inject(cacheConfig.KEY) config: ConfigType<typeof cacheConfig>,
    clock: Clock,
    variants: LocalVariants,
  ) {
    this.directory = config.directory;
    this.index = new DiskIndex(config.diskMaxBytes, variants);
    this.budget = new DiskBudget(
      config.diskMaxBytes,
      diskRecordLimit(config.memoryMaxBytes),
    );
    this.files = new DiskFiles(config.directory, config.diskFsync, this.logger);
    this.health = new DiskHealth(
      this.files,
      clock,
      config.readinessDiskCheckIntervalMs,
      this.logger,
    );
    this.recovery = new DiskRecovery(this.files, this.budget, this.logger);
    this.writer = new DiskWriter(
      this.index,
      this.budget,
      this.files,
      this.health,
      this.logger,
    );
  }

  async onModuleInit(): Promise<void> {
    try {
      await mkdir(this.directory, { recursive: true });
      await this.fitBudgetToFilesystem();
      for (const entry of await this.recovery.recover()) {
        this.index.put(entry.metadata.key, entry);
      }
    } catch (error) {
      throw new Error(
        `CACHE_DIR=${JSON.stringify(this.directory)} is not usable: ${errorMessage(error)}`,
      );
    }
    this.logger.log(
      `Cache directory ${this.directory} holds ${this.index.size} stored image(s), ${this.index.usedBytes} of ${this.budget.maxBytes} bytes`,
    );
    const status = await this.health.check();
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
  onApplicationShutdown(): Promise<void> {
    return this.writer.settle(DISK_READ_TIMEOUT_MS);
  }

  has(key: string): boolean {
    return this.index.has(key);
  }

  /** Marks `key` as just used, for eviction, without touching the disk. */
  touch(key: string): void {
    this.index.use(key);
  }

  /** Bytes the stored entries take on disk, in whole blocks. */
  get usedBytes(): number {
    return this.index.usedBytes;
  }

  /** The budget in force, in bytes. */
  get maxBytes(): number {
    return this.budget.maxBytes;
  }

  get entryCount(): number {
    return this.index.size;
  }

  /** Entries evicted to make room since start. */
  get evictions(): number {
    return this.index.evictions;
  }

  /** The metadata of every stored entry, least recently used first. */
  entries(): StoredMetadata[] {
    return this.index.metadata();
  }

  /** The metadata of the entry of `key`, without counting as a use or reading the disk. */
  metadataOf(key: string): StoredMetadata | undefined {
    return this.index.peek(key)?.metadata;
  }

  /** The metadata of up to `limit` entries, the most recently used first, without counting as a use. */
  recent(limit: number): StoredMetadata[] {
    return this.index.recent(limit);
  }

  /** The state of the tier for readiness (see `DiskHealth`). */
  status(): Promise<DiskStatus> {
    return this.health.status();
  }

  /** The entry stored for `key`, or `undefined` when there is none or it fails verification (it is then discarded). */
  async load(key: string): Promise<CachedImage | undefined> {
    const entry = this.index.use(key);
    if (!entry) {
      return undefined;
    }
    const { metadata } = entry;
    let body: Buffer;
    try {
      body = await this.files.read(metadata.bodyFile, metadata.bytes);
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

  /** Stores `image` as the entry of its key (see `DiskWriter.save`); false when it was not stored. */
  save(image: CachedImage): Promise<boolean> {
    return this.writer.save(image);
  }

  /** Removes the entry of `key`; with `fetchedBefore` (epoch ms), only one fetched before it. */
  delete(key: string, fetchedBefore = Infinity): Promise<void> {
    return this.writer.delete(key, fetchedBefore);
  }

  /** Removes the entries `isExpired` picks, files and all; returns how many. */
  removeWhere(
    isExpired: (metadata: StoredMetadata) => boolean,
  ): Promise<number> {
    return this.writer.removeWhere(isExpired);
  }

  /**
   * Makes the index agree with what is really in the directory, with no write in flight:
   * entries whose files are gone or changed leave it, files no entry names are removed, and
   * what cannot be removed is counted against the budget until it can. Runs every
   * `CACHE_CLEANUP_INTERVAL_SECONDS`.
   */
  reconcile(): Promise<void> {
    return this.writer.quiet(async () => {
      for (const key of await this.recovery.reconcile(this.index.all())) {
        this.index.drop(key);
      }
    });
  }

  private async fitBudgetToFilesystem(): Promise<void> {
    let filesystemBytes: number;
    try {
      filesystemBytes = await this.files.filesystemBytes();
    } catch (error) {
      this.logger.warn(
        `Could not read the size of the filesystem of ${this.directory}; keeping CACHE_DISK_MAX_SIZE: ${errorMessage(error)}`,
      );
      return;
    }
    const { bytes, lowered } = this.budget.fitFilesystem(filesystemBytes);
    if (lowered) {
      this.logger.warn(
        `CACHE_DISK_MAX_SIZE (${this.budget.configuredBytes} bytes) is larger than the filesystem of ${this.directory} (${filesystemBytes} bytes); using ${bytes} bytes`,
      );
    }
  }

  /** Drops an entry that must never be served; its files go too if they can. */
  private async discard(
    key: string,
    entry: DiskEntry,
    reason: string,
  ): Promise<undefined> {
    this.logger.warn(
      `Discarding stored image ${JSON.stringify(key)}: ${reason}`,
    );
    this.index.drop(key, entry);
    await this.files
      .removeEntry(key, entry)
      .catch((error: unknown) =>
        this.logger.warn(
          `Could not remove the files of ${JSON.stringify(key)} (the next reconciliation counts them): ${errorMessage(error)}`,
        ),
      );
    return undefined;
  }
}
