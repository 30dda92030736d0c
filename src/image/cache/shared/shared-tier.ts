import { Inject, Injectable } from '@nestjs/common';
import type { ConfigType } from '@nestjs/config';
import { sharedCacheConfig } from '../../../config/shared-cache.config';
import type { CachedImage } from '../cache-model';
import type { CacheTier } from '../cache-tier';
import { Clock } from '../clock';
import { RedisConnection } from './redis-connection';
import { compareAndDelete, COMPARE_PREFIX_AND_DELETE } from './redis-scripts';
import { type OutgoingNotice, ReplicaNotices } from './replica-notices';
import {
  type EntryHeader,
  type FailedNotice,
  MAX_HEADER_BYTES,
  recordableMessage,
  SharedCodec,
} from './shared-codec';
import { SharedKeys } from './shared-keys';
import { SharedRejections } from './shared-rejections';

export type {
  FailedNotice,
  Notice,
  PurgedNotice,
  StoredNotice,
} from './shared-codec';

/**
 * The third tier: one Redis (or Redis Cluster) that every replica shares, so a variant is
 * fetched once and served the same everywhere. Each entry is one value, a small JSON header
 * (SHA-256, length, fetch time) followed by the body, that Redis drops after the TTL plus the
 * stale-if-error window. A variant's entry and fetch lock share a hash tag, so on a cluster
 * they live on one node. A replica that stores an image publishes it, and the others drop
 * their older local copy; one whose fetch failed publishes that too, so the others do not
 * retry at once.
 *
 * The locks (SharedLocks), the notices (ReplicaNotices), the key names (SharedKeys), what is
 * stored and validated (SharedCodec) and the purge and listing (SharedScan) are units of their
 * own. Redis is never required: every method answers as if the tier were empty (load finds
 * nothing, save stores nothing) when Redis fails, and the connection bounds each command by
 * `REDIS_COMMAND_TIMEOUT_MS`.
 */
@Injectable()
export class SharedTier implements CacheTier {
  readonly name = 'shared';

  constructor(
    private readonly redis: RedisConnection,
    private readonly clock: Clock,
    @Inject(sharedCacheConfig.KEY)
    private readonly config: Pick<
      ConfigType<typeof sharedCacheConfig>,
      'retentionSeconds'
    >,
    private readonly keys: SharedKeys,
    private readonly codec: SharedCodec,
    private readonly rejections: SharedRejections,
    private readonly notices: ReplicaNotices,
  ) {}

  get enabled(): boolean {
    return this.redis.enabled;
  }

  /** Why the tier cannot be used now, or `undefined` while it can. */
  get problem(): string | undefined {
    return this.redis.problem;
  }

  /**
   * Tells the other replicas that fetching `key` failed, and not to retry for `retryAfterMs`:
   * a notice wakes the replicas waiting for the fetch now, and a record that expires with the
   * retry window tells any replica that takes the fetch lock later. The message is cut to what
   * a record may hold.
   */
  async recordFailure(
    key: string,
    failure: {
      status: number;
      forwardStatus?: number;
      message: string;
      retryAfterMs: number;
    },
  ): Promise<void> {
    if (!this.enabled) {
      return;
    }
    const notice = {
      type: 'failed',
      from: this.notices.replicaId,
      key,
      ...failure,
      message: recordableMessage(failure.message),
    } as FailedNotice;
    const retryAfterMs = Math.ceil(failure.retryAfterMs);
    if (retryAfterMs > 0) {
      try {
        await this.redis.run((redis) =>
          redis.set(this.keys.failure(key), this.codec.encodeNotice(notice), {
            expiration: { type: 'PX', value: retryAfterMs },
          }),
        );
      } catch {
        // Redis is down: no replica can take the fetch lock either.
      }
    }
    await this.notices.publish(notice);
  }

  /**
   * The failure another replica recorded for `key`, with the time its retry window has left,
   * or `undefined` when there is none (or Redis cannot say). A record that fails validation is
   * discarded.
   */
  async loadFailure(key: string): Promise<FailedNotice | undefined> {
    if (!this.enabled) {
      return undefined;
    }
    const failureKey = this.keys.failure(key);
    let value: Buffer | null;
    let remainingMs: number;
    try {
      [value, remainingMs] = await this.redis.run((redis) =>
        Promise.all([redis.get(failureKey), redis.pTTL(failureKey)]),
      );
    } catch {
      return undefined; // Redis is down: the upstream is asked
    }
    if (value === null || remainingMs === 0 || remainingMs === -2) {
      return undefined;
    }
    const failure = this.codec.decodeFailure(
      key,
      value.toString(),
      remainingMs,
    );
    if ('invalid' in failure) {
      this.rejections.rejected('failure', failureKey, failure.invalid);
      await compareAndDelete(this.redis, failureKey, value);
      return undefined;
    }
    return failure;
  }

  /**
   * When the entry of `key` was fetched, read from its header alone (the body is not
   * transferred), or `undefined` when there is no valid entry.
   */
  async fetchedAt(key: string): Promise<number | undefined> {
    return (await this.readStoredHeader(key))?.fetchedAt;
  }

  async load(key: string): Promise<CachedImage | undefined> {
    return this.read(key, this.keys.entry(key), 'entry');
  }

  /**
   * Stores `image` as the current image of its variant and tells the other replicas, which drop
   * their older copies; with `replaces`, every copy they hold, whatever its fetch time says (an
   * admin refresh).
   */
  async save(image: CachedImage, { replaces = false } = {}): Promise<boolean> {
    if (!this.enabled) {
      return false;
    }
    const remainingMs =
      image.fetchedAt + this.config.retentionSeconds * 1000 - this.clock.now();
    if (remainingMs <= 0) {
      return false;
    }
    const notice: OutgoingNotice = {
      type: 'stored',
      key: image.key,
      etag: image.etag,
      fetchedAt: image.fetchedAt,
      ...(replaces ? { replaces } : {}),
    };
    try {
      await this.redis.run((redis) =>
        redis.set(this.keys.entry(image.key), this.codec.encodeEntry(image), {
          expiration: { type: 'PX', value: Math.ceil(remainingMs) },
        }),
      );
    } catch {
      return false;
    }
    await this.notices.publish(notice);
    return true;
  }

  /**
   * Holds `image`, a prefetched next image of its variant whose `fetchedAt` is when it becomes
   * current, aside from the current entry, so that every replica takes it at expiry. Nothing
   * is published: the current image stays current until then.
   */
  async saveNext(image: CachedImage): Promise<boolean> {
    if (!this.enabled) {
      return false;
    }
    const remainingMs =
      image.fetchedAt + this.config.retentionSeconds * 1000 - this.clock.now();
    try {
      await this.redis.run((redis) =>
        redis.set(this.keys.next(image.key), this.codec.encodeEntry(image), {
          expiration: { type: 'PX', value: Math.ceil(remainingMs) },
        }),
      );
      return true;
    } catch {
      return false;
    }
  }

  /** Drops the prefetched next image of `key`, if any (an image made current by hand replaces it). */
  async dropNext(key: string): Promise<void> {
    if (!this.enabled) {
      return;
    }
    try {
      await this.redis.run((redis) => redis.del([this.keys.next(key)]));
    } catch {
      // Redis is down: the next image is older than the new current one, which wins.
    }
  }

  /** The next image another replica prefetched for `key`, or `undefined`. */
  async loadNext(key: string): Promise<CachedImage | undefined> {
    return this.read(key, this.keys.next(key), 'next');
  }

  /**
   * The image of `key` stored under `redisKey`, verified; one that fails the checks is
   * discarded (only while it is still the value read), counted and logged as `kind`.
   */
  private async read(
    key: string,
    redisKey: string,
    kind: 'entry' | 'next',
  ): Promise<CachedImage | undefined> {
    if (!this.enabled) {
      return undefined;
    }
    let value: Buffer | null;
    try {
      value = await this.redis.run((redis) => redis.get(redisKey));
    } catch {
      return undefined;
    }
    if (value === null) {
      return undefined;
    }
    const decoded = this.codec.decodeEntry(key, value);
    if ('invalid' in decoded) {
      this.rejections.rejected(kind, redisKey, decoded.invalid);
      await compareAndDelete(this.redis, redisKey, value);
      return undefined;
    }
    return decoded;
  }

  /**
   * Removes the entry of `key`; with `fetchedBefore`, only an entry fetched before then. Only
   * the header is read, and the entry is deleted only while it still starts with that header,
   * so an entry another replica stored in between stays.
   */
  async delete(key: string, fetchedBefore = Infinity): Promise<void> {
    const header = await this.readStoredHeader(key);
    if (!header || header.fetchedAt >= fetchedBefore) {
      return;
    }
    try {
      await this.redis.run((redis) =>
        redis.eval(COMPARE_PREFIX_AND_DELETE, {
          keys: [this.keys.entry(key)],
          arguments: [header.prefix],
        }),
      );
    } catch {
      // Redis is down: the entry expires there by itself.
    }
  }

  /**
   * The header of the entry (or next image) of `key` and the bytes up to its end, read without
   * the body, or `undefined`; one that fails validation is counted and logged, and left for the
   * next full read to discard.
   */
  async readStoredHeader(
    key: string,
    kind: 'entry' | 'next' = 'entry',
  ): Promise<(EntryHeader & { prefix: Buffer }) | undefined> {
    if (!this.enabled) {
      return undefined;
    }
    const redisKey =
      kind === 'entry' ? this.keys.entry(key) : this.keys.next(key);
    let value: Buffer;
    try {
      value = await this.redis.run((redis) =>
        redis.getRange(redisKey, 0, MAX_HEADER_BYTES - 1),
      );
    } catch {
      return undefined;
    }
    if (value.length === 0) {
      return undefined;
    }
    const header = this.codec.decodeHeader(key, value);
    if ('invalid' in header) {
      this.rejections.rejected(kind, redisKey, header.invalid);
      return undefined;
    }
    return { ...header, prefix: value.subarray(0, header.headerEnd) };
  }
}
