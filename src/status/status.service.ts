import { Injectable } from '@nestjs/common';
import { CacheService } from '../image/cache/cache.service';
import { Clock } from '../image/cache/clock';
import { DiskStore } from '../image/cache/disk-store';
import { MemoryTier } from '../image/cache/memory-tier';
import { SharedTier } from '../image/cache/shared/shared-tier';
import { imageInfoOf } from '../image/image-info';
import { ImageVariantPipe } from '../image/image-variant.pipe';
import { PicsumClient } from '../image/upstream/picsum.client';
import { CacheMetrics } from '../metrics/cache-metrics';
import type { StatusReport } from './status-report';

/** Gathers what `GET /status` reports from the parts that know it; reads only, never fetches. */
@Injectable()
export class StatusService {
  private readonly startedAt = new Date().toISOString();

  constructor(
    private readonly cache: CacheService,
    private readonly memory: MemoryTier,
    private readonly disk: DiskStore,
    private readonly shared: SharedTier,
    private readonly client: PicsumClient,
    private readonly metrics: CacheMetrics,
    private readonly variants: ImageVariantPipe,
    private readonly clock: Clock,
  ) {}

  async report(): Promise<StatusReport> {
    const image = await this.cache.peek(this.variants.transform({}));
    const counts = this.metrics.requestCounts;
    const answered = counts.hit + counts.miss + counts.stale + counts.error;
    const upstream = this.client.state;
    const variants = await this.cache.entries({ shared: false });
    const sharedProblem = this.shared.problem;
    return {
      now: new Date(this.clock.now()).toISOString(),
      startedAt: this.startedAt,
      ttlSeconds: this.cache.ttlSeconds,
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
          variants.some((variant) => variant.stale),
      },
      sharedTier: {
        state: !this.shared.enabled
          ? 'off'
          : sharedProblem === undefined
            ? 'connected'
            : 'unavailable',
        problem: sharedProblem ?? null,
      },
      variants: variants.map(({ key, bytes, expiresAt, stale }) => ({
        key,
        bytes,
        expiresAt,
        stale,
      })),
    };
  }
}
