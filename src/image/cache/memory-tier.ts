import { Inject, Injectable } from '@nestjs/common';
import type { ConfigType } from '@nestjs/config';
import { LRUCache } from 'lru-cache';
import { cacheConfig } from '../../config/cache.config';
import type { CacheTier } from './cache-tier';
import { LocalVariants } from './local-variants';
import type { CachedImage } from './cache-model';
import { DISK_RECORD_BYTES, MEMORY_ENTRY_OVERHEAD_BYTES } from './entry-costs';

/**
 * The first tier: ready-to-send images in memory, bounded by `CACHE_MEMORY_MAX_SIZE` bytes and
 * evicting the least recently used. The budget counts what entries really cost (see
 * `entry-costs.ts`): each body plus its entry's objects, and the disk tier's index records,
 * which are memory too: the more images the disk indexes, the fewer bodies this tier keeps.
 * Entries carry no expiry of their own: freshness is always counted from the original fetch,
 * so an entry promoted from disk keeps only the time it had left. A budget of 0 turns the tier
 * off.
 */
@Injectable()
export class MemoryTier implements CacheTier {
  readonly name = 'memory';
  private readonly entries?: LRUCache<string, CachedImage>;
  private evicted = 0;

  constructor(
    @Inject(cacheConfig.KEY) config: ConfigType<typeof cacheConfig>,
    private readonly variants: LocalVariants,
  ) {
    if (config.memoryMaxBytes > 0) {
      this.entries = new LRUCache<string, CachedImage>({
        maxSize: config.memoryMaxBytes,
        sizeCalculation: (image) => MemoryTier.sizeOf(image),
        dispose: (_image, key, reason) => {
          if (reason === 'evict') {
            this.evicted += 1;
          }
          if (reason !== 'set') {
            variants.removed(key, 'memory');
          }
        },
      });
    }
  }

  static sizeOf(image: CachedImage): number {
    return image.body.length + image.key.length + MEMORY_ENTRY_OVERHEAD_BYTES;
  }

  load(key: string): CachedImage | undefined {
    return this.entries?.get(key);
  }

  /** Keeps `image`, unless it alone is larger than the whole budget. */
  save(image: CachedImage): boolean {
    this.entries?.set(image.key, image);
    this.makeRoomForDiskRecords();
    const kept = this.entries?.has(image.key) ?? false;
    if (kept) {
      this.variants.added(image.key, 'memory');
    }
    return kept;
  }

  /** The entry of `key`, without counting as a use. */
  peek(key: string): CachedImage | undefined {
    return this.entries?.peek(key);
  }

  /** Up to `limit` images, the most recently used first, without counting as a use. */
  recent(limit: number): CachedImage[] {
    const images: CachedImage[] = [];
    for (const image of this.entries?.values() ?? []) {
      if (images.length === limit) {
        break;
      }
      images.push(image);
    }
    return images;
  }

  /** Removes the entry of `key`; with `fetchedBefore`, only when it was fetched before that moment. */
  delete(key: string, fetchedBefore = Infinity): void {
    const entry = this.entries?.peek(key);
    if (entry && entry.fetchedAt < fetchedBefore) {
      this.entries?.delete(key);
    }
  }

  /** Evicts the least recently used bodies until they and the disk index's records fit the budget. */
  private makeRoomForDiskRecords(): void {
    if (!this.entries) {
      return;
    }
    const forBodies = this.entries.maxSize - this.diskRecordBytes;
    while (this.entries.size > 0 && this.entries.calculatedSize > forBodies) {
      this.entries.pop();
    }
  }

  /** The memory the disk tier's index takes, counted against this tier's budget. */
  get diskRecordBytes(): number {
    return this.variants.countIn('disk') * DISK_RECORD_BYTES;
  }

  /** Bytes held, as the budget counts them. */
  get bytes(): number {
    return this.entries?.calculatedSize ?? 0;
  }

  get size(): number {
    return this.entries?.size ?? 0;
  }

  /** The budget, in bytes; 0 when the tier is off. */
  get maxBytes(): number {
    return this.entries?.maxSize ?? 0;
  }

  /** Entries evicted to make room since start. */
  get evictions(): number {
    return this.evicted;
  }

  /** Removes the entries `isExpired` picks, without counting the check as a use. */
  removeWhere(isExpired: (image: CachedImage) => boolean): number {
    const expired = [...(this.entries?.values() ?? [])].filter(isExpired);
    for (const image of expired) {
      this.entries?.delete(image.key);
    }
    return expired.length;
  }
}
