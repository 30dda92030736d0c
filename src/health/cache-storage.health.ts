import { Injectable } from '@nestjs/common';
import { HealthIndicatorService } from '@nestjs/terminus';
import { errorMessage } from '../common/error-message';
import { DiskStore } from '../image/disk-store';

/** Ready only while the cache directory takes writes; the upstream's state is deliberately not part of it. */
@Injectable()
export class CacheStorageHealthIndicator {
  constructor(
    private readonly indicators: HealthIndicatorService,
    private readonly disk: DiskStore,
  ) {}

  async isHealthy(key: string) {
    const indicator = this.indicators.check(key);
    try {
      await this.disk.probe();
      return indicator.up({ directory: this.disk.directory });
    } catch (error) {
      return indicator.down({
        directory: this.disk.directory,
        message: errorMessage(error),
      });
    }
  }
}
