import { Inject, Injectable } from '@nestjs/common';
import type { ConfigType } from '@nestjs/config';
import {
  E_TIMEOUT,
  Semaphore,
  type SemaphoreInterface,
  withTimeout,
} from 'async-mutex';
import { upstreamConfig } from '../../config/upstream.config';
import { UpstreamBusyException } from './upstream-busy.exception';

/**
 * Caps concurrent upstream fetches at `UPSTREAM_MAX_CONCURRENCY`, whatever number of distinct
 * variants is asked for at once. A fetch past the cap waits its turn for up to
 * `UPSTREAM_QUEUE_TIMEOUT_MS`, then fails with a 503 and `Retry-After`. Only misses pass
 * through here; cache hits never wait.
 */
@Injectable()
export class UpstreamLimiter {
  private readonly semaphore: SemaphoreInterface;
  private running = 0;

  constructor(
    @Inject(upstreamConfig.KEY)
    private readonly config: ConfigType<typeof upstreamConfig>,
  ) {
    this.semaphore = withTimeout(
      new Semaphore(config.maxConcurrency),
      config.queueTimeoutMs,
    );
  }

  /** Fetches running now. */
  get active(): number {
    return this.running;
  }

  async run<T>(fetch: () => Promise<T>): Promise<T> {
    try {
      return await this.semaphore.runExclusive(async () => {
        this.running += 1;
        try {
          return await fetch();
        } finally {
          this.running -= 1;
        }
      });
    } catch (error) {
      if (error === E_TIMEOUT) {
        throw new UpstreamBusyException(
          Math.max(1, Math.ceil(this.config.queueTimeoutMs / 1000)),
          this.config.maxConcurrency,
          this.config.queueTimeoutMs,
        );
      }
      throw error;
    }
  }
}
