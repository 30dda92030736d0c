import { Injectable, type OnModuleInit } from '@nestjs/common';
import { CacheMetrics } from '../../metrics/cache-metrics';
import { CacheUsage } from './cache-usage';

/** Hands the tiers' use, budgets and evictions, and the shared tier's state, to the metrics. */
@Injectable()
export class TierMetrics implements OnModuleInit {
  constructor(
    private readonly metrics: CacheMetrics,
    private readonly usage: CacheUsage,
  ) {}

  onModuleInit(): void {
    this.metrics.trackTiers({
      memory: () => this.usage.memory(),
      disk: () => this.usage.disk(),
    });
    if (this.usage.shared().enabled) {
      this.metrics.trackSharedTier(
        () => this.usage.shared().problem === undefined,
      );
    }
  }
}
