import type { Logger } from '@nestjs/common';
import { Mutex, Semaphore } from 'async-mutex';
import { errorMessage } from '../../../common/error-message';
import type { CachedImage } from '../cache-model';
import type { DiskBudget } from './disk-budget';
import {
  type DiskEntry,
  encodeEntry,
  type StoredMetadata,
} from './disk-entry-format';
import type { DiskFiles } from './disk-files';
import type { DiskHealth } from './disk-health';
import type { DiskIndex } from './disk-index';
import { KeyTurns } from './key-turns';

/** Writes of different keys at once: enough to keep misses from waiting on one another's I/O. */
const CONCURRENT_WRITES = 8;

/**
 * Every change to the disk tier: stores, removals and evictions, within the budget. Writes run
 * concurrently (up to `CONCURRENT_WRITES`, one at a time per key): each first reserves its
 * entry's bytes, evicting least-recently-used entries until the stored entries plus every
 * reservation fit the budget, and only then writes, so the directory never holds more than
 * the budget, temporary files included. An entry leaves the index only once its files are gone.
 */
export class DiskWriter {
  /** Held briefly to change the index and the reservations: eviction, commit, removal. */
  private readonly changes = new Mutex();
  /** One permit per write in flight; `quiet()` takes them all, to see no half-written entry. */
  private readonly writing = new Semaphore(CONCURRENT_WRITES);
  /** The saves not yet done, waiting for their turn or writing. */
  private readonly saving = new Set<Promise<boolean>>();
  /** The writes and removals of each key, one at a time, so its metadata file and the index agree on the last. */
  private readonly turns = new KeyTurns();

  constructor(
    private readonly index: DiskIndex,
    private readonly budget: DiskBudget,
    private readonly files: DiskFiles,
    private readonly health: DiskHealth,
    private readonly logger: Logger,
  ) {}

  /**
   * Stores `image` as the entry for its key, replacing the previous one atomically. Returns
   * false, storing nothing, when the image alone is larger than the whole budget or the
   * directory does not take writes (the failure is recorded, and logged once per outage).
   * When the filesystem is full, least-recently-used entries are evicted and the write is
   * tried once more.
   */
  save(image: CachedImage): Promise<boolean> {
    const saving = this.turns.run(image.key, () =>
      this.writing.runExclusive(() => this.write(image)),
    );
    this.saving.add(saving);
    const done = () => this.saving.delete(saving);
    saving.then(done, done);
    return saving;
  }

  /** Waits for the saves in flight to end, for at most `timeoutMs`. */
  async settle(timeoutMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.allSettled([...this.saving]),
      new Promise((resolve) => {
        timer = setTimeout(resolve, timeoutMs);
      }),
    ]);
    clearTimeout(timer);
  }

  /**
   * Removes the entry of `key`, files and all; with `fetchedBefore` (epoch ms), only when it
   * was fetched before that moment, so a newer entry stored meanwhile stays.
   */
  delete(key: string, fetchedBefore = Infinity): Promise<void> {
    return this.turns.run(key, () =>
      this.changes.runExclusive(async () => {
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
      }),
    );
  }

  /** Removes the entries `isExpired` picks, files and all; returns how many. */
  removeWhere(
    isExpired: (metadata: StoredMetadata) => boolean,
  ): Promise<number> {
    return this.changes.runExclusive(async () => {
      let removed = 0;
      for (const [key, entry] of this.index.all()) {
        // A key being written gets a new entry; the next cleanup sees it.
        if (!isExpired(entry.metadata) || this.turns.busy(key)) {
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

  /** Runs `task` with no write in flight and none starting: the directory holds no half-written entry. */
  quiet<T>(task: () => Promise<T>): Promise<T> {
    return this.writing.runExclusive(
      () => this.changes.runExclusive(task),
      CONCURRENT_WRITES,
    );
  }

  private async write(image: CachedImage): Promise<boolean> {
    if (!this.health.acceptsWrites()) {
      return false; // known not to take writes: memory only until the next check
    }
    const { metadata, metadataText, diskBytes } = encodeEntry(image);
    if (!this.budget.admits(diskBytes)) {
      this.logger.warn(
        `Not storing ${image.key} on disk: ${diskBytes} bytes exceed the disk budget (${this.budget.maxBytes} bytes)`,
      );
      return false;
    }
    try {
      const reserved = await this.changes.runExclusive(() =>
        this.reserve(image.key, diskBytes),
      );
      if (!reserved) {
        this.logger.debug(
          `Not storing ${image.key} on disk now: the writes in flight hold the rest of the budget`,
        );
        return false;
      }
    } catch (error) {
      this.health.writeFailed(error);
      return false;
    }
    const writeEntry = () =>
      this.files.writeEntry(
        image.key,
        metadata.bodyFile,
        image.body,
        metadataText,
        this.index.peek(image.key)?.metadata.bodyFile,
      );
    try {
      try {
        await writeEntry();
      } catch (error) {
        const toFree = this.budget.bytesToFreeAfter(error, diskBytes);
        if (toFree === undefined) {
          throw error;
        }
        // Something else filled the filesystem: free what this entry needs, try once more.
        await this.changes.runExclusive(() => this.evict(toFree, image.key));
        await writeEntry();
      }
    } catch (error) {
      this.budget.release(diskBytes);
      this.health.writeFailed(error);
      return false;
    }
    const replaced = await this.changes.runExclusive(() => {
      this.budget.release(diskBytes);
      return this.index.put(image.key, { metadata, diskBytes });
    });
    if (replaced && replaced.metadata.bodyFile !== metadata.bodyFile) {
      await this.files.removeQuietly(replaced.metadata.bodyFile);
    }
    this.health.writeSucceeded();
    return true;
  }

  /**
   * Reserves `bytes` for a write of `key`, evicting least-recently-used entries until the index
   * has room for one more entry and the bytes fit (see `DiskBudget.reserve`). Runs under
   * `changes`. Returns false, reserving nothing, when only entries being written are left to
   * evict; fails when an eviction fails or unaccounted files take the budget.
   */
  private async reserve(key: string, bytes: number): Promise<boolean> {
    while (!this.budget.hasRoomForEntry(this.index.size, this.index.has(key))) {
      if ((await this.evictLeastRecentlyUsed(key)) === 0) {
        return false;
      }
    }
    while (!this.budget.reserve(this.index.usedBytes, bytes)) {
      if ((await this.evictLeastRecentlyUsed(key)) === 0) {
        return this.budget.nothingLeftToEvict(bytes);
      }
    }
    return true;
  }

  /** Evicts least-recently-used entries until they freed at least `bytes` (or none is left). */
  private async evict(bytes: number, writing: string): Promise<void> {
    let freed = 0;
    while (freed < bytes) {
      const removed = await this.evictLeastRecentlyUsed(writing);
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
  private async evictLeastRecentlyUsed(writing: string): Promise<number> {
    const found = this.index.leastRecentlyUsed(
      (key) => key !== writing && this.turns.busy(key),
    );
    if (!found) {
      return 0;
    }
    const [key, entry] = found;
    await this.remove(key, entry);
    this.index.countEviction();
    return entry.diskBytes;
  }

  /** Removes an entry's files, then the entry: while its files stay, its bytes stay counted. */
  private async remove(key: string, entry: DiskEntry): Promise<void> {
    await this.files.removeEntry(key, entry);
    this.index.drop(key, entry);
  }
}
