import { GatewayTimeoutException } from '@nestjs/common';
import { FakeClock } from '../../../test/support/fake-clock';
import { upstreamImage } from '../../../test/support/upstream-image';
import { DEFAULT_VARIANT } from '../../../test/support/variants';
import type { PicsumClient } from '../upstream/picsum.client';
import type { UpstreamImage } from '../upstream/upstream-reply';
import { UpstreamBusyException } from '../upstream/upstream-busy.exception';
import { UpstreamFetchException } from '../upstream/upstream-fetch.exception';
import { UpstreamLimiter } from '../upstream/upstream-limiter';
import { cachedImageFromUpstream } from './cached-image';
import type { FailureMemory } from './failure-memory';
import { FetchCoordinator } from './fetch-coordinator';
import { FreshnessPolicy } from './freshness-policy';
import type { Prefetcher } from './prefetcher';
import { PurgeGenerations } from './purge-generations';
import type { ReplicaNotices } from './shared/replica-notices';
import type { SharedLocks } from './shared/shared-locks';
import type { SharedTier } from './shared/shared-tier';
import type { TierChain } from './tier-chain';

const KEY = '1200x1200';

describe(FetchCoordinator.name, () => {
  let clock: FakeClock;
  let generations: PurgeGenerations;
  let coordinator: FetchCoordinator;
  const fetchImage = jest.fn<Promise<UpstreamImage>, []>();
  const shared = { fetchedAt: jest.fn().mockResolvedValue(undefined) };
  const locks = {
    lock: jest.fn().mockResolvedValue('unavailable'),
    unlock: jest.fn().mockResolvedValue(undefined),
  };
  const notices = { waitForNotice: jest.fn().mockResolvedValue(false) };
  const tiers = {
    store: jest.fn().mockResolvedValue(undefined),
    freshFromShared: jest.fn().mockResolvedValue(undefined),
  };
  const failures = {
    record: jest.fn().mockResolvedValue(undefined),
    recent: jest.fn().mockReturnValue(undefined),
    forget: jest.fn(),
    loadRemote: jest.fn().mockResolvedValue(undefined),
  };
  const prefetcher = {
    dropBefore: jest.fn(),
    sharedDue: jest.fn().mockResolvedValue(undefined),
  };

  beforeEach(() => {
    jest.clearAllMocks();
    clock = new FakeClock();
    generations = new PurgeGenerations();
    let nextId = 1;
    fetchImage.mockImplementation(() =>
      Promise.resolve(upstreamImage(nextId++)),
    );
    coordinator = new FetchCoordinator(
      { fetchImage } as unknown as PicsumClient,
      new UpstreamLimiter({
        maxConcurrency: 8,
        queueTimeoutMs: 1000,
      } as ConstructorParameters<typeof UpstreamLimiter>[0]),
      shared as unknown as SharedTier,
      locks as unknown as SharedLocks,
      notices as unknown as ReplicaNotices,
      tiers as unknown as TierChain,
      failures as unknown as FailureMemory,
      prefetcher as unknown as Prefetcher,
      new FreshnessPolicy({
        ttlSeconds: 600,
        staleWhileRevalidateSeconds: 0,
        prefetchSeconds: 0,
      }),
      generations,
      clock,
      { timeoutMs: 200 },
      { lockTtlMs: 100 },
    );
  });

  it('makes one fetch for concurrent callers, the later ones joining it, and stores its image everywhere', async () => {
    const [first, second] = await Promise.all([
      coordinator.fetch(KEY, DEFAULT_VARIANT, 'a'),
      coordinator.fetch(KEY, DEFAULT_VARIANT, 'b'),
    ]);

    expect(fetchImage).toHaveBeenCalledTimes(1);
    expect([first.joined, second.joined]).toEqual([false, true]);
    expect(second.image).toBe(first.image);
    expect(tiers.store).toHaveBeenCalledWith(first.image, { replaces: false });
    expect(failures.forget).toHaveBeenCalledWith(KEY);
  });

  it('records a failed fetch once, and not its own saturation (a busy fetch cap)', async () => {
    const failure = new UpstreamFetchException(
      'http_error',
      'Upstream answered 500',
    );
    fetchImage.mockRejectedValueOnce(failure);
    await expect(
      Promise.all([
        coordinator.fetch(KEY, DEFAULT_VARIANT, 'a'),
        coordinator.fetch(KEY, DEFAULT_VARIANT, 'b'),
      ]),
    ).rejects.toBe(failure);
    fetchImage.mockRejectedValueOnce(new UpstreamBusyException(1, 8, 1000));
    await expect(
      coordinator.fetch(KEY, DEFAULT_VARIANT, 'c'),
    ).rejects.toBeInstanceOf(UpstreamBusyException);

    expect(failures.record).toHaveBeenCalledTimes(1);
    expect(failures.record).toHaveBeenCalledWith(KEY, failure);
  });

  it('stores nothing, and records no failure, for a variant purged while its fetch ran', async () => {
    let release = () => {};
    fetchImage.mockImplementationOnce(
      () =>
        new Promise((resolve) => (release = () => resolve(upstreamImage(9)))),
    );

    const fetching = coordinator.fetch(KEY, DEFAULT_VARIANT, 'a');
    await new Promise((resolve) => setImmediate(resolve));
    generations.purged(KEY);
    release();
    const fetched = await fetching;

    expect(fetched.image.picsumId).toBe('9');
    expect(tiers.store).not.toHaveBeenCalled();
  });

  it("takes another replica's image once it is stored, while that replica holds the lock", async () => {
    const stored = cachedImageFromUpstream(KEY, upstreamImage(5), clock.now());
    locks.lock.mockResolvedValue('held');
    notices.waitForNotice.mockResolvedValueOnce(true);
    tiers.freshFromShared.mockResolvedValueOnce(stored);

    const fetched = await coordinator.fetch(KEY, DEFAULT_VARIANT, 'a');

    expect(fetched).toMatchObject({ image: stored, byAnotherReplica: true });
    expect(fetchImage).not.toHaveBeenCalled();
  });

  it('gives up waiting for another replica after the lock TTL plus the upstream timeout', async () => {
    locks.lock.mockResolvedValue('held');
    notices.waitForNotice.mockImplementation(
      () => new Promise((resolve) => setTimeout(() => resolve(false), 20)),
    );

    await expect(coordinator.fetch(KEY, DEFAULT_VARIANT, 'a')).rejects.toThrow(
      GatewayTimeoutException,
    );
  });

  it('fetches under the lock, taking what the replica before it stored instead of fetching again', async () => {
    const lock = { key: 'image-cache:{1200x1200}:lock', token: 't' };
    const stored = cachedImageFromUpstream(KEY, upstreamImage(7), clock.now());
    locks.lock.mockResolvedValue(lock);
    shared.fetchedAt.mockResolvedValueOnce(stored.fetchedAt);
    tiers.freshFromShared.mockResolvedValueOnce(stored);

    const fetched = await coordinator.fetch(KEY, DEFAULT_VARIANT, 'a');

    expect(fetched).toMatchObject({ image: stored, byAnotherReplica: true });
    expect(fetchImage).not.toHaveBeenCalled();
    expect(locks.unlock).toHaveBeenCalledWith(lock);
  });
});
