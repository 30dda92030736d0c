import { HttpModule } from '@nestjs/axios';
import { Module } from '@nestjs/common';
import { CacheService } from './cache.service';
import { Clock } from './clock';
import { DiskStore } from './disk-store';
import { ImageController } from './image.controller';
import { PicsumClient } from './picsum.client';

@Module({
  imports: [HttpModule],
  controllers: [ImageController],
  providers: [CacheService, PicsumClient, DiskStore, Clock],
  exports: [DiskStore],
})
export class ImageModule {}
