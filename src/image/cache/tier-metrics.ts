import { Injectable, type OnModuleInit } from '@nestjs/common';
import { CacheMetrics } from '../../metrics/cache-metrics';
import { DiskStore } from './disk-store';
import { MemoryTier } from './memory-tier';
import { SharedTier } from './shared/shared-tier';

/** Hands the tiers' use, budgets and evictions, and the shared tier's state, to the metrics. */
@Injectable()
export class TierMetrics implements OnModuleInit {
  constructor(
    private readonly metrics: CacheMetrics,
    private readonly memory: MemoryTier,
    private readonly disk: DiskStore,
    private readonly shared: SharedTier,
  ) {}

  onModuleInit(): void {
    this.metrics.trackTiers({
      memory: () => ({
        bytes: this.memory.bytes,
        maxBytes: this.memory.maxBytes,
        entries: this.memory.size,
        evictions: this.memory.evictions,
      }),
      disk: () => ({
        bytes: this.disk.usedBytes,
        maxBytes: this.disk.maxBytes,
        entries: this.disk.entryCount,
        evictions: this.disk.evictions,
      }),
    });
    if (this.shared.enabled) {
      this.metrics.trackSharedTier(() => this.shared.problem === undefined);
    }
  }
}
