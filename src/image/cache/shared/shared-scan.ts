import { Injectable } from '@nestjs/common';
import {
  FIRST_SCAN_POSITION,
  RedisConnection,
  type ScanPosition,
} from './redis-connection';
import { ReplicaNotices } from './replica-notices';
import { SharedKeys } from './shared-keys';
import { SharedTier } from './shared-tier';

/** Keys a purge of every variant asks SCAN for at a time. */
const PURGE_SCAN_COUNT = 500;

/**
 * What the shared tier holds of one variant, read from the headers alone: its image, and the
 * prefetched image held for later, either of which may be missing.
 */
export interface SharedEntry {
  readonly key: string;
  readonly bytes?: number;
  readonly fetchedAt?: number;
  readonly next?: { readonly bytes: number; readonly fetchedAt: number };
}

/**
 * What an operator does to the shared tier as a whole: purge a variant or every variant (and
 * tell the other replicas), and list what it holds a SCAN page at a time; never with KEYS,
 * which blocks Redis, and never building a list of every key.
 */
@Injectable()
export class SharedScan {
  constructor(
    private readonly redis: RedisConnection,
    private readonly keys: SharedKeys,
    private readonly tier: SharedTier,
    private readonly notices: ReplicaNotices,
  ) {}

  get enabled(): boolean {
    return this.redis.enabled;
  }

  /**
   * Removes everything stored for `key` (its image, its prefetched next image, its recorded
   * failure, its fetch lock), or for every variant when `key` is `null`, and tells the other
   * replicas to drop their local copies. Returns the variants whose image was removed here.
   * Every variant is walked with SCAN a page at a time, each page deleted before the next.
   */
  async purge(key: string | null): Promise<string[]> {
    if (!this.redis.enabled) {
      return [];
    }
    const removed: string[] = [];
    if (key === null) {
      let position: ScanPosition | undefined = FIRST_SCAN_POSITION;
      while (position) {
        const page = await this.redis.scanPage(
          position,
          this.keys.everything,
          PURGE_SCAN_COUNT,
        );
        const deleted = await Promise.all(
          page.keys.map((redisKey) =>
            this.redis.run((redis) => redis.del([redisKey])),
          ),
        );
        page.keys.forEach((redisKey, index) => {
          const variant = this.keys.variantOfEntry(redisKey);
          if (variant !== undefined && deleted[index] > 0) {
            removed.push(variant);
          }
        });
        position = page.next;
      }
    } else {
      const [deleted] = await this.redis.run((redis) =>
        Promise.all(
          [
            this.keys.entry(key),
            this.keys.next(key),
            this.keys.failure(key),
            this.keys.lock(key),
          ].map((redisKey) => redis.del([redisKey])),
        ),
      );
      if (deleted > 0) {
        removed.push(key);
      }
    }
    await this.notices.publish({ type: 'purged', key });
    return removed;
  }

  /**
   * One page of the variants with an image in the shared tier, from `position` on, walked with
   * SCAN (`COUNT` `count`, so a page may hold fewer entries, or none, before the walk ends);
   * each entry read from its header alone, with the header of its prefetched next image.
   */
  async entriesPage(
    position: ScanPosition,
    count: number,
  ): Promise<{ entries: SharedEntry[]; next: ScanPosition | undefined }> {
    if (!this.redis.enabled) {
      return { entries: [], next: undefined };
    }
    const page = await this.redis.scanPage(
      position,
      this.keys.everyEntry,
      count,
    );
    const variants = page.keys.flatMap((redisKey) => {
      const variant = this.keys.variantOfEntry(redisKey);
      return variant === undefined ? [] : [variant];
    });
    const entries = await Promise.all(
      variants.map((variant) => this.entryOf(variant)),
    );
    return {
      entries: entries.flatMap((entry) => (entry ? [entry] : [])),
      next: page.next,
    };
  }

  /** What the shared tier holds of `key` (its image and next image, from their headers), or `undefined`. */
  async entryOf(key: string): Promise<SharedEntry | undefined> {
    const [header, next] = await Promise.all([
      this.tier.readStoredHeader(key),
      this.tier.readStoredHeader(key, 'next'),
    ]);
    if (!header && !next) {
      return undefined;
    }
    return {
      key,
      ...(header ? { bytes: header.bytes, fetchedAt: header.fetchedAt } : {}),
      ...(next
        ? { next: { bytes: next.bytes, fetchedAt: next.fetchedAt } }
        : {}),
    };
  }
}
