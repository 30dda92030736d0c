import { Injectable } from '@nestjs/common';
import { Clock } from './clock';
import type { DiskStatus } from './disk/disk-health';
import { DiskStore } from './disk/disk-store';
import { FreshnessPolicy } from './freshness-policy';
import { LocalVariants } from './local-variants';
import { MemoryTier } from './memory-tier';
import { SharedTier } from './shared/shared-tier';

/** What a tier with a byte budget holds. */
export interface TierUse {
  readonly bytes: number;
  /** The budget; 0 when the tier is off. */
  readonly maxBytes: number;
  readonly entries: number;
  /** Entries evicted for space since start. */
  readonly evictions: number;
}

/** A variant held here, as the status page lists it. */
export interface HeldVariant {
  readonly key: string;
  readonly bytes: number;
  /** ISO 8601. */
  readonly expiresAt: string;
  readonly stale: boolean;
}

/** Whether the shared tier is configured, and why it cannot be used now. */
export interface SharedTierState {
  readonly enabled: boolean;
  readonly problem?: string;
}

/**
 * A read-only view of what the cache holds and the state of its tiers, for the status page,
 * the probes and the metrics: they read it here rather than from the tiers themselves, which
 * stay inside ImageModule. Every answer costs the same however many variants are cached.
 */
@Injectable()
export class CacheUsage {
  constructor(
    private readonly memoryTier: MemoryTier,
    private readonly diskTier: DiskStore,
    private readonly sharedTier: SharedTier,
    private readonly variants: LocalVariants,
    private readonly policy: FreshnessPolicy,
    private readonly clock: Clock,
  ) {}

  memory(): TierUse {
    return {
      bytes: this.memoryTier.bytes,
      maxBytes: this.memoryTier.maxBytes,
      entries: this.memoryTier.size,
      evictions: this.memoryTier.evictions,
    };
  }

  disk(): TierUse {
    return {
      bytes: this.diskTier.usedBytes,
      maxBytes: this.diskTier.maxBytes,
      entries: this.diskTier.entryCount,
      evictions: this.diskTier.evictions,
    };
  }

  /** Whether the cache directory can be read and written, as readiness reports it. */
  diskStatus(): Promise<DiskStatus> {
    return this.diskTier.status();
  }

  shared(): SharedTierState {
    return this.sharedTier.enabled
      ? { enabled: true, problem: this.sharedTier.problem }
      : { enabled: false };
  }

  /** How many variants this replica holds in memory or on disk. */
  get variantCount(): number {
    return this.variants.count;
  }

  /** Up to `limit` variants held here, the most recently used in memory first, then on disk. */
  recentVariants(limit: number): HeldVariant[] {
    const listed = new Map<string, HeldVariant>();
    const now = this.clock.now();
    const list = (key: string, bytes: number, fetchedAt: number) => {
      if (!listed.has(key) && listed.size < limit) {
        listed.set(key, {
          key,
          bytes,
          expiresAt: new Date(this.policy.expiresAt(fetchedAt)).toISOString(),
          stale: this.policy.isStale(fetchedAt, now),
        });
      }
    };
    for (const image of this.memoryTier.recent(limit)) {
      list(image.key, image.body.length, image.fetchedAt);
    }
    for (const metadata of this.diskTier.recent(limit)) {
      list(metadata.key, metadata.bytes, Date.parse(metadata.fetchedAt));
    }
    return [...listed.values()];
  }
}
