import { Injectable, Logger } from '@nestjs/common';
import { LRUCache } from 'lru-cache';
import { CacheMetrics } from '../../../metrics/cache-metrics';
import type { SharedRejectedKind } from '../../../metrics/metric-labels';

/** Keys whose rejection was logged, remembered at once: a flood of bad keys cannot grow memory. */
const MAX_LOGGED_KEYS = 10_000;

/**
 * Counts what was read from Redis and discarded (`image_cache_shared_rejected_total{kind}`), and
 * logs it once per Redis key and kind, with the key: a bad value that every request reads again
 * until it is gone is one log line, not one per request.
 */
@Injectable()
export class SharedRejections {
  private readonly logger = new Logger('SharedTier');
  private readonly logged = new LRUCache<string, true>({
    max: MAX_LOGGED_KEYS,
  });

  constructor(private readonly metrics: CacheMetrics) {}

  rejected(kind: SharedRejectedKind, redisKey: string, reason: string): void {
    this.metrics.sharedRejected(kind);
    const logKey = `${kind}\u0000${redisKey}`;
    if (this.logged.has(logKey)) {
      return;
    }
    this.logged.set(logKey, true);
    this.logger.warn(
      `Discarded the shared ${kind} at ${JSON.stringify(redisKey)}: ${reason}`,
    );
  }
}
