import { Injectable } from '@nestjs/common';
import { HealthIndicatorService } from '@nestjs/terminus';
import { CacheUsage } from '../image/cache/cache-usage';
import { errorKind } from './error-kind';

/**
 * Always up: a pod whose Redis is down serves from its own tiers and the upstream, as a
 * single pod would, so taking it out of the Service would only make an outage worse. The
 * details say whether the shared tier is configured and in use, and if not, the kind of
 * problem (`not connected`, `timeout`, `ECONNREFUSED`, `OOM`...); Redis's address and the full
 * reason are in the logs, not in a body anyone who reaches the probe can read.
 */
@Injectable()
export class SharedCacheHealthIndicator {
  constructor(
    private readonly indicators: HealthIndicatorService,
    private readonly usage: CacheUsage,
  ) {}

  isHealthy(key: string) {
    const indicator = this.indicators.check(key);
    const { enabled, problem } = this.usage.shared();
    if (!enabled) {
      return indicator.up({ configured: false });
    }
    return indicator.up({
      configured: true,
      connected: problem === undefined,
      ...(problem === undefined
        ? {}
        : {
            problem:
              problem === 'not connected'
                ? problem
                : errorKind(problem, 'failing'),
          }),
    });
  }
}
