import { HttpException, Inject, Injectable, Logger } from '@nestjs/common';
import type { ConfigType } from '@nestjs/config';
import { LRUCache } from 'lru-cache';
import { upstreamConfig } from '../../config/upstream.config';
import {
  forwardStatusOf,
  RemoteUpstreamFailure,
} from '../upstream/forward-status';
import { Clock } from './clock';
import type { FailedNotice } from './shared/shared-codec';
import { SharedTier } from './shared/shared-tier';

/** Failed fetches remembered at once, so that varying the variant cannot grow memory without bound. */
const MAX_REMEMBERED_FAILURES = 10_000;

interface Remembered {
  readonly error: HttpException;
  readonly retryAt: number;
}

/**
 * The upstream failures remembered per variant until their retry time
 * (`UPSTREAM_RETRY_AFTER_SECONDS`), so a failing upstream is not asked again for the variant
 * before then: this replica's own, and those other replicas record in the shared tier (by
 * notice, or read when this replica takes the fetch lock after them).
 */
@Injectable()
export class FailureMemory {
  private readonly logger = new Logger(FailureMemory.name);
  private readonly failures = new LRUCache<string, Remembered>({
    max: MAX_REMEMBERED_FAILURES,
  });

  constructor(
    private readonly shared: SharedTier,
    private readonly clock: Clock,
    @Inject(upstreamConfig.KEY)
    private readonly upstream: Pick<
      ConfigType<typeof upstreamConfig>,
      'retryAfterSeconds'
    >,
  ) {}

  /** The error of the failure remembered for `key` while the upstream is not to be asked again. */
  recent(key: string): HttpException | undefined {
    const failure = this.failures.get(key);
    return failure && this.clock.now() < failure.retryAt
      ? failure.error
      : undefined;
  }

  /**
   * Remembers that this replica's fetch of `key` failed, and records it in the shared tier
   * (before the fetch lock is released, so the replica that takes it next knows).
   */
  async record(key: string, error: HttpException): Promise<void> {
    const retryAfterMs = this.upstream.retryAfterSeconds * 1000;
    const retryAt = this.clock.now() + retryAfterMs;
    this.failures.set(key, { error, retryAt });
    // The fetch itself was logged by the client, on one line.
    this.logger.debug(
      `Not asking the upstream for ${key} again before ${new Date(retryAt).toISOString()}`,
    );
    const forwardStatus = forwardStatusOf(error);
    await this.shared.recordFailure(key, {
      status: error.getStatus(),
      ...(forwardStatus === error.getStatus() ? {} : { forwardStatus }),
      message: error.message,
      retryAfterMs,
    });
  }

  /** Remembers another replica's failed fetch, from its notice or its record. */
  rememberRemote(failure: FailedNotice): HttpException {
    const error = new RemoteUpstreamFailure(failure);
    this.failures.set(failure.key, {
      error,
      retryAt: this.clock.now() + failure.retryAfterMs,
    });
    return error;
  }

  /**
   * The failure another replica recorded in the shared tier for `key` and its retry time left,
   * remembered here too, or `undefined`.
   */
  async loadRemote(key: string): Promise<HttpException | undefined> {
    const failure = await this.shared.loadFailure(key);
    return failure ? this.rememberRemote(failure) : undefined;
  }

  /** Forgets `key`'s failure: an image was stored, or the variant purged. */
  forget(key: string): void {
    this.failures.delete(key);
  }

  forgetAll(): void {
    this.failures.clear();
  }
}
