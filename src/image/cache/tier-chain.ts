import { Injectable } from '@nestjs/common';
import type { CachedImage, TierName } from './cache-model';
import type { CacheTier } from './cache-tier';
import { Clock } from './clock';
import { DiskStore } from './disk/disk-store';
import { FreshnessPolicy } from './freshness-policy';
import { MemoryTier } from './memory-tier';
import { PurgeGenerations } from './purge-generations';
import { SharedTier } from './shared/shared-tier';
import { SingleFlight } from './single-flight';

/** An image a tier held, and which tier. */
export interface Found {
  readonly image: CachedImage;
  readonly tier: TierName;
}

/**
 * The tiers below memory in the order they are asked (the local disk, then, when configured,
 * the Redis every replica shares), and how an image moves between them: what a lower tier held
 * is copied into the tiers above it with its original `fetchedAt`, so a copy keeps only the
 * freshness it had left; a new image is stored in every tier; a copy another replica replaced
 * is dropped from the local ones. Which image to serve is not decided here.
 */
@Injectable()
export class TierChain {
  private readonly loads = new SingleFlight<CachedImage | undefined>();
  /** The tiers below memory, in the order they are asked. */
  private readonly lowerTiers: readonly CacheTier[];
  /** The tiers other replicas write too. */
  private readonly tiersWrittenElsewhere: readonly CacheTier[];

  constructor(
    private readonly memory: MemoryTier,
    private readonly disk: DiskStore,
    private readonly shared: SharedTier,
    private readonly policy: FreshnessPolicy,
    private readonly generations: PurgeGenerations,
    private readonly clock: Clock,
  ) {
    this.lowerTiers = shared.enabled ? [disk, shared] : [disk];
    this.tiersWrittenElsewhere = shared.enabled ? [shared] : [];
  }

  /**
   * Asks the disk, then the shared tier, until one holds a fresh image; else returns the
   * newest stale one any tier held (`inMemory` included). What was found below memory is
   * copied into the tiers above it, unless the variant was purged meanwhile. Each tier is read
   * once for any number of callers.
   */
  async findBelowMemory(
    key: string,
    inMemory: CachedImage | undefined,
  ): Promise<Found | undefined> {
    const mark = this.generations.mark();
    let newest: Found | undefined = inMemory
      ? { image: inMemory, tier: 'memory' }
      : undefined;
    // Every image goes to memory first, so the disk never holds a newer one than memory: past
    // a memory entry, only the shared tier, which other replicas write, can have news.
    const tiers = inMemory ? this.tiersWrittenElsewhere : this.lowerTiers;
    for (const tier of tiers) {
      const image = await this.loads.run(`${tier.name}:${key}`, async () =>
        tier.load(key),
      );
      if (image && (!newest || image.fetchedAt > newest.image.fetchedAt)) {
        newest = { image, tier: tier.name };
      }
      if (newest && !this.isStale(newest.image)) {
        break;
      }
    }
    if (!newest || newest.tier === 'memory') {
      return newest;
    }
    // A fetch that finished while the tiers were read is newer than what they had.
    const current = this.memory.load(key);
    if (current && current.fetchedAt >= newest.image.fetchedAt) {
      return { image: current, tier: 'memory' };
    }
    // What a purge since removed is served to this request, and kept nowhere.
    if (!this.generations.purgedSince(key, mark)) {
      this.keepLocally(newest.image, newest.tier);
    }
    return newest;
  }

  /** The shared tier's image for `key` if it is fresh, copied into the local tiers. */
  async freshFromShared(key: string): Promise<CachedImage | undefined> {
    const image = await this.shared.load(key);
    if (!image || this.isStale(image)) {
      return undefined;
    }
    this.keepLocally(image, 'shared');
    return image;
  }

  /**
   * Copies an image a lower tier held into the tiers above it. A shared image is served at
   * once; its disk copy is for the next restart and is not waited for.
   */
  keepLocally(image: CachedImage, from: TierName): void {
    this.memory.save(image);
    if (from === 'shared') {
      void this.disk.save(image);
    }
  }

  /**
   * Stores a new image in every tier: in memory at once (before the first await), then on disk
   * and in Redis, whose notice makes the other replicas drop their older copies, or every copy
   * with `replaces` (an admin refresh). A tier that does not take it logs its own failure (once
   * per outage), and the image is served from the tiers that did.
   */
  async store(image: CachedImage, { replaces = false } = {}): Promise<void> {
    if (replaces) {
      this.memory.delete(image.key);
    }
    this.memory.save(image);
    await Promise.all([
      this.disk.save(image),
      this.shared.save(image, { replaces }),
    ]);
  }

  /**
   * Drops this replica's copies of `key` fetched before `fetchedBefore` (all, by default):
   * another replica stored a newer image, or replaced every copy.
   */
  dropLocal(key: string, fetchedBefore = Infinity): void {
    this.memory.delete(key, fetchedBefore);
    void this.disk.delete(key, fetchedBefore);
  }

  private isStale(image: CachedImage): boolean {
    return this.policy.isStale(image.fetchedAt, this.clock.now());
  }
}
