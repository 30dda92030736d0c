import { BadGatewayException, Logger } from '@nestjs/common';
import { FakeClock } from '../../../test/support/fake-clock';
import { upstreamImage } from '../../../test/support/upstream-image';
import { DEFAULT_VARIANT } from '../../../test/support/variants';
import type { PicsumClient } from '../upstream/picsum.client';
import type { UpstreamImage } from '../upstream/upstream-reply';
import { UpstreamLimiter } from '../upstream/upstream-limiter';
import type { CachedImage } from './cache-model';
import { cachedImageFromUpstream } from './cached-image';
import type { FailureMemory } from './failure-memory';
import { FreshnessPolicy } from './freshness-policy';
import { LocalVariants } from './local-variants';
import { MemoryTier } from './memory-tier';
import { Prefetcher } from './prefetcher';
import { PurgeGenerations } from './purge-generations';
import type { SharedLocks } from './shared/shared-locks';
import type { SharedTier } from './shared/shared-tier';
import type { TierChain } from './tier-chain';

const TTL_SECONDS = 600;
const PREFETCH_SECONDS = 60;
const KEY = '1200x1200';

describe(Prefetcher.name, () => {
  let clock: FakeClock;
  let generations: PurgeGenerations;
  let memory: MemoryTier;
  let prefetcher: Prefetcher;
  let current: CachedImage;
  const fetchImage = jest.fn<Promise<UpstreamImage>, []>();
  const tiers = { store: jest.fn(), keepLocally: jest.fn() };
  const failures = { forget: jest.fn() };
  const shared = { enabled: false };
  const locks = { lock: jest.fn().mockResolvedValue('unavailable') };

  /** Lets the background prefetch run as far as it can. */
  async function settle(): Promise<void> {
    for (let turn = 0; turn < 10; turn += 1) {
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  let warn: jest.SpyInstance;

  beforeEach(() => {
    jest.clearAllMocks();
    warn = jest.spyOn(Logger.prototype, 'warn').mockImplementation();
    clock = new FakeClock();
    generations = new PurgeGenerations();
    let nextId = 2;
    fetchImage.mockImplementation(() =>
      Promise.resolve(upstreamImage(nextId++)),
    );
    const variants = new LocalVariants();
    memory = new MemoryTier(
      { memoryMaxBytes: 1024 * 1024 } as ConstructorParameters<
        typeof MemoryTier
      >[0],
      variants,
    );
    prefetcher = new Prefetcher(
      { fetchImage } as unknown as PicsumClient,
      new UpstreamLimiter({
        maxConcurrency: 8,
        queueTimeoutMs: 1000,
      } as ConstructorParameters<typeof UpstreamLimiter>[0]),
      memory,
      shared as unknown as SharedTier,
      locks as unknown as SharedLocks,
      tiers as unknown as TierChain,
      failures as unknown as FailureMemory,
      new FreshnessPolicy({
        ttlSeconds: TTL_SECONDS,
        staleWhileRevalidateSeconds: 0,
        prefetchSeconds: PREFETCH_SECONDS,
      }),
      generations,
      clock,
      variants,
      { retryAfterSeconds: 10 },
    );
    current = cachedImageFromUpstream(KEY, upstreamImage(1), clock.now());
    memory.save(current);
  });

  afterEach(() => jest.restoreAllMocks());

  it('fetches the next image once the current one has less than the window left, holding it for its expiry', async () => {
    clock.advanceSeconds(TTL_SECONDS - PREFETCH_SECONDS - 1);
    prefetcher.startIfDue(KEY, DEFAULT_VARIANT, current, false);
    await settle();
    const beforeWindow = fetchImage.mock.calls.length;

    clock.advanceSeconds(1);
    prefetcher.startIfDue(KEY, DEFAULT_VARIANT, current, false);
    await settle();
    prefetcher.startIfDue(KEY, DEFAULT_VARIANT, current, false);
    await settle();

    expect(beforeWindow).toBe(0);
    expect(fetchImage).toHaveBeenCalledTimes(1);
    expect(prefetcher.held(KEY)?.fetchedAt).toBe(
      current.fetchedAt + TTL_SECONDS * 1000,
    );
  });

  it('leaves the variant alone while a fetch of it runs', async () => {
    clock.advanceSeconds(TTL_SECONDS - 1);

    prefetcher.startIfDue(KEY, DEFAULT_VARIANT, current, true);
    await settle();

    expect(fetchImage).not.toHaveBeenCalled();
  });

  it('makes the held image current at expiry, in every tier, with a full TTL of its own', async () => {
    clock.advanceSeconds(TTL_SECONDS - 1);
    prefetcher.startIfDue(KEY, DEFAULT_VARIANT, current, false);
    await settle();
    clock.advanceSeconds(1);

    const due = await prefetcher.takeDue(KEY, current);

    expect(due).toMatchObject({
      status: 'HIT',
      outcome: { kind: 'prefetched' },
    });
    expect(due?.image.picsumId).toBe('2');
    expect(tiers.store).toHaveBeenCalledWith(due?.image);
    expect(failures.forget).toHaveBeenCalledWith(KEY);
    expect(prefetcher.held(KEY)).toBeUndefined();
  });

  it('changes nothing when a prefetch fails, and tries again only after the retry window', async () => {
    fetchImage.mockRejectedValue(new BadGatewayException('Upstream said 500'));
    clock.advanceSeconds(TTL_SECONDS - PREFETCH_SECONDS);

    prefetcher.startIfDue(KEY, DEFAULT_VARIANT, current, false);
    await settle();
    clock.advanceSeconds(9);
    prefetcher.startIfDue(KEY, DEFAULT_VARIANT, current, false);
    await settle();
    const withinWindow = fetchImage.mock.calls.length;
    clock.advanceSeconds(1);
    prefetcher.startIfDue(KEY, DEFAULT_VARIANT, current, false);
    await settle();

    expect(withinWindow).toBe(1);
    expect(fetchImage).toHaveBeenCalledTimes(2);
    expect(prefetcher.held(KEY)).toBeUndefined();
    expect(warn).toHaveBeenCalledTimes(2);
  });

  it('holds nothing when the variant is purged while its prefetch runs', async () => {
    let release = () => {};
    fetchImage.mockImplementationOnce(
      () =>
        new Promise((resolve) => (release = () => resolve(upstreamImage(2)))),
    );
    clock.advanceSeconds(TTL_SECONDS - 1);
    prefetcher.startIfDue(KEY, DEFAULT_VARIANT, current, false);
    await settle();

    generations.purged(KEY);
    release();
    await settle();

    expect(prefetcher.held(KEY)).toBeUndefined();
  });
});
