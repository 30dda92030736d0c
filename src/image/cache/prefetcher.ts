import { Inject, Injectable, Logger } from '@nestjs/common';
import type { ConfigType } from '@nestjs/config';
import { LRUCache } from 'lru-cache';
import { errorMessage } from '../../common/error-message';
import { upstreamConfig } from '../../config/upstream.config';
import { type ImageVariant } from '../image-variant';
import { PicsumClient } from '../upstream/picsum.client';
import { UpstreamLimiter } from '../upstream/upstream-limiter';
import type { CachedImage, CacheLookup } from './cache-model';
import { cachedImageFromUpstream } from './cached-image';
import { Clock } from './clock';
import { FailureMemory } from './failure-memory';
import { FreshnessPolicy } from './freshness-policy';
import { LocalVariants } from './local-variants';
import { MemoryTier } from './memory-tier';
import { PurgeGenerations } from './purge-generations';
import { SharedLocks } from './shared/shared-locks';
import { SharedTier } from './shared/shared-tier';
import { SingleFlight } from './single-flight';
import { TierChain } from './tier-chain';

/** Variants whose failed prefetch is remembered at once, so that varying the variant cannot grow memory without bound. */
const MAX_REMEMBERED_VARIANTS = 10_000;
/** How long a replica waits before trying a prefetch again while another replica holds the variant's lock. */
const PREFETCH_LOCK_RETRY_MS = 1000;
/** Prefetched images held aside when the memory tier is off, in bytes. */
const NEXT_IMAGES_MAX_BYTES_WITHOUT_MEMORY = 64 * 2 ** 20;
/** A failed prefetch of one variant is logged at most this often, even with no retry window. */
const MIN_LOG_INTERVAL_MS = 1000;

/**
 * Prefetch (`CACHE_PREFETCH_SECONDS`): the next image of a requested variant, fetched once
 * (single flight, and under the variant's lock across replicas) when its current image has less
 * than the window left, and held aside until that image expires. Its `fetchedAt` is that
 * moment, so it becomes current exactly then with a full TTL: one image per TTL, and no request
 * waits for the upstream. A failed prefetch changes nothing and is tried again after the retry
 * window. A purge or refresh while a prefetch runs wins: its image is not held.
 */
@Injectable()
export class Prefetcher {
  private readonly logger = new Logger(Prefetcher.name);
  /** Runs at most one prefetch per variant; a request at expiry waits for one still running. */
  private readonly running = new SingleFlight<void>();
  private readonly loads = new SingleFlight<CachedImage | undefined>();
  /** Next images held aside until the image before them expires (their `fetchedAt`). */
  private readonly nextImages: LRUCache<string, CachedImage>;
  /** When a variant's failed prefetch may be tried again, so a failing upstream is not asked on every hit. */
  private readonly retryAt = new LRUCache<string, number>({
    max: MAX_REMEMBERED_VARIANTS,
  });
  /** When a variant's failed prefetch was last logged: one line per variant and retry window. */
  private readonly failureLoggedAt = new LRUCache<string, number>({
    max: MAX_REMEMBERED_VARIANTS,
  });

  constructor(
    private readonly client: PicsumClient,
    private readonly limiter: UpstreamLimiter,
    private readonly memory: MemoryTier,
    private readonly shared: SharedTier,
    private readonly locks: SharedLocks,
    private readonly tiers: TierChain,
    private readonly failures: FailureMemory,
    private readonly policy: FreshnessPolicy,
    private readonly generations: PurgeGenerations,
    private readonly clock: Clock,
    variants: LocalVariants,
    @Inject(upstreamConfig.KEY)
    private readonly upstream: Pick<
      ConfigType<typeof upstreamConfig>,
      'retryAfterSeconds'
    >,
  ) {
    this.nextImages = new LRUCache({
      maxSize: memory.maxBytes || NEXT_IMAGES_MAX_BYTES_WITHOUT_MEMORY,
      sizeCalculation: (image) => MemoryTier.sizeOf(image),
      onInsert: (_image, key) => variants.added(key, 'next'),
      dispose: (_image, key, reason) => {
        if (reason !== 'set') {
          variants.removed(key, 'next');
        }
      },
    });
  }

  /**
   * Starts the prefetch of the next image of a variant being requested, once its current
   * image has less than `CACHE_PREFETCH_SECONDS` left, unless one is running (or a fetch of
   * the variant, `fetching`), one is already held, or one failed within the retry window.
   * Costs one comparison on a hit outside that window.
   */
  startIfDue(
    key: string,
    variant: ImageVariant,
    current: CachedImage,
    fetching: boolean,
  ): void {
    const now = this.clock.now();
    if (!this.policy.isPrefetchDue(current.fetchedAt, now)) {
      return;
    }
    const expiresAt = this.policy.expiresAt(current.fetchedAt);
    if (
      fetching ||
      this.running.isRunning(key) ||
      (this.nextImages.peek(key)?.fetchedAt ?? 0) >= expiresAt ||
      now < (this.retryAt.get(key) ?? 0)
    ) {
      return;
    }
    void this.running.run(key, () =>
      this.prefetch(key, variant, expiresAt).catch((error: unknown) =>
        this.failed(key, error),
      ),
    );
  }

  /**
   * The prefetched image of `key` that is due now the image before it (`cached`) expired,
   * made current in every tier, or `undefined`. A request that comes while the prefetch is
   * still running waits for it rather than start a second fetch. Another replica's prefetched
   * image is read from the shared tier.
   */
  async takeDue(
    key: string,
    cached: CachedImage | undefined,
  ): Promise<CacheLookup | undefined> {
    if (!this.policy.prefetches) {
      return undefined;
    }
    await this.running.settled(key);
    // Another request of this replica may have made it current while this one waited.
    const current = this.memory.load(key);
    if (current && !this.policy.isStale(current.fetchedAt, this.clock.now())) {
      return {
        image: current,
        status: 'HIT',
        outcome: { kind: 'hit', tier: 'memory' },
      };
    }
    const after = cached?.fetchedAt;
    const held = this.nextImages.get(key);
    if (this.isDue(held, after)) {
      this.nextImages.delete(key);
      void this.tiers.store(held);
      this.failures.forget(key);
      return { image: held, status: 'HIT', outcome: { kind: 'prefetched' } };
    }
    const shared = await this.sharedDue(key, after);
    return shared
      ? { image: shared, status: 'HIT', outcome: { kind: 'prefetched' } }
      : undefined;
  }

  /**
   * The next image another replica prefetched for `key`, if it is due after the image fetched
   * at `after`, copied into the local tiers; `undefined` without prefetch or a shared tier.
   */
  async sharedDue(
    key: string,
    after: number | undefined,
  ): Promise<CachedImage | undefined> {
    if (!this.policy.prefetches || !this.shared.enabled) {
      return undefined;
    }
    const next = await this.loads.run(key, () => this.shared.loadNext(key));
    if (!this.isDue(next, after)) {
      return undefined;
    }
    this.tiers.keepLocally(next, 'shared');
    this.failures.forget(key);
    return next;
  }

  /** The image held here for `key`, without counting as a use. */
  held(key: string): CachedImage | undefined {
    return this.nextImages.peek(key);
  }

  /** Drops the image held for `key` if it would become current before `fetchedAt`. */
  dropBefore(key: string, fetchedAt: number): void {
    const held = this.nextImages.peek(key);
    if (held && held.fetchedAt <= fetchedAt) {
      this.nextImages.delete(key);
    }
  }

  /** Forgets what is held and remembered for `key` here; whether an image was held. */
  forget(key: string): boolean {
    this.retryAt.delete(key);
    return this.nextImages.delete(key);
  }

  /** Forgets the retry windows of every variant (the held images go with their variants). */
  forgetRetries(): void {
    this.retryAt.clear();
  }

  /**
   * Drops the image held for `key` here and in the shared tier, once any prefetch of it still
   * running has ended (an admin refresh makes a new image current).
   */
  async dropEverywhere(key: string): Promise<void> {
    this.nextImages.delete(key);
    await this.shared.dropNext(key);
    await this.running.settled(key);
  }

  /**
   * Gets the image that becomes current for `key` at `startsAt`, once across replicas: under
   * the variant's fetch lock, taking what another replica already prefetched. While another
   * replica holds the lock, it is fetching this variant, and its image reaches this replica
   * through the shared tier.
   */
  private async prefetch(
    key: string,
    variant: ImageVariant,
    startsAt: number,
  ): Promise<void> {
    const mark = this.generations.mark();
    const lock = await this.locks.lock(key);
    if (lock === 'held') {
      // Not asked again on every hit: the holder's image comes through the shared tier.
      this.retryAt.set(key, this.clock.now() + PREFETCH_LOCK_RETRY_MS);
      return;
    }
    try {
      if (lock !== 'unavailable') {
        const held = await this.shared.loadNext(key);
        if (held && held.fetchedAt >= startsAt) {
          if (!this.generations.purgedSince(key, mark)) {
            this.nextImages.set(key, held);
          }
          return;
        }
      }
      const fetched = await this.limiter.run(() =>
        this.client.fetchImage(variant),
      );
      // A purge or refresh since the prefetch started wins: its image is not held.
      if (this.generations.purgedSince(key, mark)) {
        return;
      }
      const next = cachedImageFromUpstream(key, fetched, startsAt);
      this.nextImages.set(key, next);
      await this.shared.saveNext(next);
    } finally {
      if (lock !== 'unavailable') {
        await this.locks.unlock(lock);
      }
    }
  }

  /**
   * Nothing changes when a prefetch fails: the current image stays until it expires, then the
   * miss path runs. It is not tried again within the retry window, and logged once per window.
   */
  private failed(key: string, error: unknown): void {
    const now = this.clock.now();
    const retryAfterMs = this.upstream.retryAfterSeconds * 1000;
    this.retryAt.set(key, now + retryAfterMs);
    const loggedAt = this.failureLoggedAt.get(key) ?? -Infinity;
    if (now - loggedAt >= Math.max(retryAfterMs, MIN_LOG_INTERVAL_MS)) {
      this.failureLoggedAt.set(key, now);
      this.logger.warn(
        `Prefetching the next image of ${key} failed: ${errorMessage(error)}; the miss path runs at expiry`,
      );
    }
  }

  /**
   * Whether `next`, a prefetched image, is current now: its time has come, it has not expired,
   * and it follows the image fetched at `after` (when there is one).
   */
  private isDue(
    next: CachedImage | undefined,
    after: number | undefined,
  ): next is CachedImage {
    const now = this.clock.now();
    return (
      next !== undefined &&
      next.fetchedAt <= now &&
      next.fetchedAt > (after ?? -Infinity) &&
      !this.policy.isStale(next.fetchedAt, now)
    );
  }
}
