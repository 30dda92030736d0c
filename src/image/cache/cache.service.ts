import {
  BadGatewayException,
  GatewayTimeoutException,
  HttpException,
  Inject,
  Injectable,
  Logger,
  NotFoundException,
  type OnModuleDestroy,
  type OnModuleInit,
  ServiceUnavailableException,
} from '@nestjs/common';
import type { ConfigType } from '@nestjs/config';
import { performance } from 'node:perf_hooks';
import { errorMessage } from '../../common/error-message';
import { cacheConfig } from '../../config/cache.config';
import { sharedCacheConfig } from '../../config/shared-cache.config';
import { upstreamConfig } from '../../config/upstream.config';
import { cachedImageFromUpstream } from './cached-image';
import { Clock } from './clock';
import { DiskStore, type StoredMetadata } from './disk-store';
import { FailureMemory } from './failure-memory';
import { FreshnessPolicy } from './freshness-policy';
import { LocalVariants } from './local-variants';
import { PurgeGenerations } from './purge-generations';
import { type ImageVariant, variantKey } from '../image-variant';
import { MemoryTier } from './memory-tier';
import { PicsumClient, type UpstreamImage } from '../upstream/picsum.client';
import { SharedTier } from './shared/shared-tier';
import { SingleFlight } from './single-flight';
import { Prefetcher } from './prefetcher';
import { TierChain } from './tier-chain';
import { UpstreamBusyException } from '../upstream/upstream-busy.exception';
import { UpstreamLimiter } from '../upstream/upstream-limiter';
import { forwardStatusOf } from '../upstream/forward-status';
import type {
  CacheLookup,
  CacheOutcome,
  CachedImage,
  Freshness,
} from './cache-model';

const MEMORY_HIT: CacheOutcome = { kind: 'hit', tier: 'memory' };
/** How often a replica waiting for another's fetch checks whether the lock is free, should a notice be lost. */
const LOCK_POLL_MS = 100;
/** Variants a purge of every variant removes between two looks at what is left. */
const PURGE_PAGE_SIZE = 500;

/** A new image, and whether another replica fetched it while this one waited. */
interface Fetched {
  readonly image: CachedImage;
  readonly byAnotherReplica: boolean;
}

/**
 * Decides for each request whether the cached image of its variant is served, replaced by a
 * new fetch, or served stale because the upstream failed. Tiers hold the images, asked in
 * order: memory (`MemoryTier`, ready to send), then the local disk (`DiskStore`, which
 * outlives the process), then, when configured, the Redis every replica shares
 * (`SharedTier`), then the upstream. What a lower tier held is copied into the tiers above
 * it; freshness is always counted from the original fetch, so a copy keeps only the time it
 * had left.
 *
 * With a shared tier, a variant is fetched once across replicas: the replica that fetches
 * holds the variant's lock in Redis, and the others wait for its image. A replica that
 * stores an image tells the others, which drop their older copy, so all serve the same one.
 */
@Injectable()
export class CacheService implements OnModuleInit, OnModuleDestroy {
  private readonly logger = new Logger(CacheService.name);
  private readonly fetches = new SingleFlight<Fetched>();
  private cleanupTimer?: NodeJS.Timeout;

  constructor(
    private readonly client: PicsumClient,
    private readonly limiter: UpstreamLimiter,
    private readonly memory: MemoryTier,
    private readonly disk: DiskStore,
    private readonly shared: SharedTier,
    private readonly clock: Clock,
    private readonly variants: LocalVariants,
    private readonly policy: FreshnessPolicy,
    private readonly failures: FailureMemory,
    private readonly tiers: TierChain,
    private readonly prefetcher: Prefetcher,
    /** Makes a purge or refresh win over the fetches and prefetches running when it comes. */
    private readonly generations: PurgeGenerations,
    @Inject(cacheConfig.KEY)
    private readonly cache: ConfigType<typeof cacheConfig>,
    @Inject(upstreamConfig.KEY)
    private readonly upstream: ConfigType<typeof upstreamConfig>,
    @Inject(sharedCacheConfig.KEY)
    private readonly sharedCache: ConfigType<typeof sharedCacheConfig>,
  ) {}

  onModuleInit(): void {
    this.cleanupTimer = setInterval(
      () => void this.maintain(),
      this.cache.cleanupIntervalSeconds * 1000,
    );
    this.cleanupTimer.unref();
    this.shared.onNotice((notice) => {
      if (notice.type === 'stored') {
        // Another replica stored a newer image: the local copy must not be served any more.
        // After an admin refresh (`replaces`), no copy is, whatever its fetch time says, and
        // a fetch running here stores nothing.
        if (notice.replaces) {
          this.generations.purged(notice.key);
        }
        this.tiers.dropLocal(
          notice.key,
          notice.replaces ? Infinity : notice.fetchedAt,
        );
        this.failures.forget(notice.key);
        // A next image held here was for the image that is now replaced: its successor is
        // prefetched again, or fetched at expiry.
        this.prefetcher.forget(notice.key);
      } else if (notice.type === 'purged') {
        void this.purgeLocally(notice.key);
      } else {
        // Another replica's fetch failed: asking the upstream again now would fail the same way.
        this.failures.rememberRemote(notice);
      }
    });
  }

  onModuleDestroy(): void {
    clearInterval(this.cleanupTimer);
  }

  /**
   * The image to serve for `variant`: from the first tier with a fresh one, else fetched.
   * `requestId` goes into what a fetch logs; it is passed, not kept in an AsyncLocalStorage,
   * because on Node 20 that tracks every promise of every request, hits included.
   */
  async getImage(
    variant: ImageVariant,
    requestId?: string,
  ): Promise<CacheLookup> {
    const key = variantKey(variant);
    const hit = this.freshInMemory(key, variant);
    if (hit) {
      return hit;
    }
    const inMemory = this.memory.load(key);
    const failure = this.failures.recent(key);
    // While the upstream fails for this variant, an expired image in memory is served as it
    // is: no tier below holds a newer one, unless another replica stored it, and its notice
    // removed this copy and the failure.
    const found =
      failure && inMemory
        ? { image: inMemory, tier: 'memory' as const }
        : await this.tiers.findBelowMemory(key, inMemory);
    const cached = found?.image;
    if (found && !this.freshness(found.image).stale) {
      this.prefetcher.startIfDue(
        key,
        variant,
        found.image,
        this.fetches.isRunning(key),
      );
      return {
        image: found.image,
        status: 'HIT',
        outcome: { kind: 'hit', tier: found.tier },
      };
    }
    const next = await this.prefetcher.takeDue(key, cached);
    if (next) {
      return next;
    }
    if (failure) {
      return this.serveStaleOr(cached, failure, {
        kind: 'stale-while-failing',
      });
    }
    if (
      cached &&
      this.policy.isWithinRevalidateWindow(cached.fetchedAt, this.clock.now())
    ) {
      this.revalidate(key, variant, requestId);
      return {
        image: cached,
        status: 'STALE',
        outcome: { kind: 'revalidating' },
      };
    }
    const joined = this.fetches.isRunning(key);
    try {
      const { image, byAnotherReplica } = await this.fetches.run(key, () =>
        this.fetchOnce(key, variant, requestId),
      );
      return {
        image,
        status: 'MISS',
        outcome: {
          kind: 'fetched',
          forward: cached ? 'stale' : 'uri-miss',
          collapsed: joined || byAnotherReplica,
        },
      };
    } catch (error) {
      const httpError = toHttpException(error);
      return this.serveStaleOr(cached, httpError, {
        kind: 'stale-on-error',
        status: forwardStatusOf(httpError),
      });
    }
  }

  /**
   * A fresh hit in memory for the variant `key`, or nothing: the one lookup that never waits,
   * which `getImage` tries first and FreshHitHook answers without the rest of the request path.
   */
  freshInMemory(key: string, variant: ImageVariant): CacheLookup | undefined {
    const image = this.memory.load(key);
    if (image === undefined || this.isStale(image.fetchedAt)) {
      return undefined;
    }
    this.disk.touch(key);
    this.prefetcher.startIfDue(
      key,
      variant,
      image,
      this.fetches.isRunning(key),
    );
    return { image, status: 'HIT', outcome: MEMORY_HIT };
  }

  /** Starts one background fetch that replaces the expired image of `key`; its outcome is recorded as any fetch's. */
  private revalidate(
    key: string,
    variant: ImageVariant,
    requestId: string | undefined,
  ): void {
    if (this.fetches.isRunning(key)) {
      return;
    }
    this.fetches
      .run(key, () => this.fetchOnce(key, variant, requestId))
      .catch(() => undefined); // logged by the client, remembered as a failure for the retry window
  }

  /**
   * Fetches a new image of `variant` now and makes it current in every tier and, through the
   * shared tier, on every replica, whatever the cache held. It wins over the fetches and
   * prefetches of the variant already running, here and on the other replicas: they finish for
   * the requests waiting for them, but store nothing; a prefetched image held for later is
   * dropped.
   */
  async refresh(
    variant: ImageVariant,
    requestId?: string,
  ): Promise<CachedImage> {
    const key = variantKey(variant);
    this.generations.purged(key);
    await Promise.all([
      this.prefetcher.dropEverywhere(key),
      this.fetches.settled(key),
    ]);
    const { image } = await this.fetches.run(key, () =>
      this.fetchOnce(key, variant, requestId, { force: true }),
    );
    return image;
  }

  /**
   * Removes `key`'s variant, or every variant when `key` is `null`, from every tier and, through
   * the shared tier, from every replica. The purge wins over the fetches and prefetches running:
   * they store nothing. Returns how many variants were removed.
   */
  async purge(key: string | null): Promise<number> {
    const removed = new Set(await this.purgeLocally(key));
    if (this.shared.enabled) {
      try {
        for (const variant of await this.shared.purge(key)) {
          removed.add(variant);
        }
      } catch (error) {
        throw new ServiceUnavailableException(
          `Purged this replica, but not the shared tier, whose Redis failed: ${errorMessage(error)}; other replicas still serve their copies`,
        );
      }
    }
    if (key !== null && removed.size === 0) {
      throw new NotFoundException(`No image is cached for ${key}`);
    }
    return removed.size;
  }

  /**
   * Removes `key`'s variant, or every variant, from this replica's memory and disk and the
   * images held aside, walking the variants a page at a time; returns the variants removed.
   */
  private async purgeLocally(key: string | null): Promise<string[]> {
    this.generations.purged(key);
    const removed: string[] = [];
    if (key !== null) {
      return (await this.purgeVariant(key)) ? [key] : [];
    }
    this.failures.forgetAll();
    this.prefetcher.forgetRetries();
    for (
      let page = this.variants.page(undefined, PURGE_PAGE_SIZE);
      page.length > 0;
      page = this.variants.page(page[page.length - 1], PURGE_PAGE_SIZE)
    ) {
      for (const variant of page) {
        if (await this.purgeVariant(variant)) {
          removed.push(variant);
        }
      }
    }
    return removed;
  }

  /** Removes one variant from this replica; whether anything was held. */
  private async purgeVariant(key: string): Promise<boolean> {
    const held = this.memory.peek(key) !== undefined || this.disk.has(key);
    const heldNext = this.prefetcher.forget(key);
    this.memory.delete(key);
    this.failures.forget(key);
    await this.disk.delete(key);
    return held || heldNext;
  }

  get ttlSeconds(): number {
    return this.policy.ttlSeconds;
  }

  /** The prefetched image held here for `key`, without counting as a use. */
  heldNext(key: string): CachedImage | undefined {
    return this.prefetcher.held(key);
  }

  /** The cached image for `variant`, fresh or stale, without ever calling the upstream. */
  async peek(variant: ImageVariant): Promise<CachedImage | undefined> {
    const key = variantKey(variant);
    const inMemory = this.memory.load(key);
    if (inMemory && !this.freshness(inMemory).stale) {
      return inMemory;
    }
    return (await this.tiers.findBelowMemory(key, inMemory))?.image;
  }

  /**
   * Gets a new image for `key` once across replicas. Without a shared tier, or while Redis is
   * down, this replica fetches it, as a single pod would. Otherwise it fetches under the
   * variant's lock, or waits while another replica holds the lock and takes the image that
   * one stores. If the holder dies, its lock expires and a waiting replica takes over, so a
   * wait ends within the lock TTL plus one fetch (`UPSTREAM_TIMEOUT_MS`), and fails after it.
   */
  private async fetchOnce(
    key: string,
    variant: ImageVariant,
    requestId: string | undefined,
    { force = false } = {},
  ): Promise<Fetched> {
    const waitMs = this.sharedCache.lockTtlMs + this.upstream.timeoutMs;
    const giveUpAt = performance.now() + waitMs;
    for (;;) {
      const lock = await this.shared.lock(key);
      if (lock === 'unavailable') {
        return this.fetchHere(key, variant, requestId, force);
      }
      if (lock !== 'held') {
        try {
          // The holder before this one may have stored an image, or failed, since this
          // replica looked.
          const stored = force
            ? undefined
            : await this.settledByAnotherReplica(key);
          return stored
            ? { image: stored, byAnotherReplica: true }
            : await this.fetchHere(key, variant, requestId, force);
        } finally {
          await this.shared.unlock(lock);
        }
      }
      if (await this.shared.waitForNotice(key, LOCK_POLL_MS)) {
        const failure = this.failures.recent(key);
        if (failure) {
          throw failure; // the holder's fetch failed
        }
        const stored = await this.freshFromShared(key);
        if (stored) {
          return { image: stored, byAnotherReplica: true };
        }
      }
      if (performance.now() >= giveUpAt) {
        throw new GatewayTimeoutException(
          `No replica stored an image for ${key} within ${waitMs} ms (the fetch lock TTL plus UPSTREAM_TIMEOUT_MS)`,
        );
      }
    }
  }

  private async fetchHere(
    key: string,
    variant: ImageVariant,
    requestId: string | undefined,
    replaces: boolean,
  ): Promise<Fetched> {
    return {
      image: await this.fetchAndStore(key, variant, requestId, replaces),
      byAnotherReplica: false,
    };
  }

  /** The shared tier's fresh image for `key`, copied into the local tiers; its failure is forgotten. */
  private async freshFromShared(key: string): Promise<CachedImage | undefined> {
    const image = await this.tiers.freshFromShared(key);
    if (image) {
      this.failures.forget(key);
    }
    return image;
  }

  /**
   * What another replica's fetch of `key` left in the shared tier, asked by the replica that
   * just took the lock: its fresh image (the entry's header is read first, so a stale body is
   * never transferred), or its failure, which is thrown and remembered for the retry window.
   */
  private async settledByAnotherReplica(
    key: string,
  ): Promise<CachedImage | undefined> {
    const fetchedAt = await this.shared.fetchedAt(key);
    if (fetchedAt !== undefined && !this.isStale(fetchedAt)) {
      const stored = await this.freshFromShared(key);
      if (stored) {
        return stored;
      }
    }
    // A prefetch that held the lock until now left the image that is current from expiry.
    const next = await this.prefetcher.sharedDue(key, fetchedAt);
    if (next) {
      return next;
    }
    const failure = await this.failures.loadRemote(key);
    if (failure) {
      throw failure;
    }
    return undefined;
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
    if (!this.policy.boundsStaleServing) {
      return 0;
    }
    const now = this.clock.now();
    const isExpired = (fetchedAt: number) =>
      now >= (this.policy.unservableFrom(fetchedAt) ?? Infinity);
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

  /** The freshness of `image` now, as HTTP caching headers need it. */
  freshness(image: CachedImage): Freshness {
    return this.policy.freshness(image.fetchedAt, this.clock.now());
  }

  private isStale(fetchedAt: number): boolean {
    return this.policy.isStale(fetchedAt, this.clock.now());
  }

  /**
   * Fetches an image of `variant` and stores it in every tier, unless the variant was purged
   * (or refreshed) since the fetch started: the requests waiting for it get it all the same.
   * With `replaces` (an admin refresh), the other replicas drop every copy they hold.
   */
  private async fetchAndStore(
    key: string,
    variant: ImageVariant,
    requestId: string | undefined,
    replaces: boolean,
  ): Promise<CachedImage> {
    const mark = this.generations.mark();
    let fetched: UpstreamImage;
    try {
      fetched = await this.limiter.run(() =>
        this.client.fetchImage(variant, requestId),
      );
    } catch (error) {
      if (error instanceof UpstreamBusyException) {
        throw error; // our own saturation, not the upstream's failure: nothing to remember
      }
      // Recorded here, inside the single flight, so one failed fetch is logged once however
      // many requests were waiting for it.
      const httpError = toHttpException(error);
      // Recorded before the lock is released, so the replica that takes it next knows.
      if (!this.generations.purgedSince(key, mark)) {
        await this.failures.record(key, httpError);
      }
      throw httpError;
    }
    const image = cachedImageFromUpstream(key, fetched, this.clock.now());
    if (this.generations.purgedSince(key, mark)) {
      return image;
    }
    const stored = this.tiers.store(image, { replaces });
    this.prefetcher.dropBefore(key, image.fetchedAt);
    this.failures.forget(key);
    await stored;
    return image;
  }

  private serveStaleOr(
    cached: CachedImage | undefined,
    error: HttpException,
    outcome: CacheOutcome,
  ): CacheLookup {
    if (
      cached &&
      this.policy.isWithinStaleIfError(cached.fetchedAt, this.clock.now())
    ) {
      return { image: cached, status: 'STALE', outcome };
    }
    throw error;
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
