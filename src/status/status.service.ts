import { Injectable } from '@nestjs/common';
import { CacheService } from '../image/cache/cache.service';
import { Clock } from '../image/cache/clock';
import { DiskStore } from '../image/cache/disk-store';
import { FreshnessPolicy } from '../image/cache/freshness-policy';
import { LocalVariants } from '../image/cache/local-variants';
import { MemoryTier } from '../image/cache/memory-tier';
import { SharedTier } from '../image/cache/shared/shared-tier';
import { imageInfoOf } from '../image/image-info';
import { ImageVariantPipe } from '../image/image-variant.pipe';
import { PicsumClient } from '../image/upstream/picsum.client';
import { CacheMetrics } from '../metrics/cache-metrics';
import type { StatusReport, VariantStatus } from './status-report';

/** The most recently used variants `GET /status` lists; the rest are only counted. */
export const STATUS_VARIANTS_LISTED = 20;

/**
 * Gathers what `GET /status` reports from the parts that know it; reads only, never fetches.
 * The work is the same whatever the number of cached variants: counts and totals the tiers
 * keep up to date, and at most `STATUS_VARIANTS_LISTED` variants, so anyone polling the page
 * costs the requests served meanwhile nothing more as the cache grows.
 */
@Injectable()
export class StatusService {
  private readonly startedAt = new Date().toISOString();

  constructor(
    private readonly cache: CacheService,
    private readonly memory: MemoryTier,
    private readonly disk: DiskStore,
    private readonly shared: SharedTier,
    private readonly variants: LocalVariants,
    private readonly client: PicsumClient,
    private readonly metrics: CacheMetrics,
    private readonly variantPipe: ImageVariantPipe,
    private readonly policy: FreshnessPolicy,
    private readonly clock: Clock,
  ) {}

  async report(): Promise<StatusReport> {
    const image = await this.cache.peek(this.variantPipe.transform({}));
    const counts = this.metrics.requestCounts;
    const answered = counts.hit + counts.miss + counts.stale + counts.error;
    const upstream = this.client.state;
    const sharedProblem = this.shared.problem;
    const staleOnErrorAt = this.metrics.lastStaleOnErrorAt;
    return {
      now: new Date(this.clock.now()).toISOString(),
      startedAt: this.startedAt,
      ttlSeconds: this.policy.ttlSeconds,
      image: image ? imageInfoOf(image, this.cache.freshness(image)) : null,
      requests: {
        ...counts,
        hitRatio: answered === 0 ? null : counts.hit / answered,
      },
      memory: {
        bytes: this.memory.bytes,
        maxBytes: this.memory.maxBytes,
        entries: this.memory.size,
      },
      disk: {
        bytes: this.disk.usedBytes,
        maxBytes: this.disk.maxBytes,
        entries: this.disk.entryCount,
      },
      upstream: {
        state: upstream.failingSince === null ? 'ok' : 'failing',
        failingSince:
          upstream.failingSince === null
            ? null
            : new Date(upstream.failingSince).toISOString(),
        lastError: upstream.lastError,
        servingStale:
          upstream.failingSince !== null &&
          staleOnErrorAt !== null &&
          staleOnErrorAt >= upstream.failingSince,
      },
      sharedTier: {
        state: !this.shared.enabled
          ? 'off'
          : sharedProblem === undefined
            ? 'connected'
            : 'unavailable',
        problem: sharedProblem ?? null,
      },
      variantCount: this.variants.count,
      variants: this.recentVariants(),
    };
  }

  /** The most recently used variants in memory, then on disk, at most `STATUS_VARIANTS_LISTED`. */
  private recentVariants(): VariantStatus[] {
    const listed = new Map<string, VariantStatus>();
    const list = (key: string, bytes: number, fetchedAt: number) => {
      if (!listed.has(key) && listed.size < STATUS_VARIANTS_LISTED) {
        listed.set(key, {
          key,
          bytes,
          expiresAt: new Date(this.policy.expiresAt(fetchedAt)).toISOString(),
          stale: this.policy.isStale(fetchedAt, this.clock.now()),
        });
      }
    };
    for (const image of this.memory.recent(STATUS_VARIANTS_LISTED)) {
      list(image.key, image.body.length, image.fetchedAt);
    }
    for (const metadata of this.disk.recent(STATUS_VARIANTS_LISTED)) {
      list(metadata.key, metadata.bytes, Date.parse(metadata.fetchedAt));
    }
    return [...listed.values()];
  }
}
