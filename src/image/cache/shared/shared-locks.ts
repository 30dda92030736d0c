import { Inject, Injectable } from '@nestjs/common';
import type { ConfigType } from '@nestjs/config';
import { randomUUID } from 'node:crypto';
import { sharedCacheConfig } from '../../../config/shared-cache.config';
import { RedisConnection } from './redis-connection';
import { compareAndDelete, TAKE_LOCK } from './redis-scripts';
import { SharedKeys } from './shared-keys';
import { SharedRejections } from './shared-rejections';

/** A variant's fetch lock, held by this replica until released or expired. */
export interface SharedLock {
  readonly key: string;
  readonly token: string;
}

/** What `lock()` got: the lock, `held` by another replica, or `unavailable` (Redis down). */
export type LockAttempt = SharedLock | 'held' | 'unavailable';

/**
 * The variants' fetch locks in Redis: the replica that holds one fetches the variant, and the
 * others wait for its image. A lock expires after the lock TTL (the longest a fetch can take),
 * so a holder that dies hands the fetch over.
 */
@Injectable()
export class SharedLocks {
  constructor(
    private readonly redis: RedisConnection,
    private readonly keys: SharedKeys,
    private readonly rejections: SharedRejections,
    @Inject(sharedCacheConfig.KEY)
    private readonly config: Pick<
      ConfigType<typeof sharedCacheConfig>,
      'lockTtlMs'
    >,
  ) {}

  /**
   * Tries once to take the fetch lock of `key`, which expires after the lock TTL if never
   * released. A lock left without an expiry, or with a longer one than any replica sets, was
   * not taken by a replica: it is taken over, so the variant's misses do not wait for ever.
   */
  async lock(key: string): Promise<LockAttempt> {
    if (!this.redis.enabled) {
      return 'unavailable';
    }
    const lock: SharedLock = { key: this.keys.lock(key), token: randomUUID() };
    try {
      const reply = await this.redis.run((redis) =>
        redis.eval(TAKE_LOCK, {
          keys: [lock.key],
          arguments: [lock.token, String(this.config.lockTtlMs)],
        }),
      );
      if (reply === 2) {
        this.rejections.rejected(
          'lock',
          lock.key,
          `a lock without an expiry or held for longer than the lock TTL (${this.config.lockTtlMs} ms); taken over`,
        );
      }
      return reply === 0 ? 'held' : lock;
    } catch {
      return 'unavailable';
    }
  }

  /** Releases `lock` if this replica still holds it; a lock that expired and was taken over stays with its new holder. */
  async unlock(lock: SharedLock): Promise<void> {
    await compareAndDelete(this.redis, lock.key, lock.token);
  }
}
