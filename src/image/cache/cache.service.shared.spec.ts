import { Logger } from '@nestjs/common';
import { Test, type TestingModule } from '@nestjs/testing';
import { performance } from 'node:perf_hooks';
import { FakeClock } from '../../../test/support/fake-clock';
import { upstreamImage } from '../../../test/support/upstream-image';
import { DEFAULT_VARIANT } from '../../../test/support/variants';
import {
  describeWithRedis,
  useRedisServer,
} from '../../../test/support/redis-server';
import { cacheConfig } from '../../config/cache.config';
import { sharedCacheConfig } from '../../config/shared-cache.config';
import { upstreamConfig } from '../../config/upstream.config';
import { PicsumClient } from '../upstream/picsum.client';
import type { UpstreamImage } from '../upstream/upstream-reply';
import { CACHE_PROVIDERS } from './cache.providers';
import { CacheService } from './cache.service';
import { Clock } from './clock';
import { DiskStore } from './disk/disk-store';
import { CacheMetrics } from '../../metrics/cache-metrics';
import { MemoryTier } from './memory-tier';

const TTL_SECONDS = 600;

/**
 * CacheService with its shared tier on a real redis-server: several "replicas" (services with
 * their own memory tier and disk, one clock, one upstream) in one process. The disk is our
 * own class stood in for by an empty store; its own specs cover it.
 */
describeWithRedis()(`${CacheService.name} with a shared tier`, () => {
  const redis = useRedisServer();
  let clock: FakeClock;
  let fetchImage: jest.Mock<Promise<UpstreamImage>, []>;
  const modules: TestingModule[] = [];

  async function startReplica(): Promise<CacheService> {
    const moduleRef = await Test.createTestingModule({
      providers: [
        ...CACHE_PROVIDERS,
        CacheMetrics,
        { provide: PicsumClient, useValue: { fetchImage } },
        {
          provide: DiskStore,
          useValue: {
            name: 'disk',
            directory: '/cache',
            touch: jest.fn(),
            load: jest.fn().mockResolvedValue(undefined),
            save: jest.fn().mockResolvedValue(true),
            delete: jest.fn().mockResolvedValue(undefined),
          },
        },
        { provide: Clock, useValue: clock },
        {
          provide: cacheConfig.KEY,
          useValue: {
            ttlSeconds: TTL_SECONDS,
            staleIfErrorSeconds: undefined,
            memoryMaxBytes: 1024 * 1024,
            cleanupIntervalSeconds: 600,
          },
        },
        {
          provide: upstreamConfig.KEY,
          useValue: {
            timeoutMs: 1000,
            maxBytes: 10 * 1024 * 1024,
            retryAfterSeconds: 10,
            maxConcurrency: 8,
            queueTimeoutMs: 1000,
          },
        },
        {
          provide: sharedCacheConfig.KEY,
          useValue: {
            urls: [redis().url],
            cluster: false,
            displayName: redis().url,
            keyPrefix: 'spec:',
            commandTimeoutMs: 300,
            lockTtlMs: 3000,
            retentionSeconds: TTL_SECONDS + 86_400,
          },
        },
      ],
    }).compile();
    modules.push(moduleRef);
    await moduleRef.init();
    const subscribers = modules.length;
    // Notices reach a replica only once it listens.
    const deadline = performance.now() + 5000;
    while (
      !(await redis().cli('pubsub', 'numsub', 'spec:notices')).endsWith(
        String(subscribers),
      )
    ) {
      if (performance.now() > deadline) {
        throw new Error('the replica did not subscribe');
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    return moduleRef.get(CacheService);
  }

  beforeEach(() => {
    clock = new FakeClock();
    let nextId = 1;
    fetchImage = jest.fn(() => Promise.resolve(upstreamImage(nextId++)));
  });

  afterEach(async () => {
    for (const moduleRef of modules.splice(0)) {
      await moduleRef.close();
    }
    jest.restoreAllMocks();
  });

  it("serves another replica's image as a hit, with the freshness left since its fetch", async () => {
    const first = await startReplica();
    const second = await startReplica();
    const fetched = await first.getImage(DEFAULT_VARIANT);
    clock.advanceSeconds(100);

    const shared = await second.getImage(DEFAULT_VARIANT);
    const fromMemory = await second.getImage(DEFAULT_VARIANT);

    expect(shared.status).toBe('HIT');
    expect(shared.outcome).toEqual({ kind: 'hit', tier: 'shared' });
    expect(fromMemory.outcome).toEqual({ kind: 'hit', tier: 'memory' });
    expect(shared.image.etag).toBe(fetched.image.etag);
    expect(shared.image.fetchedAt).toBe(fetched.image.fetchedAt);
    expect(second.freshness(shared.image).ageSeconds).toBe(100);
    expect(fromMemory.image).toBe(shared.image);
    expect(fetchImage).toHaveBeenCalledTimes(1);
  });

  it('makes one fetch for concurrent misses on several replicas', async () => {
    fetchImage.mockImplementation(
      () =>
        new Promise((resolve) =>
          setTimeout(() => resolve(upstreamImage(7)), 300),
        ),
    );
    const replicas = await Promise.all([1, 2, 3].map(() => startReplica()));

    const lookups = await Promise.all(
      replicas.flatMap((replica) =>
        Array.from({ length: 5 }, () => replica.getImage(DEFAULT_VARIANT)),
      ),
    );

    expect(fetchImage).toHaveBeenCalledTimes(1);
    expect(new Set(lookups.map(({ image }) => image.etag)).size).toBe(1);
    // One request fetched; the other 14 waited, on its replica or on another.
    expect(
      lookups.filter(
        ({ outcome }) => outcome.kind === 'fetched' && !outcome.collapsed,
      ),
    ).toHaveLength(1);
    expect(
      lookups.filter(
        ({ outcome }) => outcome.kind === 'fetched' && outcome.collapsed,
      ),
    ).toHaveLength(14);
  });

  it('drops a fresh local copy when another replica stores a newer image, and serves that one', async () => {
    const first = await startReplica();
    const second = await startReplica();
    const old = await second.getImage(DEFAULT_VARIANT);
    // Redis restarted empty: the first replica does not find the second's image there.
    await redis().cli('flushall');
    clock.advanceSeconds(10);

    const renewed = await first.getImage(DEFAULT_VARIANT);
    const deadline = performance.now() + 2000;
    // The notice travels through Redis: wait until the second replica has dropped its copy.
    while ((await second.peek(DEFAULT_VARIANT))?.etag === old.image.etag) {
      if (performance.now() > deadline) {
        throw new Error('the older copy was not dropped');
      }
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    const taken = await second.getImage(DEFAULT_VARIANT);

    expect(renewed.status).toBe('MISS');
    expect(renewed.image.etag).not.toBe(old.image.etag);
    expect(taken).toEqual({
      status: 'HIT',
      image: expect.objectContaining({ etag: renewed.image.etag }) as unknown,
      // peek() above found it in the shared tier and copied it into memory.
      outcome: { kind: 'hit', tier: 'memory' },
    });
    expect(fetchImage).toHaveBeenCalledTimes(2);
  });

  it('does not ask the upstream again from a replica that takes the lock within the retry window of a failed fetch', async () => {
    jest.spyOn(Logger.prototype, 'warn').mockImplementation();
    const first = await startReplica();
    const fetched = await first.getImage(DEFAULT_VARIANT);
    clock.advanceSeconds(TTL_SECONDS + 60);
    fetchImage.mockRejectedValue(new Error('connect ECONNREFUSED'));
    const failed = await first.getImage(DEFAULT_VARIANT);
    // Started after the failure's notice went out: only the record in Redis tells it.
    const late = await startReplica();

    const served = await late.getImage(DEFAULT_VARIANT);
    const again = await late.getImage(DEFAULT_VARIANT);

    expect(failed.status).toBe('STALE');
    expect(served).toEqual({
      status: 'STALE',
      image: expect.objectContaining({ etag: fetched.image.etag }) as unknown,
      outcome: { kind: 'stale-on-error', status: 502 },
    });
    expect(again.outcome).toEqual({ kind: 'stale-while-failing' });
    expect(fetchImage).toHaveBeenCalledTimes(2);
  });

  it('serves the shared stale copy from a new replica while the upstream fails', async () => {
    jest.spyOn(Logger.prototype, 'warn').mockImplementation();
    const first = await startReplica();
    const fetched = await first.getImage(DEFAULT_VARIANT);
    clock.advanceSeconds(TTL_SECONDS + 60);
    fetchImage.mockRejectedValue(new Error('connect ECONNREFUSED'));
    const fresh = await startReplica();

    const { image, status } = await fresh.getImage(DEFAULT_VARIANT);

    expect(status).toBe('STALE');
    expect(image.etag).toBe(fetched.image.etag);
  });

  it('a refresh on one replica makes its image current on every other, whatever fetch time their copies carry', async () => {
    const refreshing = await startReplica();
    const other = await startReplica();
    await other.getImage(DEFAULT_VARIANT);
    // A copy this replica holds as fetched later than the refresh will be (a clock ahead).
    const ahead = (await other.getImage(DEFAULT_VARIANT)).image;
    modules[1]
      .get(MemoryTier)
      .save({ ...ahead, fetchedAt: clock.now() + 30_000 });

    const refreshed = await refreshing.refresh(DEFAULT_VARIANT);
    await waitUntil(
      () => modules[1].get(MemoryTier).peek('1200x1200') === undefined,
    );
    const served = await other.getImage(DEFAULT_VARIANT);

    expect(served.image.etag).toBe(refreshed.etag);
    expect(served.image.etag).not.toBe(ahead.etag);
  });

  it('a purge on one replica wins over a fetch another replica is running: that fetch stores nothing anywhere', async () => {
    let release = () => {};
    fetchImage.mockImplementationOnce(
      () =>
        new Promise((resolve) => {
          release = () => resolve(upstreamImage(1));
        }),
    );
    const purging = await startReplica();
    const fetching = await startReplica();
    const waiting = fetching.getImage(DEFAULT_VARIANT);
    await waitUntil(() => fetchImage.mock.calls.length === 1);

    await expect(purging.purge(null)).resolves.toBe(0);
    await new Promise((resolve) => setTimeout(resolve, 100)); // the notice
    release();
    const served = await waiting;
    const keys = await redis().cli('--raw', 'keys', 'spec:*:image');
    const next = await purging.getImage(DEFAULT_VARIANT);

    expect(served.image.picsumId).toBe('1');
    expect(keys.trim()).toBe('');
    expect(next.status).toBe('MISS');
    expect(fetchImage).toHaveBeenCalledTimes(2);
  });
});

async function waitUntil(condition: () => boolean): Promise<void> {
  const deadline = performance.now() + 5000;
  while (!condition()) {
    if (performance.now() > deadline) {
      throw new Error('condition not met within 5 s');
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
