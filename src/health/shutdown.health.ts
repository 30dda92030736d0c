import { Injectable, OnModuleDestroy } from '@nestjs/common';
import { HealthIndicatorService } from '@nestjs/terminus';

/**
 * Turns readiness down as soon as shutdown begins. `onModuleDestroy` is the first hook Nest
 * calls on SIGTERM, before Terminus waits `SHUTDOWN_DRAIN_MS`, so for all of that wait the pod
 * answers requests but tells the kubelet to send it no more.
 */
@Injectable()
export class ShutdownHealthIndicator implements OnModuleDestroy {
  private shuttingDown = false;

  constructor(private readonly indicators: HealthIndicatorService) {}

  onModuleDestroy(): void {
    this.shuttingDown = true;
  }

  isHealthy(key: string) {
    const indicator = this.indicators.check(key);
    return this.shuttingDown
      ? indicator.down({ message: 'shutting down' })
      : indicator.up();
  }
}
