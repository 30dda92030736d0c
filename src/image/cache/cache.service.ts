import {
  BadGatewayException,
  HttpException,
  Inject,
  Injectable,
  Logger,
  type OnModuleDestroy,
  type OnModuleInit,
} from '@nestjs/common';
import { LRUCache } from 'lru-cache';
import type { ConfigType } from '@nestjs/config';
import { errorMessage } from '../../common/error-message';
import { cacheConfig } from '../../config/cache.config';
import { upstreamConfig } from '../../config/upstream.config';
import {
  type CacheLookup,
  type CachedImage,
  createCachedImage,
} from './cached-image';
import { Clock } from './clock';
import { DiskStore, sha256Hex, type StoredMetadata } from './disk-store';
import { type ImageVariant, variantKey } from '../image-variant';
import { MemoryTier } from './memory-tier';
import { PicsumClient, type UpstreamImage } from '../upstream/picsum.client';
import { SingleFlight } from './single-flight';
import { UpstreamBusyException } from '../upstream/upstream-busy.exception';
import { UpstreamLimiter } from '../upstream/upstream-limiter';

/** Failed fetches remembered at once, so that varying the variant cannot grow memory without bound. */
const MAX_REMEMBERED_FAILURES = 10_000;

/** Freshness of an entry at one moment, in the units HTTP caching headers use. */
export interface Freshness {
  readonly stale: boolean;
  readonly expiresAt: number;
  readonly ageSeconds: number;
  readonly ttlSeconds: number;
}

interface UpstreamFailure {
  readonly error: HttpException;
  readonly retryAt: number;
}

/**
 * Decides for each request whether the cached image of its variant is served, replaced by a
 * new fetch, or served stale because the upstream failed. Two tiers hold the images: memory
 * (`MemoryTier`, ready-to-send, least recently used evicted first) in front of the disk
 * (`DiskStore`), which outlives the process. A disk hit is promoted into memory; freshness is
 * always counted from the original fetch, so it keeps only the time it had left.
 */
@Injectable()
export class CacheService implements OnModuleInit, OnModuleDestroy {
  private readonly logger = new Logger(CacheService.name);
  private readonly diskLoads = new SingleFlight<CachedImage | undefined>();
  private readonly fetches = new SingleFlight<CachedImage>();
  private readonly failures: LRUCache<string, UpstreamFailure>;
  private cleanupTimer?: NodeJS.Timeout;

  constructor(
    private readonly client: PicsumClient,
    private readonly limiter: UpstreamLimiter,
    private readonly memory: MemoryTier,
    private readonly disk: DiskStore,
    private readonly clock: Clock,
    @Inject(cacheConfig.KEY)
    private readonly cache: ConfigType<typeof cacheConfig>,
    @Inject(upstreamConfig.KEY)
    private readonly upstream: ConfigType<typeof upstreamConfig>,
  ) {
    this.failures = new LRUCache({ max: MAX_REMEMBERED_FAILURES });
  }

  onModuleInit(): void {
    this.cleanupTimer = setInterval(
      () => void this.maintain(),
      this.cache.cleanupIntervalSeconds * 1000,
    );
    this.cleanupTimer.unref();
  }

  onModuleDestroy(): void {
    clearInterval(this.cleanupTimer);
  }

  /** The image to serve for `variant`, fetching it when nothing fresh is cached. */
  async getImage(variant: ImageVariant): Promise<CacheLookup> {
    const key = variantKey(variant);
    const cached = this.memory.get(key) ?? (await this.loadFromDisk(key));
    if (cached && !this.freshness(cached).stale) {
      this.disk.touch(key);
      return { image: cached, status: 'HIT' };
    }
    const failure = this.failures.get(key);
    if (failure && this.clock.now() < failure.retryAt) {
      return this.serveStaleOr(cached, failure.error);
    }
    try {
      const image = await this.fetches.run(key, () =>
        this.fetchAndStore(key, variant),
      );
      return { image, status: 'MISS' };
    } catch (error) {
      return this.serveStaleOr(cached, toHttpException(error));
    }
  }

  /** The cached image for `variant`, fresh or stale, without ever calling the upstream. */
  async peek(variant: ImageVariant): Promise<CachedImage | undefined> {
    const key = variantKey(variant);
    return this.memory.get(key) ?? this.loadFromDisk(key);
  }

  /** Reads `key` from the disk, once for any number of callers, and promotes it into memory. */
  private async loadFromDisk(key: string): Promise<CachedImage | undefined> {
    if (!this.disk.has(key)) {
      return undefined;
    }
    return this.diskLoads.run(key, async () => {
      const loaded = await this.disk.load(key);
      // A fetch that finished while the disk was read is newer than what the disk had.
      const newer = this.memory.get(key);
      if (newer) {
        return newer;
      }
      if (loaded) {
        this.memory.set(loaded);
      }
      return loaded;
    });
  }

  /**
   * Runs every `CACHE_CLEANUP_INTERVAL_SECONDS`: removes what expired, then makes the disk
   * index agree with the directory's real content.
   */
  async maintain(): Promise<void> {
    await this.removeExpired();
    try {
      await this.disk.reconcile();
    } catch (error) {
      this.logger.error(
        `Reconciling ${this.disk.directory} failed: ${errorMessage(error)}`,
      );
    }
  }

  /**
   * Removes from both tiers the entries past their TTL and their stale-if-error window, which
   * can never be served again. Without a stale window, an expired image may still be served
   * while the upstream fails, so it is kept until the byte budgets evict it.
   */
  async removeExpired(): Promise<number> {
    const staleIfErrorSeconds = this.cache.staleIfErrorSeconds;
    if (staleIfErrorSeconds === undefined) {
      return 0;
    }
    const now = this.clock.now();
    const lifetimeMs = (this.cache.ttlSeconds + staleIfErrorSeconds) * 1000;
    const isExpired = (fetchedAt: number) => now >= fetchedAt + lifetimeMs;
    this.memory.removeWhere((image) => isExpired(image.fetchedAt));
    try {
      const removed = await this.disk.removeWhere((metadata: StoredMetadata) =>
        isExpired(Date.parse(metadata.fetchedAt)),
      );
      if (removed > 0) {
        this.logger.log(`Removed ${removed} expired image(s) from disk`);
      }
      return removed;
    } catch (error) {
      this.logger.error(
        `Removing expired images failed: ${errorMessage(error)}`,
      );
      return 0;
    }
  }

  freshness(image: CachedImage): Freshness {
    const now = this.clock.now();
    const expiresAt = image.fetchedAt + this.cache.ttlSeconds * 1000;
    return {
      stale: now >= expiresAt,
      expiresAt,
      ageSeconds: Math.max(0, Math.floor((now - image.fetchedAt) / 1000)),
      ttlSeconds: this.cache.ttlSeconds,
    };
  }

  private async fetchAndStore(
    key: string,
    variant: ImageVariant,
  ): Promise<CachedImage> {
    let fetched: UpstreamImage;
    try {
      fetched = await this.limiter.run(() => this.client.fetchImage(variant));
    } catch (error) {
      if (error instanceof UpstreamBusyException) {
        throw error; // our own saturation, not the upstream's failure: nothing to remember
      }
      // Recorded here, inside the single flight, so one failed fetch is logged once however
      // many requests were waiting for it.
      const httpError = toHttpException(error);
      this.recordFailure(key, httpError);
      throw httpError;
    }
    const image = createCachedImage({
      key,
      body: fetched.body,
      contentType: fetched.contentType,
      sha256: sha256Hex(fetched.body),
      fetchedAt: this.clock.now(),
      source: fetched.source,
      ...(fetched.picsumId ? { picsumId: fetched.picsumId } : {}),
    });
    this.memory.set(image);
    this.failures.delete(key);
    // The image is good: if the disk does not take it, it is served from memory only (the
    // disk tier logs its own failures, once per outage).
    await this.disk.save(image);
    return image;
  }

  private recordFailure(key: string, error: HttpException): void {
    const retryAt = this.clock.now() + this.upstream.retryAfterSeconds * 1000;
    this.failures.set(key, { error, retryAt });
    // The cause (e.g. `connect ECONNREFUSED 10.0.0.7:443`) is kept out of replies, not out of the log.
    const cause =
      error.cause === undefined ? '' : `; ${errorMessage(error.cause)}`;
    this.logger.warn(
      `Upstream fetch for ${key} failed (${error.message}${cause}); not retrying before ${new Date(retryAt).toISOString()}`,
    );
  }

  private serveStaleOr(
    cached: CachedImage | undefined,
    error: HttpException,
  ): CacheLookup {
    if (cached && this.isWithinStaleWindow(cached)) {
      return { image: cached, status: 'STALE' };
    }
    throw error;
  }

  private isWithinStaleWindow(image: CachedImage): boolean {
    if (this.cache.staleIfErrorSeconds === undefined) {
      return true;
    }
    const { expiresAt } = this.freshness(image);
    return this.clock.now() < expiresAt + this.cache.staleIfErrorSeconds * 1000;
  }
}

function toHttpException(error: unknown): HttpException {
  if (error instanceof HttpException) {
    return error;
  }
  return new BadGatewayException(
    `Fetching from the upstream failed: ${errorMessage(error)}`,
  );
}
