import {
  BadGatewayException,
  GatewayTimeoutException,
  HttpException,
  Inject,
  Injectable,
} from '@nestjs/common';
import type { ConfigType } from '@nestjs/config';
import { performance } from 'node:perf_hooks';
import { errorMessage } from '../../common/error-message';
import { sharedCacheConfig } from '../../config/shared-cache.config';
import { upstreamConfig } from '../../config/upstream.config';
import type { ImageVariant } from '../image-variant';
import { PicsumClient } from '../upstream/picsum.client';
import type { UpstreamImage } from '../upstream/upstream-reply';
import { UpstreamBusyException } from '../upstream/upstream-busy.exception';
import { UpstreamLimiter } from '../upstream/upstream-limiter';
import type { CachedImage } from './cache-model';
import { cachedImageFromUpstream } from './cached-image';
import { Clock } from './clock';
import { FailureMemory } from './failure-memory';
import { FreshnessPolicy } from './freshness-policy';
import { Prefetcher } from './prefetcher';
import { PurgeGenerations } from './purge-generations';
import { ReplicaNotices } from './shared/replica-notices';
import { SharedLocks } from './shared/shared-locks';
import { SharedTier } from './shared/shared-tier';
import { SingleFlight } from './single-flight';
import { TierChain } from './tier-chain';

/** How often a replica waiting for another's fetch checks whether the lock is free, should a notice be lost. */
const LOCK_POLL_MS = 100;

/** A new image, and whether another replica fetched it while this one waited. */
export interface Fetched {
  readonly image: CachedImage;
  readonly byAnotherReplica: boolean;
}

/**
 * Gets new images from the upstream, once per variant: one fetch at a time per variant here
 * (single flight), and with a shared tier once across replicas, under the variant's lock in
 * Redis, the other replicas waiting for the image the holder stores. A fetch stores its image
 * in every tier, or remembers its failure for the retry window, unless the variant was purged
 * while it ran.
 */
@Injectable()
export class FetchCoordinator {
  private readonly fetches = new SingleFlight<Fetched>();

  constructor(
    private readonly client: PicsumClient,
    private readonly limiter: UpstreamLimiter,
    private readonly shared: SharedTier,
    private readonly locks: SharedLocks,
    private readonly notices: ReplicaNotices,
    private readonly tiers: TierChain,
    private readonly failures: FailureMemory,
    private readonly prefetcher: Prefetcher,
    private readonly policy: FreshnessPolicy,
    private readonly generations: PurgeGenerations,
    private readonly clock: Clock,
    @Inject(upstreamConfig.KEY)
    private readonly upstream: Pick<
      ConfigType<typeof upstreamConfig>,
      'timeoutMs'
    >,
    @Inject(sharedCacheConfig.KEY)
    private readonly sharedCache: Pick<
      ConfigType<typeof sharedCacheConfig>,
      'lockTtlMs'
    >,
  ) {}

  /** Whether a fetch of `key` runs here now. */
  isRunning(key: string): boolean {
    return this.fetches.isRunning(key);
  }

  /**
   * A new image of `variant`: from the fetch of it running here, if any (`joined`), else from
   * a new one, once across replicas.
   */
  async fetch(
    key: string,
    variant: ImageVariant,
    requestId: string | undefined,
  ): Promise<Fetched & { readonly joined: boolean }> {
    const joined = this.fetches.isRunning(key);
    const fetched = await this.fetches.run(key, () =>
      this.fetchOnce(key, variant, requestId),
    );
    return { ...fetched, joined };
  }

  /** Starts one background fetch that replaces the expired image of `key`; its outcome is recorded as any fetch's. */
  revalidate(
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
   * A new image of `variant` fetched now, whatever the tiers hold, after the fetch of it
   * running here has ended; stored everywhere, replacing every replica's copies.
   */
  async fetchReplacing(
    key: string,
    variant: ImageVariant,
    requestId: string | undefined,
  ): Promise<CachedImage> {
    await this.fetches.settled(key);
    const { image } = await this.fetches.run(key, () =>
      this.fetchOnce(key, variant, requestId, { force: true }),
    );
    return image;
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
      const lock = await this.locks.lock(key);
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
          await this.locks.unlock(lock);
        }
      }
      if (await this.notices.waitForNotice(key, LOCK_POLL_MS)) {
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

  private isStale(fetchedAt: number): boolean {
    return this.policy.isStale(fetchedAt, this.clock.now());
  }
}

/** What a failed fetch is answered with: its own HTTP error, or a 502 naming the cause. */
export function toHttpException(error: unknown): HttpException {
  if (error instanceof HttpException) {
    return error;
  }
  return new BadGatewayException(
    `Fetching from the upstream failed: ${errorMessage(error)}`,
  );
}
