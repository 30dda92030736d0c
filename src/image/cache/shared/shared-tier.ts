import {
  Inject,
  Injectable,
  Logger,
  type OnApplicationBootstrap,
} from '@nestjs/common';
import type { ConfigType } from '@nestjs/config';
import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { sharedCacheConfig } from '../../../config/shared-cache.config';
import type { CacheTier } from '../cache-tier';
import { type CachedImage, restoreCachedImage } from '../cached-image';
import { Clock } from '../clock';
import { RedisConnection } from './redis-connection';

/** Deletes KEYS[1] only while it still holds ARGV[1]: releases a lock only its holder took, discards only the entry that was read. */
const COMPARE_AND_DELETE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0`;

/** Deletes KEYS[1] only while its value starts with ARGV[1]: an entry is known by its header. */
const COMPARE_PREFIX_AND_DELETE = `
if redis.call('GETRANGE', KEYS[1], 0, #ARGV[1] - 1) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0`;

/** Bytes before the header that give its length. */
const HEADER_LENGTH_BYTES = 4;
/** Bytes read to get an entry's header alone; a longer header is read with the whole value. */
const HEADER_PROBE_BYTES = 4096;

const headerSchema = z.object({
  version: z.literal(1),
  key: z.string().min(1),
  bytes: z.number().int().positive(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  fetchedAt: z.number().int().nonnegative(),
  source: z.string(),
  picsumId: z.string().optional(),
});

/**
 * What a replica publishes after a fetch: it stored a new image (the others drop their older
 * copy), or the upstream failed (the others do not ask it again before `retryAfterMs`).
 */
const noticeSchema = z.discriminatedUnion('type', [
  z.object({
    type: z.literal('stored'),
    from: z.string(),
    key: z.string(),
    etag: z.string(),
    fetchedAt: z.number(),
  }),
  z.object({
    type: z.literal('purged'),
    from: z.string(),
    /** The variant purged, or `null` for every variant. */
    key: z.string().nullable(),
  }),
  z.object({
    type: z.literal('failed'),
    from: z.string(),
    key: z.string(),
    status: z.number().int().min(400).max(599),
    message: z.string().max(2000),
    retryAfterMs: z.number().nonnegative(),
  }),
]);

export type Notice = z.infer<typeof noticeSchema>;
export type StoredNotice = Extract<Notice, { type: 'stored' }>;
export type FailedNotice = Extract<Notice, { type: 'failed' }>;
export type PurgedNotice = Extract<Notice, { type: 'purged' }>;

/** What the shared tier holds of one variant, read from its header alone. */
export interface SharedEntry {
  readonly key: string;
  readonly bytes: number;
  readonly fetchedAt: number;
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

  constructor(
    private readonly redis: RedisConnection,
    private readonly clock: Clock,
    @Inject(sharedCacheConfig.KEY)
    private readonly config: ConfigType<typeof sharedCacheConfig>,
  ) {
    this.channel = `${config.keyPrefix}notices`;
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
   * retry window tells any replica that takes the fetch lock later.
   */
  async recordFailure(
    key: string,
    failure: { status: number; message: string; retryAfterMs: number },
  ): Promise<void> {
    if (!this.enabled) {
      return;
    }
    const notice: FailedNotice = {
      type: 'failed',
      from: this.replicaId,
      key,
      ...failure,
    };
    const retryAfterMs = Math.ceil(failure.retryAfterMs);
    if (retryAfterMs > 0) {
      try {
        await this.redis.run((redis) =>
          redis.set(this.failureKey(key), JSON.stringify(notice), {
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
   * or `undefined` when there is none (or Redis cannot say).
   */
  async loadFailure(key: string): Promise<FailedNotice | undefined> {
    if (!this.enabled) {
      return undefined;
    }
    const failureKey = this.failureKey(key);
    try {
      const [value, remainingMs] = await this.redis.run((redis) =>
        Promise.all([redis.get(failureKey), redis.pTTL(failureKey)]),
      );
      if (value === null || remainingMs <= 0) {
        return undefined;
      }
      const notice = noticeSchema.parse(JSON.parse(value.toString()));
      return notice.type === 'failed' && notice.key === key
        ? { ...notice, retryAfterMs: remainingMs }
        : undefined;
    } catch {
      return undefined; // Redis is down, or the record is not ours: the upstream is asked
    }
  }

  /**
   * When the entry of `key` was fetched, read from its header alone (the body is not
   * transferred), or `undefined` when there is no readable entry.
   */
  async fetchedAt(key: string): Promise<number | undefined> {
    return (await this.readStoredHeader(key))?.fetchedAt;
  }

  async load(key: string): Promise<CachedImage | undefined> {
    return this.read(key, this.entryKey(key), 'image');
  }

  async save(image: CachedImage): Promise<boolean> {
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
    };
    try {
      await this.redis.run((redis) =>
        redis.set(this.entryKey(image.key), encode(image), {
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
        redis.set(this.nextKey(image.key), encode(image), {
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
    return this.read(key, this.nextKey(key), 'next image');
  }

  /**
   * The image of `key` stored under `entryKey`, verified; one that fails the checks is
   * discarded (only while it is still the value read) and logged as the shared `what`.
   */
  private async read(
    key: string,
    entryKey: string,
    what: string,
  ): Promise<CachedImage | undefined> {
    if (!this.enabled) {
      return undefined;
    }
    let value: Buffer | null;
    try {
      value = await this.redis.run((redis) => redis.get(entryKey));
    } catch {
      return undefined;
    }
    if (value === null) {
      return undefined;
    }
    const decoded = decode(key, value);
    if ('invalid' in decoded) {
      this.logger.warn(
        `Discarding shared ${what} ${JSON.stringify(key)}: ${decoded.invalid}`,
      );
      await this.compareAndDelete(entryKey, value);
      return undefined;
    }
    return decoded;
  }

  /**
   * Removes everything stored for `key` (its image, its prefetched next image, its recorded
   * failure), or for every variant when `key` is `null`, and tells the other replicas to drop
   * their local copies. Returns the variants whose image was removed here.
   */
  async purge(key: string | null): Promise<string[]> {
    if (!this.enabled) {
      return [];
    }
    const prefix = this.config.keyPrefix;
    const stored = key === null ? await this.keys() : [key];
    const removed: string[] = [];
    for (const variant of stored) {
      const deleted = await this.redis.run((redis) =>
        redis.del([this.entryKey(variant)]),
      );
      await this.redis.run((redis) =>
        Promise.all([
          redis.del([this.nextKey(variant)]),
          redis.del([this.failureKey(variant)]),
        ]),
      );
      if (deleted > 0) {
        removed.push(variant);
      }
    }
    if (key === null) {
      // Next images and failures of variants with no image left.
      for (const leftover of await this.redis.scanKeys(
        `${escapeGlob(prefix)}{*}:*`,
      )) {
        if (!leftover.endsWith(':lock')) {
          await this.redis.run((redis) => redis.del([leftover]));
        }
      }
    }
    await this.publish({ type: 'purged', from: this.replicaId, key });
    return removed;
  }

  /** The variants with an image in the shared tier, walked with SCAN. */
  async keys(): Promise<string[]> {
    if (!this.enabled) {
      return [];
    }
    const prefix = this.config.keyPrefix;
    const entries = await this.redis.scanKeys(`${escapeGlob(prefix)}{*}:image`);
    return entries.flatMap((entry) => {
      const inner = entry.slice(prefix.length);
      return inner.startsWith('{') && inner.endsWith('}:image')
        ? [inner.slice(1, -'}:image'.length)]
        : [];
    });
  }

  /** Every variant the shared tier holds, with its size and fetch time, from the headers alone. */
  async entries(): Promise<SharedEntry[]> {
    const found: SharedEntry[] = [];
    for (const key of await this.keys()) {
      const header = await this.readStoredHeader(key);
      if (header) {
        found.push({ key, bytes: header.bytes, fetchedAt: header.fetchedAt });
      }
    }
    return found;
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

  /** Tries once to take the fetch lock of `key`, which expires after the lock TTL if never released. */
  async lock(key: string): Promise<LockAttempt> {
    if (!this.enabled) {
      return 'unavailable';
    }
    const lock: SharedLock = { key: this.lockKey(key), token: randomUUID() };
    try {
      const reply = await this.redis.run((redis) =>
        redis.set(lock.key, lock.token, {
          condition: 'NX',
          expiration: { type: 'PX', value: this.config.lockTtlMs },
        }),
      );
      return reply === null ? 'held' : lock;
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
    let notice: Notice;
    try {
      notice = noticeSchema.parse(JSON.parse(message));
    } catch {
      this.logger.warn(`Ignoring a malformed notice on ${this.channel}`);
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
        redis.publish(this.channel, JSON.stringify(notice)),
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

  /** The header of the entry of `key` and the bytes up to its end, or `undefined`. */
  private async readStoredHeader(
    key: string,
  ): Promise<(Header & { prefix: Buffer }) | undefined> {
    if (!this.enabled) {
      return undefined;
    }
    const entryKey = this.entryKey(key);
    try {
      let value = await this.redis.run((redis) =>
        redis.getRange(entryKey, 0, HEADER_PROBE_BYTES - 1),
      );
      if (
        value.length >= HEADER_LENGTH_BYTES &&
        HEADER_LENGTH_BYTES + value.readUInt32BE(0) > value.length &&
        value.length === HEADER_PROBE_BYTES
      ) {
        value = (await this.redis.run((redis) => redis.get(entryKey))) ?? value;
      }
      const header = readHeader(value);
      return 'invalid' in header || header.key !== key
        ? undefined
        : { ...header, prefix: value.subarray(0, header.headerEnd) };
    } catch {
      return undefined;
    }
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

/** One value: the header's length (4 bytes, big-endian), the JSON header, then the body. */
function encode(image: CachedImage): Buffer {
  const header = Buffer.from(
    JSON.stringify({
      version: 1,
      key: image.key,
      bytes: image.body.length,
      sha256: image.sha256,
      fetchedAt: image.fetchedAt,
      source: image.source,
      ...(image.picsumId ? { picsumId: image.picsumId } : {}),
    } satisfies z.input<typeof headerSchema>),
  );
  const length = Buffer.alloc(HEADER_LENGTH_BYTES);
  length.writeUInt32BE(header.length);
  return Buffer.concat([length, header, image.body]);
}

type Decoded = CachedImage | { readonly invalid: string };

function decode(key: string, value: Buffer): Decoded {
  const header = readHeader(value);
  if ('invalid' in header) {
    return header;
  }
  if (header.key !== key) {
    return { invalid: `stored for ${JSON.stringify(header.key)}` };
  }
  if (value.length - header.headerEnd !== header.bytes) {
    return {
      invalid: `body of ${value.length - header.headerEnd} bytes where ${header.bytes} were stored`,
    };
  }
  return restoreCachedImage({
    key,
    // A copy: the reply's buffer may be a slice of a larger one the client keeps.
    body: Buffer.from(value.subarray(header.headerEnd)),
    sha256: header.sha256,
    fetchedAt: header.fetchedAt,
    source: header.source,
    ...(header.picsumId ? { picsumId: header.picsumId } : {}),
  });
}

type Header = z.infer<typeof headerSchema> & { readonly headerEnd: number };

function readHeader(value: Buffer): Header | { readonly invalid: string } {
  if (value.length < HEADER_LENGTH_BYTES) {
    return { invalid: 'too short to hold a header' };
  }
  const headerEnd = HEADER_LENGTH_BYTES + value.readUInt32BE(0);
  if (headerEnd > value.length) {
    return { invalid: 'header longer than the value' };
  }
  try {
    const header = headerSchema.parse(
      JSON.parse(value.subarray(HEADER_LENGTH_BYTES, headerEnd).toString()),
    );
    return { ...header, headerEnd };
  } catch {
    return { invalid: 'malformed header' };
  }
}
