import { Module } from '@nestjs/common';
import { CacheEntries } from './cache/cache-entries';
import { CacheUsage } from './cache/cache-usage';
import { CacheService } from './cache/cache.service';
import { Clock } from './cache/clock';
import { DiskStore } from './cache/disk-store';
import { FreshHitHook } from './fresh-hit.hook';
import { ImageVariantPipe } from './image-variant.pipe';
import { ImageController } from './image.controller';
import { FailureMemory } from './cache/failure-memory';
import { PurgeGenerations } from './cache/purge-generations';
import { Prefetcher } from './cache/prefetcher';
import { FetchCoordinator } from './cache/fetch-coordinator';
import { CacheAdmin } from './cache/cache-admin';
import { ReplicaSync } from './cache/replica-sync';
import { TierChain } from './cache/tier-chain';
import { freshnessPolicyProvider } from './cache/freshness-policy.provider';
import { LocalVariants } from './cache/local-variants';
import { MemoryTier } from './cache/memory-tier';
import { PicsumClient } from './upstream/picsum.client';
import { RedisConnection } from './cache/shared/redis-connection';
import { ReplicaNotices } from './cache/shared/replica-notices';
import { sharedCodecProvider } from './cache/shared/shared-codec.provider';
import { SharedKeys } from './cache/shared/shared-keys';
import { SharedLocks } from './cache/shared/shared-locks';
import { SharedScan } from './cache/shared/shared-scan';
import { SharedRejections } from './cache/shared/shared-rejections';
import { SharedTier } from './cache/shared/shared-tier';
import { TierMetrics } from './cache/tier-metrics';
import { UpstreamLimiter } from './upstream/upstream-limiter';

@Module({
  controllers: [ImageController],
  providers: [
    CacheService,
    CacheEntries,
    CacheUsage,
    LocalVariants,
    freshnessPolicyProvider,
    FailureMemory,
    TierChain,
    Prefetcher,
    FetchCoordinator,
    CacheAdmin,
    ReplicaSync,
    PurgeGenerations,
    PicsumClient,
    UpstreamLimiter,
    MemoryTier,
    DiskStore,
    SharedTier,
    SharedKeys,
    sharedCodecProvider,
    SharedRejections,
    ReplicaNotices,
    SharedLocks,
    SharedScan,
    RedisConnection,
    Clock,
    ImageVariantPipe,
    TierMetrics,
    FreshHitHook,
  ],
  // What the other modules use: the façade and the admin's list, a read-only view of the
  // tiers, the upstream's state, the query pipe and the clock; the tiers stay inside.
  exports: [
    CacheService,
    CacheEntries,
    CacheUsage,
    ImageVariantPipe,
    PicsumClient,
    Clock,
  ],
})
export class ImageModule {}
