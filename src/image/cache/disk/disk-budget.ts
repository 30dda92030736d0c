/** Files take whole blocks on disk, and the kubelet measures an emptyDir in blocks. */
export const BLOCK_BYTES = 4096;
/** Kept free of entries for the readiness probe's small file. */
export const PROBE_RESERVE_BYTES = BLOCK_BYTES;
/** Of a filesystem smaller than the budget, this share is left free for the filesystem itself. */
export const FILESYSTEM_HEADROOM = 0.05;

/** `bytes` rounded up to whole blocks. */
export function blocksOf(bytes: number): number {
  return Math.ceil(bytes / BLOCK_BYTES) * BLOCK_BYTES;
}

/** Disk space of an entry: its body of `bodyBytes` and its metadata file of `metadataBytes`, in whole blocks. */
export function entryDiskBytes(
  bodyBytes: number,
  metadataBytes: number,
): number {
  return blocksOf(bodyBytes) + blocksOf(metadataBytes);
}

/** Whether a write failed because the filesystem (or the user's quota) is full. */
export function isOutOfSpace(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}

/** What `fitFilesystem` decided. */
export interface FittedBudget {
  /** The budget in force. */
  readonly bytes: number;
  /** True when the filesystem is too small for `CACHE_DISK_MAX_SIZE`, which was lowered. */
  readonly lowered: boolean;
}

/**
 * The disk tier's byte arithmetic, with no I/O: the budget in force, the bytes reserved by the
 * writes in flight and the bytes of files that could not be removed. The stored entries' bytes
 * are the index's; every decision takes them as an argument.
 *
 * The directory never holds more than the budget: the stored entries, every reservation, the
 * readiness probe's reserve and the unaccounted files must fit in it before a write begins.
 */
export class DiskBudget {
  private budget: number;
  private reserved = 0;
  private unaccounted = 0;

  /**
   * `maxEntries` bounds how many entries the index holds in memory (`diskRecordLimit`), which
   * only tiny images reach before the bytes.
   */
  constructor(
    readonly configuredBytes: number,
    readonly maxEntries = Infinity,
  ) {
    this.budget = configuredBytes;
  }

  /** Whether the index has room for one more entry, when it holds `entries` (a replacement always has). */
  hasRoomForEntry(entries: number, replacing: boolean): boolean {
    return replacing || entries < this.maxEntries;
  }

  /** The budget in force, in bytes. */
  get maxBytes(): number {
    return this.budget;
  }

  /** Bytes reserved by the writes in flight. */
  get reservedBytes(): number {
    return this.reserved;
  }

  /** Bytes of files no entry names and that could not be removed. */
  get unaccountedBytes(): number {
    return this.unaccounted;
  }

  /**
   * Lowers the budget to what a filesystem of `filesystemBytes` holds, less some headroom, when
   * it is smaller than the configured budget: a budget the filesystem cannot hold only ever
   * ends in ENOSPC, with nothing evicted to make room.
   */
  fitFilesystem(filesystemBytes: number): FittedBudget {
    const fits =
      Math.floor((filesystemBytes * (1 - FILESYSTEM_HEADROOM)) / BLOCK_BYTES) *
      BLOCK_BYTES;
    this.budget = Math.min(this.configuredBytes, fits);
    return { bytes: this.budget, lowered: this.budget < this.configuredBytes };
  }

  /** Whether an entry of `bytes` could be stored at all: false when it alone is larger than the budget. */
  admits(bytes: number): boolean {
    return bytes <= this.budget - PROBE_RESERVE_BYTES;
  }

  /**
   * Reserves `bytes` for a write when, with `storedBytes` of stored entries, everything fits the
   * budget; false, reserving nothing, when entries must be evicted first.
   */
  reserve(storedBytes: number, bytes: number): boolean {
    const limit = this.budget - PROBE_RESERVE_BYTES - this.unaccounted;
    if (storedBytes + this.reserved + bytes > limit) {
      return false;
    }
    this.reserved += bytes;
    return true;
  }

  /**
   * What a write of `bytes` that found nothing left to evict does: false (store nothing now)
   * when writes in flight hold the rest of the budget, which they give back; an error when
   * files that could not be removed take it, which only a reconciliation gives back.
   */
  nothingLeftToEvict(bytes: number): false {
    if (this.reserved > 0) {
      return false;
    }
    throw new Error(
      `no room for ${bytes} bytes: ${this.unaccounted} bytes of files that could not be removed take the budget`,
    );
  }

  /** Gives back the reservation of a write that stored its entry or gave up. */
  release(bytes: number): void {
    this.reserved -= bytes;
  }

  /** What the last reconciliation found in the directory that no entry names and that stayed. */
  countUnaccounted(bytes: number): void {
    this.unaccounted = bytes;
  }

  /**
   * The bytes to evict before trying a write of `entryBytes` once more, after it failed with
   * `error`: the entry's own size when the filesystem was full (something else filled it), or
   * `undefined` when the failure is not one that room fixes.
   */
  bytesToFreeAfter(error: unknown, entryBytes: number): number | undefined {
    return isOutOfSpace(error) ? entryBytes : undefined;
  }

  /**
   * Of entries found at start, newest first, those that fit the budget (it may have been
   * lowered since they were stored), at most `maxEntries` of them, and those over it.
   */
  keepNewest<T extends { readonly diskBytes: number }>(
    newestFirst: readonly T[],
  ): { kept: T[]; over: T[] } {
    const kept: T[] = [];
    const over: T[] = [];
    let keptBytes = 0;
    for (const entry of newestFirst) {
      if (
        kept.length < this.maxEntries &&
        this.admits(keptBytes + entry.diskBytes)
      ) {
        kept.push(entry);
        keptBytes += entry.diskBytes;
      } else {
        over.push(entry);
      }
    }
    return { kept, over };
  }
}
