import {
  HttpException,
  Inject,
  Injectable,
  Logger,
  type OnModuleDestroy,
  type OnModuleInit,
} from '@nestjs/common';
import type { ConfigType } from '@nestjs/config';
import { errorMessage } from '../../common/error-message';
import { cacheConfig } from '../../config/cache.config';
import { type ImageVariant, variantKey } from '../image-variant';
import { forwardStatusOf } from '../upstream/forward-status';
import { CacheAdmin } from './cache-admin';
import type {
  CacheLookup,
  CacheOutcome,
  CachedImage,
  Freshness,
} from './cache-model';
import { Clock } from './clock';
import type { StoredMetadata } from './disk/disk-entry-format';
import { DiskStore } from './disk/disk-store';
import { FailureMemory } from './failure-memory';
import { FetchCoordinator, toHttpException } from './fetch-coordinator';
import { FreshnessPolicy } from './freshness-policy';
import { MemoryTier } from './memory-tier';
import { Prefetcher } from './prefetcher';
import { TierChain } from './tier-chain';

const MEMORY_HIT: CacheOutcome = { kind: 'hit', tier: 'memory' };

/**
 * The cache's façade: decides for each request whether the cached image of its variant is
 * served, replaced by a new fetch, or served stale because the upstream failed. It asks the
 * units that each own one piece of state: the tiers below memory and how images move between
 * them (TierChain), the TTL and stale windows (FreshnessPolicy), the upstream failures
 * remembered (FailureMemory), the next images prefetched (Prefetcher), the fetches made once
 * per variant across replicas (FetchCoordinator), and the operator's refresh and purge
 * (CacheAdmin). Memory is asked first and never waits; freshness always counts from the
 * original fetch. What another replica's notice changes here is ReplicaSync's.
 */
@Injectable()
export class CacheService implements OnModuleInit, OnModuleDestroy {
  private readonly logger = new Logger(CacheService.name);
  private cleanupTimer?: NodeJS.Timeout;

  constructor(
    private readonly memory: MemoryTier,
    private readonly disk: DiskStore,
    private readonly tiers: TierChain,
    private readonly policy: FreshnessPolicy,
    private readonly failures: FailureMemory,
    private readonly prefetcher: Prefetcher,
    private readonly fetches: FetchCoordinator,
    private readonly admin: CacheAdmin,
    private readonly clock: Clock,
    @Inject(cacheConfig.KEY)
    private readonly cache: Pick<
      ConfigType<typeof cacheConfig>,
      'cleanupIntervalSeconds'
    >,
  ) {}

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
      this.fetches.revalidate(key, variant, requestId);
      return {
        image: cached,
        status: 'STALE',
        outcome: { kind: 'revalidating' },
      };
    }
    try {
      const { image, byAnotherReplica, joined } = await this.fetches.fetch(
        key,
        variant,
        requestId,
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

  /** See CacheAdmin.refresh: a new image of `variant` now, current on every replica. */
  refresh(variant: ImageVariant, requestId?: string): Promise<CachedImage> {
    return this.admin.refresh(variant, requestId);
  }

  /** See CacheAdmin.purge: `key`'s variant, or every variant, gone from every tier and replica. */
  purge(key: string | null): Promise<number> {
    return this.admin.purge(key);
  }

  get ttlSeconds(): number {
    return this.policy.ttlSeconds;
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
