import {
  Inject,
  Injectable,
  Logger,
  type OnApplicationBootstrap,
} from '@nestjs/common';
import type { ConfigType } from '@nestjs/config';
import { randomUUID } from 'node:crypto';
import { sharedCacheConfig } from '../../../config/shared-cache.config';
import { upstreamConfig } from '../../../config/upstream.config';
import { CacheMetrics } from '../../../metrics/cache-metrics';
import type { CacheTier } from '../cache-tier';
import { Clock } from '../clock';
import {
  FIRST_SCAN_POSITION,
  RedisConnection,
  type ScanPosition,
} from './redis-connection';
import {
  type EntryHeader,
  type FailedNotice,
  MAX_HEADER_BYTES,
  type Notice,
  recordableMessage,
  SharedCodec,
  type StoredNotice,
} from './shared-codec';
import { SharedRejections } from './shared-rejections';
import type { CachedImage } from '../cache-model';

export type {
  FailedNotice,
  Notice,
  PurgedNotice,
  StoredNotice,
} from './shared-codec';

/** Deletes KEYS[1] only while it still holds ARGV[1]: releases a lock only its holder took, discards only the entry that was read. */
const COMPARE_AND_DELETE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0`;

/**
 * Takes the lock KEYS[1] with token ARGV[1] for ARGV[2] ms: 1 when it was free, 2 when it was
 * held without an expiry or for longer than a lock may be (not a lock any replica took, which
 * would make every miss of the variant wait for ever), 0 while another replica holds it.
 */
const TAKE_LOCK = `
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
local remaining = redis.call('PTTL', KEYS[1])
if remaining == -1 or remaining > tonumber(ARGV[2]) then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 2
end
return 0`;

/** Deletes KEYS[1] only while its value starts with ARGV[1]: an entry is known by its header. */
const COMPARE_PREFIX_AND_DELETE = `
if redis.call('GETRANGE', KEYS[1], 0, #ARGV[1] - 1) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0`;

/** Keys a purge of every variant asks SCAN for at a time. */
const PURGE_SCAN_COUNT = 500;

/**
 * What the shared tier holds of one variant, read from the headers alone: its image, and the
 * prefetched image held for later, either of which may be missing.
 */
export interface SharedEntry {
  readonly key: string;
  readonly bytes?: number;
  readonly fetchedAt?: number;
  readonly next?: { readonly bytes: number; readonly fetchedAt: number };
}

/** A variant's fetch lock, held by this replica until released or expired. */
export interface SharedLock {
  readonly key: string;
  readonly token: string;
}

/** What `lock()` got: the lock, `held` by another replica, or `unavailable` (Redis down). */
export type LockAttempt = SharedLock | 'held' | 'unavailable';

/**
 * The third tier: one Redis (or Redis Cluster) that every replica shares, so a variant is
 * fetched once and served the same everywhere. Each entry is one value, a small JSON header
 * (SHA-256, length, fetch time) followed by the body, that Redis drops after the TTL plus the
 * stale-if-error window. A variant's entry and fetch lock share a hash tag, so on a cluster
 * they live on one node. A replica that stores an image publishes it, and the others drop
 * their older local copy; one whose fetch failed publishes that too, so the others do not
 * retry at once.
 *
 * Redis is never required: every method answers as if the tier were empty (load finds
 * nothing, save stores nothing, lock is `unavailable`) when Redis fails, and the connection
 * bounds each command by `REDIS_COMMAND_TIMEOUT_MS`.
 */
@Injectable()
export class SharedTier implements CacheTier, OnApplicationBootstrap {
  readonly name = 'shared';
  private readonly logger = new Logger(SharedTier.name);
  /** Tells this replica's own notices from the others'. */
  private readonly replicaId = randomUUID();
  private readonly channel: string;
  private readonly waiting = new Map<string, Set<() => void>>();
  private readonly listeners: ((notice: Notice) => void)[] = [];
  private readonly codec: SharedCodec;
  private readonly rejections: SharedRejections;

  constructor(
    private readonly redis: RedisConnection,
    private readonly clock: Clock,
    @Inject(sharedCacheConfig.KEY)
    private readonly config: ConfigType<typeof sharedCacheConfig>,
    @Inject(upstreamConfig.KEY)
    upstream: Pick<
      ConfigType<typeof upstreamConfig>,
      'maxBytes' | 'retryAfterSeconds'
    >,
    metrics: CacheMetrics,
  ) {
    this.channel = `${config.keyPrefix}notices`;
    this.codec = new SharedCodec(
      {
        maxBodyBytes: upstream.maxBytes,
        maxRetryAfterMs: upstream.retryAfterSeconds * 1000,
      },
      () => clock.now(),
    );
    this.rejections = new SharedRejections(metrics);
  }

  get enabled(): boolean {
    return this.redis.enabled;
  }

  /** Why the tier cannot be used now, or `undefined` while it can. */
  get problem(): string | undefined {
    return this.redis.problem;
  }

  onApplicationBootstrap(): void {
    if (this.enabled) {
      this.redis.subscribe(this.channel, (message) => this.receive(message));
    }
  }

  /** Calls `listener` when another replica stored a new image or failed to fetch one. */
  onNotice(listener: (notice: Notice) => void): void {
    this.listeners.push(listener);
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
      from: this.replicaId,
      key,
      ...failure,
      message: recordableMessage(failure.message),
    } as FailedNotice;
    const retryAfterMs = Math.ceil(failure.retryAfterMs);
    if (retryAfterMs > 0) {
      try {
        await this.redis.run((redis) =>
          redis.set(this.failureKey(key), this.codec.encodeNotice(notice), {
            expiration: { type: 'PX', value: retryAfterMs },
          }),
        );
      } catch {
        // Redis is down: no replica can take the fetch lock either.
      }
    }
    await this.publish(notice);
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
    const failureKey = this.failureKey(key);
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
      await this.compareAndDelete(failureKey, value);
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
    return this.read(key, this.entryKey(key), 'entry');
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
    const notice: StoredNotice = {
      type: 'stored',
      from: this.replicaId,
      key: image.key,
      etag: image.etag,
      fetchedAt: image.fetchedAt,
      ...(replaces ? { replaces } : {}),
    };
    try {
      await this.redis.run((redis) =>
        redis.set(this.entryKey(image.key), this.codec.encodeEntry(image), {
          expiration: { type: 'PX', value: Math.ceil(remainingMs) },
        }),
      );
    } catch {
      return false;
    }
    await this.publish(notice);
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
        redis.set(this.nextKey(image.key), this.codec.encodeEntry(image), {
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
      await this.redis.run((redis) => redis.del([this.nextKey(key)]));
    } catch {
      // Redis is down: the next image is older than the new current one, which wins.
    }
  }

  /** The next image another replica prefetched for `key`, or `undefined`. */
  async loadNext(key: string): Promise<CachedImage | undefined> {
    return this.read(key, this.nextKey(key), 'next');
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
      await this.compareAndDelete(redisKey, value);
      return undefined;
    }
    return decoded;
  }

  /**
   * Removes everything stored for `key` (its image, its prefetched next image, its recorded
   * failure, its fetch lock), or for every variant when `key` is `null`, and tells the other
   * replicas to drop their local copies. Returns the variants whose image was removed here.
   * Every variant is walked with SCAN a page at a time, each page deleted before the next.
   */
  async purge(key: string | null): Promise<string[]> {
    if (!this.enabled) {
      return [];
    }
    const removed: string[] = [];
    if (key === null) {
      let position: ScanPosition | undefined = FIRST_SCAN_POSITION;
      while (position) {
        const page = await this.redis.scanPage(
          position,
          `${escapeGlob(this.config.keyPrefix)}{*}:*`,
          PURGE_SCAN_COUNT,
        );
        const deleted = await Promise.all(
          page.keys.map((redisKey) =>
            this.redis.run((redis) => redis.del([redisKey])),
          ),
        );
        page.keys.forEach((redisKey, index) => {
          const variant = this.variantOfEntry(redisKey);
          if (variant !== undefined && deleted[index] > 0) {
            removed.push(variant);
          }
        });
        position = page.next;
      }
    } else {
      const [deleted] = await this.redis.run((redis) =>
        Promise.all(
          [
            this.entryKey(key),
            this.nextKey(key),
            this.failureKey(key),
            this.lockKey(key),
          ].map((redisKey) => redis.del([redisKey])),
        ),
      );
      if (deleted > 0) {
        removed.push(key);
      }
    }
    await this.publish({ type: 'purged', from: this.replicaId, key });
    return removed;
  }

  /**
   * One page of the variants with an image in the shared tier, from `position` on, walked with
   * SCAN (`COUNT` `count`, so a page may hold fewer entries, or none, before the walk ends);
   * each entry read from its header alone, with the header of its prefetched next image.
   */
  async entriesPage(
    position: ScanPosition,
    count: number,
  ): Promise<{ entries: SharedEntry[]; next: ScanPosition | undefined }> {
    if (!this.enabled) {
      return { entries: [], next: undefined };
    }
    const page = await this.redis.scanPage(
      position,
      `${escapeGlob(this.config.keyPrefix)}{*}:image`,
      count,
    );
    const variants = page.keys.flatMap((redisKey) => {
      const variant = this.variantOfEntry(redisKey);
      return variant === undefined ? [] : [variant];
    });
    const entries = await Promise.all(
      variants.map((variant) => this.entryOf(variant)),
    );
    return {
      entries: entries.flatMap((entry) => (entry ? [entry] : [])),
      next: page.next,
    };
  }

  /** What the shared tier holds of `key` (its image and next image, from their headers), or `undefined`. */
  async entryOf(key: string): Promise<SharedEntry | undefined> {
    const [header, next] = await Promise.all([
      this.readStoredHeader(key),
      this.readStoredHeader(key, 'next'),
    ]);
    if (!header && !next) {
      return undefined;
    }
    return {
      key,
      ...(header ? { bytes: header.bytes, fetchedAt: header.fetchedAt } : {}),
      ...(next
        ? { next: { bytes: next.bytes, fetchedAt: next.fetchedAt } }
        : {}),
    };
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
          keys: [this.entryKey(key)],
          arguments: [header.prefix],
        }),
      );
    } catch {
      // Redis is down: the entry expires there by itself.
    }
  }

  /**
   * Tries once to take the fetch lock of `key`, which expires after the lock TTL if never
   * released. A lock left without an expiry, or with a longer one than any replica sets, was
   * not taken by a replica: it is taken over, so the variant's misses do not wait for ever.
   */
  async lock(key: string): Promise<LockAttempt> {
    if (!this.enabled) {
      return 'unavailable';
    }
    const lock: SharedLock = { key: this.lockKey(key), token: randomUUID() };
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
    await this.compareAndDelete(lock.key, lock.token);
  }

  /** Resolves true when another replica publishes a notice for `key` within `ms`, false after that. */
  waitForNotice(key: string, ms: number): Promise<boolean> {
    return new Promise((resolve) => {
      const waiters = this.waiting.get(key) ?? new Set<() => void>();
      this.waiting.set(key, waiters);
      const wake = () => finish(true);
      const timer = setTimeout(() => finish(false), ms);
      const finish = (noticed: boolean) => {
        clearTimeout(timer);
        waiters.delete(wake);
        if (waiters.size === 0 && this.waiting.get(key) === waiters) {
          this.waiting.delete(key);
        }
        resolve(noticed);
      };
      waiters.add(wake);
    });
  }

  private receive(message: string): void {
    const notice = this.codec.decodeNotice(message);
    if ('invalid' in notice) {
      this.rejections.rejected(
        'notice',
        `${this.channel} ${notice.key ?? '(no key)'}`,
        notice.invalid,
      );
      return;
    }
    if (notice.from === this.replicaId) {
      return;
    }
    // Listeners first: a waiter that wakes finds the state the notice brings.
    for (const listener of this.listeners) {
      listener(notice);
    }
    if (notice.key === null) {
      return;
    }
    for (const wake of [...(this.waiting.get(notice.key) ?? [])]) {
      wake();
    }
  }

  private async publish(notice: Notice): Promise<void> {
    try {
      await this.redis.run((redis) =>
        redis.publish(this.channel, this.codec.encodeNotice(notice)),
      );
    } catch {
      // Redis is down: the others find out by the lock and by asking Redis.
    }
  }

  private async compareAndDelete(
    key: string,
    expected: Buffer | string,
  ): Promise<void> {
    try {
      await this.redis.run((redis) =>
        redis.eval(COMPARE_AND_DELETE, { keys: [key], arguments: [expected] }),
      );
    } catch {
      // Redis is down: a lock expires, and an entry is read and discarded again later.
    }
  }

  /**
   * The header of the entry (or next image) of `key` and the bytes up to its end, or
   * `undefined`; one that fails validation is counted and logged, and left for the next full
   * read to discard.
   */
  private async readStoredHeader(
    key: string,
    kind: 'entry' | 'next' = 'entry',
  ): Promise<(EntryHeader & { prefix: Buffer }) | undefined> {
    if (!this.enabled) {
      return undefined;
    }
    const redisKey = kind === 'entry' ? this.entryKey(key) : this.nextKey(key);
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

  /** The variant whose image `redisKey` holds, or `undefined` for any other key. */
  private variantOfEntry(redisKey: string): string | undefined {
    const inner = redisKey.slice(this.config.keyPrefix.length);
    return redisKey.startsWith(this.config.keyPrefix) &&
      inner.startsWith('{') &&
      inner.endsWith('}:image')
      ? inner.slice(1, -'}:image'.length)
      : undefined;
  }

  /** `{key}` is the hash tag: a variant's entry, lock and failure map to one cluster slot. */
  private entryKey(key: string): string {
    return `${this.config.keyPrefix}{${key}}:image`;
  }

  private lockKey(key: string): string {
    return `${this.config.keyPrefix}{${key}}:lock`;
  }

  private nextKey(key: string): string {
    return `${this.config.keyPrefix}{${key}}:next`;
  }

  private failureKey(key: string): string {
    return `${this.config.keyPrefix}{${key}}:failed`;
  }
}

/** `text` with the characters SCAN's MATCH treats as a pattern escaped. */
function escapeGlob(text: string): string {
  return text.replace(/[*?[\]\\]/g, '\\$&');
}
