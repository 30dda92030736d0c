import { Injectable } from '@nestjs/common';
import { HealthIndicatorService } from '@nestjs/terminus';
import { CacheUsage } from '../image/cache/cache-usage';
import { errorKind } from './error-kind';

/**
 * Ready while the cache directory can be read, so stored images can be served. A directory
 * that takes no writes (full, read-only) keeps the pod ready, serving new images from memory,
 * and says so in the details, by the error's kind alone: the directory and the full reason are
 * in the logs, not in a body anyone who reaches the probe can read. The upstream's state is
 * deliberately not part of it.
 */
@Injectable()
export class CacheStorageHealthIndicator {
  constructor(
    private readonly indicators: HealthIndicatorService,
    private readonly usage: CacheUsage,
  ) {}

  async isHealthy(key: string) {
    const indicator = this.indicators.check(key);
    const { readable, writable, reason } = await this.usage.diskStatus();
    const details = {
      writable,
      ...(reason === undefined
        ? {}
        : {
            problem: errorKind(
              reason,
              readable ? 'not writable' : 'not readable',
            ),
          }),
    };
    return readable ? indicator.up(details) : indicator.down(details);
  }
}
