import { Module } from '@nestjs/common';
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

@Module({
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
