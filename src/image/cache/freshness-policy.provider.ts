import type { FactoryProvider } from '@nestjs/common';
import type { ConfigType } from '@nestjs/config';
import { cacheConfig } from '../../config/cache.config';
import { FreshnessPolicy } from './freshness-policy';

/** The freshness policy of the configured windows (`CACHE_TTL_SECONDS` and the rest). */
export const freshnessPolicyProvider: FactoryProvider<FreshnessPolicy> = {
  provide: FreshnessPolicy,
  inject: [cacheConfig.KEY],
  useFactory: (config: ConfigType<typeof cacheConfig>) =>
    new FreshnessPolicy(config),
};
