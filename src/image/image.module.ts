import { HttpModule } from '@nestjs/axios';
import { Module } from '@nestjs/common';
import { CacheService } from './cache.service';
import { Clock } from './clock';
import { DiskStore } from './disk-store';
import { ImageVariantPipe } from './image-variant.pipe';
import { ImageController } from './image.controller';
import { MemoryTier } from './memory-tier';
import { PicsumClient } from './picsum.client';
import { UpstreamLimiter } from './upstream-limiter';

@Module({
  imports: [HttpModule],
  controllers: [ImageController],
  providers: [
    CacheService,
    PicsumClient,
    UpstreamLimiter,
    MemoryTier,
    DiskStore,
    Clock,
    ImageVariantPipe,
  ],
  exports: [DiskStore],
})
export class ImageModule {}
