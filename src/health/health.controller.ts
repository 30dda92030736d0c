import { Controller, Get } from '@nestjs/common';
import { HealthCheck, HealthCheckService } from '@nestjs/terminus';
import { CacheStorageHealthIndicator } from './cache-storage.health';
import { SharedCacheHealthIndicator } from './shared-cache.health';
import { ShutdownHealthIndicator } from './shutdown.health';

@Controller('health')
export class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly cacheStorage: CacheStorageHealthIndicator,
    private readonly shutdown: ShutdownHealthIndicator,
    private readonly sharedCache: SharedCacheHealthIndicator,
  ) {}

  /** Liveness: the process answers. Nothing it depends on is checked, so a restart never follows an outage elsewhere. */
  @Get('live')
  @HealthCheck()
  live() {
    return this.health.check([]);
  }

  /**
   * Readiness: this pod can serve, meaning its cache storage is usable and it is not shutting
   * down. The shared tier is reported but never makes the pod unready.
   */
  @Get('ready')
  @HealthCheck()
  ready() {
    return this.health.check([
      () => this.shutdown.isHealthy('shutdown'),
      () => this.cacheStorage.isHealthy('cacheStorage'),
      () => this.sharedCache.isHealthy('sharedCache'),
    ]);
  }
}
