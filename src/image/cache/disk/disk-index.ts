import { LRUCache } from 'lru-cache';
import type { LocalVariants } from '../local-variants';
import type { DiskEntry, StoredMetadata } from './disk-entry-format';

/**
 * What the disk tier holds, in memory: every stored entry, its size and its recency, so that
 * lookups never list or read the directory. Rebuilt from the metadata files at start; an entry
 * leaves it only once its files are gone. Tells `LocalVariants` of every entry that comes or goes.
 */
export class DiskIndex {
  private readonly stored: LRUCache<string, DiskEntry>;
  private evicted = 0;

  /**
   * `maxBytes` is the configured budget: the budget in force is never more, and `DiskBudget`
   * keeps the entries within it, so the index never evicts an entry by itself and leaves its
   * files uncounted.
   */
  constructor(maxBytes: number, variants: LocalVariants) {
    this.stored = new LRUCache<string, DiskEntry>({
      maxSize: maxBytes,
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

  has(key: string): boolean {
    return this.stored.has(key);
  }

  /** The entry of `key`, counted as a use. */
  use(key: string): DiskEntry | undefined {
    return this.stored.get(key);
  }

  /** The entry of `key`, without counting as a use. */
  peek(key: string): DiskEntry | undefined {
    return this.stored.peek(key);
  }

  /** Adds or replaces the entry of `key`, as the most recently used; returns the one it replaced. */
  put(key: string, entry: DiskEntry): DiskEntry | undefined {
    const previous = this.stored.peek(key);
    this.stored.set(key, entry);
    return previous;
  }

  /** Drops the entry of `key`, only if it is still `entry` when one is given (a newer one stays). */
  drop(key: string, entry?: DiskEntry): void {
    if (entry === undefined || this.stored.peek(key) === entry) {
      this.stored.delete(key);
    }
  }

  /** The least recently used entry whose key `skip` does not pick, or `undefined`. */
  leastRecentlyUsed(
    skip: (key: string) => boolean,
  ): [string, DiskEntry] | undefined {
    for (const key of this.stored.rkeys()) {
      if (!skip(key)) {
        return [key, this.stored.peek(key) as DiskEntry];
      }
    }
    return undefined;
  }

  /** Counts an entry evicted to make room. */
  countEviction(): void {
    this.evicted += 1;
  }

  /** Entries evicted to make room since start. */
  get evictions(): number {
    return this.evicted;
  }

  /** Bytes the stored entries take on disk, in whole blocks. */
  get usedBytes(): number {
    return this.stored.calculatedSize;
  }

  get size(): number {
    return this.stored.size;
  }

  /** Every key and entry, a copy, in no promised order. */
  all(): Array<[string, DiskEntry]> {
    return [...this.stored.entries()];
  }

  /** The metadata of every stored entry, least recently used first. */
  metadata(): StoredMetadata[] {
    return [...this.stored.rvalues()].flatMap((entry) =>
      entry ? [entry.metadata] : [],
    );
  }

  /** The metadata of up to `limit` entries, the most recently used first, without counting as a use. */
  recent(limit: number): StoredMetadata[] {
    const found: StoredMetadata[] = [];
    for (const entry of this.stored.values()) {
      if (found.length === limit) {
        break;
      }
      found.push(entry.metadata);
    }
    return found;
  }
}
