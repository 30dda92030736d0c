import type { CachedImage, TierName } from './cache-model';

/**
 * One place the cache keeps images: memory, the local disk, or a store the replicas share.
 * `CacheService` asks them in order and copies what a lower tier held into the tiers above it.
 * A tier never throws for its own failures: it logs them, and a load then finds nothing and a
 * save stores nothing. The memory tier answers synchronously, so a memory hit never waits.
 */
export interface CacheTier {
  readonly name: TierName;
  /** The entry for `key`, verified, or `undefined`. */
  load(key: string): CachedImage | undefined | Promise<CachedImage | undefined>;
  /** Stores `image` as the entry for its key; false when the tier did not take it. */
  save(image: CachedImage): boolean | Promise<boolean>;
  /** Removes the entry of `key`; with `fetchedBefore` (epoch ms), only an entry fetched before then. */
  delete(key: string, fetchedBefore?: number): void | Promise<void>;
}
