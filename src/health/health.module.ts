import { Module } from '@nestjs/common';
import type { ConfigType } from '@nestjs/config';
import { TerminusModule } from '@nestjs/terminus';
import { serverConfig } from '../config/server.config';
import { ImageModule } from '../image/image.module';
import { CacheStorageHealthIndicator } from './cache-storage.health';
import { HealthController } from './health.controller';
import { SharedCacheHealthIndicator } from './shared-cache.health';
import { ShutdownHealthIndicator } from './shutdown.health';

@Module({
  imports: [
    TerminusModule.forRootAsync({
      inject: [serverConfig.KEY],
      useFactory: (server: ConfigType<typeof serverConfig>) => ({
        gracefulShutdownTimeoutMs: server.shutdownDrainMs,
        errorLogStyle: 'pretty',
      }),
    }),
    ImageModule,
  ],
  controllers: [HealthController],
  providers: [
    CacheStorageHealthIndicator,
    SharedCacheHealthIndicator,
    ShutdownHealthIndicator,
  ],
})
export class HealthModule {}
