import { Injectable } from '@nestjs/common';
import { CacheUsage, type TierUse } from '../image/cache/cache-usage';
import { CacheService } from '../image/cache/cache.service';
import { Clock } from '../image/cache/clock';
import { imageInfoOf } from '../image/image-info';
import { ImageVariantPipe } from '../image/image-variant.pipe';
import { PicsumClient } from '../image/upstream/picsum.client';
import { CacheMetrics } from '../metrics/cache-metrics';
import type { StatusReport } from './status-report';

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
    private readonly usage: CacheUsage,
    private readonly client: PicsumClient,
    private readonly metrics: CacheMetrics,
    private readonly variantPipe: ImageVariantPipe,
    private readonly clock: Clock,
  ) {}

  async report(): Promise<StatusReport> {
    const image = await this.cache.peek(this.variantPipe.transform({}));
    const counts = this.metrics.requestCounts;
    const answered = counts.hit + counts.miss + counts.stale + counts.error;
    const upstream = this.client.state;
    const shared = this.usage.shared();
    const staleOnErrorAt = this.metrics.lastStaleOnErrorAt;
    return {
      now: new Date(this.clock.now()).toISOString(),
      startedAt: this.startedAt,
      ttlSeconds: this.cache.ttlSeconds,
      image: image ? imageInfoOf(image, this.cache.freshness(image)) : null,
      requests: {
        ...counts,
        hitRatio: answered === 0 ? null : counts.hit / answered,
      },
      memory: tierUse(this.usage.memory()),
      disk: tierUse(this.usage.disk()),
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
        state: !shared.enabled
          ? 'off'
          : shared.problem === undefined
            ? 'connected'
            : 'unavailable',
        problem: shared.problem ?? null,
      },
      variantCount: this.usage.variantCount,
      variants: this.usage.recentVariants(STATUS_VARIANTS_LISTED),
    };
  }
}

/** A tier's use as the status page shows it (evictions are in the metrics). */
function tierUse({
  bytes,
  maxBytes,
  entries,
}: TierUse): StatusReport['memory'] {
  return { bytes, maxBytes, entries };
}
