import { Inject, Injectable } from '@nestjs/common';
import type { ConfigType } from '@nestjs/config';
import { HealthIndicatorService } from '@nestjs/terminus';
import { sharedCacheConfig } from '../config/shared-cache.config';
import { SharedTier } from '../image/cache/shared/shared-tier';

/**
 * Always up: a pod whose Redis is down serves from its own tiers and the upstream, as a
 * single pod would, so taking it out of the Service would only make an outage worse. The
 * details say whether the shared tier is configured and in use, and why not.
 */
@Injectable()
export class SharedCacheHealthIndicator {
  constructor(
    private readonly indicators: HealthIndicatorService,
    private readonly shared: SharedTier,
    @Inject(sharedCacheConfig.KEY)
    private readonly config: ConfigType<typeof sharedCacheConfig>,
  ) {}

  isHealthy(key: string) {
    const indicator = this.indicators.check(key);
    if (!this.shared.enabled) {
      return indicator.up({ configured: false });
    }
    const problem = this.shared.problem;
    return indicator.up({
      configured: true,
      redis: this.config.displayName,
      connected: problem === undefined,
      ...(problem === undefined ? {} : { message: problem }),
    });
  }
}
