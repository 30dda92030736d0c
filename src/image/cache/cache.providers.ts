import type { Provider } from '@nestjs/common';
import { CacheAdmin } from './cache-admin';
import { CacheEntries } from './cache-entries';
import { CacheUsage } from './cache-usage';
import { CacheService } from './cache.service';
import { FailureMemory } from './failure-memory';
import { FetchCoordinator } from './fetch-coordinator';
import { freshnessPolicyProvider } from './freshness-policy.provider';
import { LocalVariants } from './local-variants';
import { MemoryTier } from './memory-tier';
import { Prefetcher } from './prefetcher';
import { PurgeGenerations } from './purge-generations';
import { ReplicaSync } from './replica-sync';
import { RedisConnection } from './shared/redis-connection';
import { ReplicaNotices } from './shared/replica-notices';
import { sharedCodecProvider } from './shared/shared-codec.provider';
import { SharedKeys } from './shared/shared-keys';
import { SharedLocks } from './shared/shared-locks';
import { SharedRejections } from './shared/shared-rejections';
import { SharedScan } from './shared/shared-scan';
import { SharedTier } from './shared/shared-tier';
import { TierChain } from './tier-chain';
import { UpstreamLimiter } from '../upstream/upstream-limiter';

/**
 * The cache behind its façade (`CacheService`): its units, the memory tier and the shared
 * tier's parts. ImageModule provides them with the outside boundaries (the upstream client, the
 * disk, the clock); a spec provides them with those boundaries replaced.
 */
export const CACHE_PROVIDERS: Provider[] = [
  CacheService,
  CacheEntries,
  CacheUsage,
  CacheAdmin,
  ReplicaSync,
  FetchCoordinator,
  Prefetcher,
  TierChain,
  FailureMemory,
  freshnessPolicyProvider,
  PurgeGenerations,
  LocalVariants,
  MemoryTier,
  UpstreamLimiter,
  SharedTier,
  SharedKeys,
  sharedCodecProvider,
  SharedRejections,
  ReplicaNotices,
  SharedLocks,
  SharedScan,
  RedisConnection,
];
