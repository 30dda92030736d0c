import { Global, Module } from '@nestjs/common';
import { CacheMetrics } from './cache-metrics';
import { EventLoopDelay } from './event-loop-delay';
import { HttpRequestMetrics } from './http-request-metrics';
import { MetricsController } from './metrics.controller';

/**
 * `GET /metrics` and the metrics behind it. Global, so that the classes that count (the image
 * controller, the upstream client, the tiers' gauges) inject `CacheMetrics` wherever they are.
 */
@Global()
@Module({
  controllers: [MetricsController],
  providers: [CacheMetrics, HttpRequestMetrics, EventLoopDelay],
  exports: [CacheMetrics],
})
export class MetricsModule {}
