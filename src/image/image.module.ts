import { HttpModule } from '@nestjs/axios';
import { Module } from '@nestjs/common';
import type { ConfigType } from '@nestjs/config';
import { upstreamConfig } from '../config/upstream.config';
import { CacheEntries } from './cache/cache-entries';
import { CACHE_PROVIDERS } from './cache/cache.providers';
import { CacheUsage } from './cache/cache-usage';
import { CacheService } from './cache/cache.service';
import { Clock } from './cache/clock';
import { DiskStore } from './cache/disk/disk-store';
import { TierMetrics } from './cache/tier-metrics';
import { FreshHitHook } from './fresh-hit.hook';
import { ImageVariantPipe } from './image-variant.pipe';
import { ImageController } from './image.controller';
import { PicsumClient } from './upstream/picsum.client';
import { UpstreamAgents } from './upstream/upstream-agents';
import { upstreamHttpOptions } from './upstream/upstream-http.options';

@Module({
  imports: [
    HttpModule.registerAsync({
      inject: [upstreamConfig.KEY, UpstreamAgents],
      useFactory: (
        config: ConfigType<typeof upstreamConfig>,
        agents: UpstreamAgents,
      ) => upstreamHttpOptions(config, agents),
      extraProviders: [UpstreamAgents],
    }),
  ],
  controllers: [ImageController],
  providers: [
    ...CACHE_PROVIDERS,
    PicsumClient,
    DiskStore,
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
