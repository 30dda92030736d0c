import { Module } from '@nestjs/common';
import { ConfigModule } from '@nestjs/config';
import { AdminModule } from './admin/admin.module';
import { adminConfig } from './config/admin.config';
import { cacheConfig } from './config/cache.config';
import { loggingConfig } from './config/logging.config';
import { serverConfig } from './config/server.config';
import { sharedCacheConfig } from './config/shared-cache.config';
import { upstreamConfig } from './config/upstream.config';
import { HealthModule } from './health/health.module';
import { ImageModule } from './image/image.module';
import { LoggingModule } from './logging/logging.module';
import { MetricsModule } from './metrics/metrics.module';
import { ServerModule } from './server/server.module';
import { StatusModule } from './status/status.module';

@Module({
  imports: [
    // Each namespace validates the whole environment when it is built, so a bad value stops
    // start-up with a message naming the variable before the server listens.
    ConfigModule.forRoot({
      isGlobal: true,
      load: [
        serverConfig,
        cacheConfig,
        upstreamConfig,
        sharedCacheConfig,
        loggingConfig,
        adminConfig,
      ],
    }),
    LoggingModule,
    ServerModule,
    MetricsModule,
    ImageModule,
    HealthModule,
    AdminModule,
    StatusModule,
  ],
})
export class AppModule {}
