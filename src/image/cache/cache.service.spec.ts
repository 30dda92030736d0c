import {
  BadGatewayException,
  GatewayTimeoutException,
  Logger,
} from '@nestjs/common';
import { Test, type TestingModule } from '@nestjs/testing';
import { FakeClock } from '../../../test/support/fake-clock';
import { DEFAULT_VARIANT } from '../../../test/support/variants';
import { cacheConfig } from '../../config/cache.config';
import { sharedCacheConfig } from '../../config/shared-cache.config';
import { upstreamConfig } from '../../config/upstream.config';
import { CACHE_PROVIDERS } from './cache.providers';
import { CacheService } from './cache.service';
import { Clock } from './clock';
import type { StoredMetadata } from './disk/disk-entry-format';
import { DiskStore } from './disk/disk-store';
import { CacheMetrics } from '../../metrics/cache-metrics';
import { Prefetcher } from './prefetcher';
import { PicsumClient } from '../upstream/picsum.client';
import type { UpstreamImage } from '../upstream/upstream-reply';
import { UpstreamBusyException } from '../upstream/upstream-busy.exception';

const TTL_SECONDS = 600;
const RETRY_AFTER_SECONDS = 10;

function upstreamImage(id: number): UpstreamImage {
  return {
    body: Buffer.from([0xff, 0xd8, 0xff, id]),
    contentType: 'image/jpeg',
    picsumId: String(id),
    source: `http://upstream/id/${id}/1200/1200.jpg`,
  };
}

/** No Redis: the shared tier's own spec covers it against a real one. */
const sharedCacheOff = {
  urls: [],
  cluster: false,
  displayName: '',
  keyPrefix: 'image-cache:',
  commandTimeoutMs: 500,
  lockTtlMs: 5000,
  retentionSeconds: TTL_SECONDS,
};

/** The disk tier's methods CacheService calls, as mocks: nothing stored. */
function fakeDisk() {
  return {
    name: 'disk' as const,
    directory: '/cache',
    delete: jest.fn().mockResolvedValue(undefined),
    touch: jest.fn(),
    load: jest.fn().mockResolvedValue(undefined),
    save: jest.fn().mockResolvedValue(true),
    removeWhere: jest.fn().mockResolvedValue(0),
    reconcile: jest.fn().mockResolvedValue(undefined),
    has: jest.fn().mockReturnValue(false),
    entries: jest.fn().mockReturnValue([]),
    metadataOf: jest.fn().mockReturnValue(undefined),
  };
}

/** The test doubles and settings a CacheService is compiled with. */
interface ServiceSetup {
  readonly fetchImage: jest.Mock<Promise<UpstreamImage>, []>;
  readonly disk: object;
  readonly clock: FakeClock;
  readonly staleIfErrorSeconds?: number;
  readonly maxConcurrency?: number;
  readonly queueTimeoutMs?: number;
  readonly prefetchSeconds?: number;
  readonly staleWhileRevalidateSeconds?: number;
  readonly retryAfterSeconds?: number;
}

/** A CacheService on a real memory tier and limiter, with the upstream and disk replaced. */
/** The module `compileService` compiled last, to reach the units behind the façade. */
let compiled: TestingModule;

async function compileService(setup: ServiceSetup): Promise<CacheService> {
  const moduleRef = await Test.createTestingModule({
    providers: [
      ...CACHE_PROVIDERS,
      CacheMetrics,
      { provide: PicsumClient, useValue: { fetchImage: setup.fetchImage } },
      { provide: DiskStore, useValue: setup.disk },
      { provide: sharedCacheConfig.KEY, useValue: sharedCacheOff },
      { provide: Clock, useValue: setup.clock },
      {
        provide: cacheConfig.KEY,
        useValue: {
          directory: '/cache',
          ttlSeconds: TTL_SECONDS,
          staleIfErrorSeconds: setup.staleIfErrorSeconds,
          prefetchSeconds: setup.prefetchSeconds ?? 0,
          staleWhileRevalidateSeconds: setup.staleWhileRevalidateSeconds ?? 0,
          memoryMaxBytes: 1024 * 1024,
          cleanupIntervalSeconds: 600,
        },
      },
      {
        provide: upstreamConfig.KEY,
        useValue: {
          imageWidth: 1200,
          imageHeight: 1200,
          maxBytes: 10 * 1024 * 1024,
          retryAfterSeconds: setup.retryAfterSeconds ?? RETRY_AFTER_SECONDS,
          maxConcurrency: setup.maxConcurrency ?? 8,
          queueTimeoutMs: setup.queueTimeoutMs ?? 1000,
        },
      },
    ],
  }).compile();
  compiled = moduleRef;
  return moduleRef.get(CacheService);
}

describe(CacheService.name, () => {
  let service: CacheService;
  let clock: FakeClock;
  let fetchImage: jest.Mock<Promise<UpstreamImage>, []>;
  let disk: ReturnType<typeof fakeDisk>;

  function createService(
    staleIfErrorSeconds?: number,
    limits: { maxConcurrency?: number; queueTimeoutMs?: number } = {},
    windows: {
      prefetchSeconds?: number;
      staleWhileRevalidateSeconds?: number;
    } = {},
  ): Promise<CacheService> {
    return compileService({
      fetchImage,
      disk,
      clock,
      staleIfErrorSeconds,
      ...limits,
      ...windows,
    });
  }

  beforeEach(async () => {
    clock = new FakeClock();
    let nextId = 1;
    fetchImage = jest.fn(() => Promise.resolve(upstreamImage(nextId++)));
    disk = fakeDisk();
    service = await createService();
  });

  it('fetches, stores and serves on a cold cache', async () => {
    const { image, status } = await service.getImage(DEFAULT_VARIANT);

    expect(status).toBe('MISS');
    expect(image.picsumId).toBe('1');
    expect(image.etag).toMatch(/^"[0-9a-f]{32}"$/);
    expect(disk.save).toHaveBeenCalledWith(image);
    expect(fetchImage).toHaveBeenCalledTimes(1);
  });

  it('serves from the cache within the TTL without calling the upstream', async () => {
    const first = await service.getImage(DEFAULT_VARIANT);
    clock.advanceSeconds(TTL_SECONDS - 1);

    const second = await service.getImage(DEFAULT_VARIANT);

    expect(second).toEqual({
      image: first.image,
      status: 'HIT',
      outcome: { kind: 'hit', tier: 'memory' },
    });
    expect(fetchImage).toHaveBeenCalledTimes(1);
  });

  it('fetches a new image once the TTL has passed', async () => {
    await service.getImage(DEFAULT_VARIANT);
    clock.advanceSeconds(TTL_SECONDS);

    const { image, status } = await service.getImage(DEFAULT_VARIANT);

    expect(status).toBe('MISS');
    expect(image.picsumId).toBe('2');
    expect(fetchImage).toHaveBeenCalledTimes(2);
  });

  it('serves hits from memory, touching the disk index but never reading the disk', async () => {
    await service.getImage(DEFAULT_VARIANT);
    disk.load.mockClear();

    const { status } = await service.getImage(DEFAULT_VARIANT);

    expect(status).toBe('HIT');
    expect(disk.load).not.toHaveBeenCalled();
    expect(disk.touch).toHaveBeenCalledWith('1200x1200');
  });

  it('keeps variants apart: one entry, one fetch and one key each', async () => {
    const gray = { ...DEFAULT_VARIANT, grayscale: true };
    const webp = { ...DEFAULT_VARIANT, format: 'webp' as const };

    const images = [
      (await service.getImage(DEFAULT_VARIANT)).image,
      (await service.getImage(gray)).image,
      (await service.getImage(webp)).image,
    ];
    const again = await service.getImage(gray);

    expect(images.map((image) => image.key)).toEqual([
      '1200x1200',
      '1200x1200-grayscale',
      '1200x1200.webp',
    ]);
    expect(fetchImage.mock.calls).toEqual([[DEFAULT_VARIANT], [gray], [webp]]);
    expect(again).toEqual({
      image: images[1],
      status: 'HIT',
      outcome: { kind: 'hit', tier: 'memory' },
    });
  });

  it('serves what a previous process stored, measuring freshness from its original fetch', async () => {
    const stored = (await service.getImage(DEFAULT_VARIANT)).image;
    disk.load.mockResolvedValue(stored);
    const restarted = await createService();
    clock.advanceSeconds(100);

    const { image, status } = await restarted.getImage(DEFAULT_VARIANT);

    expect(status).toBe('HIT');
    expect(image).toBe(stored);
    expect(restarted.freshness(image).ageSeconds).toBe(100);
    expect(fetchImage).toHaveBeenCalledTimes(1);
  });

  it('promotes a disk hit into memory with the freshness it had left, not a new TTL', async () => {
    const stored = (await service.getImage(DEFAULT_VARIANT)).image;
    disk.load.mockResolvedValue(stored);
    const restarted = await createService();
    clock.advanceSeconds(TTL_SECONDS - 100);
    disk.load.mockClear();

    const promoted = await restarted.getImage(DEFAULT_VARIANT);
    clock.advanceSeconds(99);
    const stillFresh = await restarted.getImage(DEFAULT_VARIANT);
    clock.advanceSeconds(1);
    const expired = await restarted.getImage(DEFAULT_VARIANT);

    expect(promoted.status).toBe('HIT');
    expect(stillFresh.status).toBe('HIT');
    expect(expired.status).toBe('MISS');
    expect(disk.load).toHaveBeenCalledTimes(1);
  });

  it('does not read the disk past an expired image in memory, which is never older', async () => {
    await service.getImage(DEFAULT_VARIANT);
    clock.advanceSeconds(TTL_SECONDS);
    disk.load.mockClear();

    const { status } = await service.getImage(DEFAULT_VARIANT);

    expect(status).toBe('MISS');
    expect(disk.load).not.toHaveBeenCalled();
  });

  it('reads the disk only once per key', async () => {
    const stored = (await service.getImage(DEFAULT_VARIANT)).image;
    disk.load.mockResolvedValue(stored);
    service = await createService();
    disk.load.mockClear();

    await Promise.all([
      service.peek(DEFAULT_VARIANT),
      service.peek(DEFAULT_VARIANT),
    ]);
    await service.getImage(DEFAULT_VARIANT);
    await service.peek(DEFAULT_VARIANT);

    expect(disk.load).toHaveBeenCalledTimes(1);
  });

  it('fetches again when the stored entry failed verification', async () => {
    // DiskStore.load answers undefined for a corrupt entry after removing it.
    disk.load.mockResolvedValue(undefined);

    const { status } = await service.getImage(DEFAULT_VARIANT);

    expect(status).toBe('MISS');
    expect(fetchImage).toHaveBeenCalledTimes(1);
  });

  it('serves the stale image when the upstream fails after expiry', async () => {
    const first = await service.getImage(DEFAULT_VARIANT);
    clock.advanceSeconds(TTL_SECONDS + 1);
    fetchImage.mockRejectedValueOnce(
      new BadGatewayException('Upstream answered 503'),
    );

    const { image, status } = await service.getImage(DEFAULT_VARIANT);

    expect(status).toBe('STALE');
    expect(image).toBe(first.image);
    expect(disk.save).toHaveBeenCalledTimes(1);
  });

  it('does not call a failing upstream again within UPSTREAM_RETRY_AFTER_SECONDS, then does', async () => {
    await service.getImage(DEFAULT_VARIANT);
    clock.advanceSeconds(TTL_SECONDS + 1);
    fetchImage.mockRejectedValueOnce(new GatewayTimeoutException('slow'));
    await service.getImage(DEFAULT_VARIANT);

    clock.advanceSeconds(RETRY_AFTER_SECONDS - 1);
    const during = await service.getImage(DEFAULT_VARIANT);
    clock.advanceSeconds(1);
    const after = await service.getImage(DEFAULT_VARIANT);

    expect(during.status).toBe('STALE');
    expect(after.status).toBe('MISS');
    expect(fetchImage).toHaveBeenCalledTimes(3);
  });

  it('bounds stale serving by CACHE_STALE_IF_ERROR_SECONDS', async () => {
    service = await createService(60);
    await service.getImage(DEFAULT_VARIANT);
    fetchImage.mockRejectedValue(
      new BadGatewayException('Upstream answered 503'),
    );

    clock.advanceSeconds(TTL_SECONDS + 59);
    const within = await service.getImage(DEFAULT_VARIANT);
    clock.advanceSeconds(RETRY_AFTER_SECONDS + 1);
    const beyond = service.getImage(DEFAULT_VARIANT);

    expect(within.status).toBe('STALE');
    await expect(beyond).rejects.toThrow('Upstream answered 503');
  });

  it('passes the upstream error on when nothing is cached, and fails fast inside the retry window', async () => {
    fetchImage.mockRejectedValue(
      new GatewayTimeoutException('Upstream did not answer'),
    );

    await expect(service.getImage(DEFAULT_VARIANT)).rejects.toThrow(
      GatewayTimeoutException,
    );
    await expect(service.getImage(DEFAULT_VARIANT)).rejects.toThrow(
      GatewayTimeoutException,
    );

    expect(fetchImage).toHaveBeenCalledTimes(1);
  });

  it('records a failed fetch once, however many requests waited for it', async () => {
    const logRetryWindow = jest
      .spyOn(Logger.prototype, 'debug')
      .mockImplementation(() => undefined);
    fetchImage.mockRejectedValue(
      new BadGatewayException('Upstream answered 503'),
    );

    const requests = Array.from({ length: 20 }, () =>
      service.getImage(DEFAULT_VARIANT).catch((error: Error) => error),
    );
    const results = await Promise.all(requests);

    expect(
      results.every((result) => result instanceof BadGatewayException),
    ).toBe(true);
    expect(fetchImage).toHaveBeenCalledTimes(1);
    expect(logRetryWindow).toHaveBeenCalledTimes(1);
    logRetryWindow.mockRestore();
  });

  it('turns an unexpected error into a 502 rather than a 500', async () => {
    fetchImage.mockRejectedValue(new TypeError('boom'));

    await expect(service.getImage(DEFAULT_VARIANT)).rejects.toThrow(
      BadGatewayException,
    );
  });

  it('makes exactly one upstream call for concurrent requests on a cold cache', async () => {
    let release!: () => void;
    fetchImage.mockImplementationOnce(
      () =>
        new Promise<UpstreamImage>(
          (resolve) => (release = () => resolve(upstreamImage(1))),
        ),
    );

    const requests = Array.from({ length: 50 }, () =>
      service.getImage(DEFAULT_VARIANT),
    );
    await new Promise((resolve) => setImmediate(resolve));
    release();
    const results = await Promise.all(requests);

    expect(fetchImage).toHaveBeenCalledTimes(1);
    expect(new Set(results.map((result) => result.image)).size).toBe(1);
  });

  it('serves the fetched image from memory when the disk does not store it', async () => {
    disk.save.mockResolvedValue(false);

    const first = await service.getImage(DEFAULT_VARIANT);
    const second = await service.getImage(DEFAULT_VARIANT);

    expect(first.status).toBe('MISS');
    expect(second.status).toBe('HIT');
    expect(fetchImage).toHaveBeenCalledTimes(1);
  });

  it('reconciles the disk after removing what expired, and survives a failing reconciliation', async () => {
    const logError = jest
      .spyOn(Logger.prototype, 'error')
      .mockImplementation(() => undefined);
    disk.reconcile.mockRejectedValue(new Error('EIO: i/o error, scandir'));

    await service.maintain();

    expect(disk.reconcile).toHaveBeenCalledTimes(1);
    expect(logError).toHaveBeenCalledWith(expect.stringContaining('EIO'));
    logError.mockRestore();
  });

  it('never fetches for peek', async () => {
    await expect(service.peek(DEFAULT_VARIANT)).resolves.toBeUndefined();

    expect(fetchImage).not.toHaveBeenCalled();
  });

  it('reports freshness the way HTTP caching headers need it', async () => {
    const { image } = await service.getImage(DEFAULT_VARIANT);
    clock.advanceSeconds(42.7);

    const freshness = service.freshness(image);

    expect(freshness).toEqual({
      stale: false,
      ttlSeconds: TTL_SECONDS,
      ageSeconds: 42,
      expiresAt: image.fetchedAt + TTL_SECONDS * 1000,
      staleDirectives: '',
    });
  });

  it('names the stale windows it keeps in the directives Cache-Control adds (RFC 5861)', async () => {
    service = await createService(300, {}, { staleWhileRevalidateSeconds: 30 });
    const { image } = await service.getImage(DEFAULT_VARIANT);

    expect(service.freshness(image).staleDirectives).toBe(
      ', stale-while-revalidate=30, stale-if-error=300',
    );
  });

  it('caps concurrent fetches: past UPSTREAM_MAX_CONCURRENCY a miss waits, then gets a 503', async () => {
    service = await createService(undefined, {
      maxConcurrency: 2,
      queueTimeoutMs: 50,
    });
    const releases: (() => void)[] = [];
    fetchImage.mockImplementation(
      () =>
        new Promise<UpstreamImage>((resolve) =>
          releases.push(() => resolve(upstreamImage(releases.length))),
        ),
    );

    const running = [1, 2].map((width) =>
      service.getImage({ ...DEFAULT_VARIANT, width }),
    );
    const refused = service.getImage({ ...DEFAULT_VARIANT, width: 3 });
    await expect(refused).rejects.toThrow(UpstreamBusyException);
    const queued = service.getImage({ ...DEFAULT_VARIANT, width: 4 });
    releases[0]();
    releases.splice(0, 1);
    await new Promise((resolve) => setTimeout(resolve, 10));
    releases.forEach((release) => release());

    await expect(Promise.all(running)).resolves.toHaveLength(2);
    await expect(queued).resolves.toMatchObject({ status: 'MISS' });
    expect(fetchImage).toHaveBeenCalledTimes(3);
  });

  it('serves a hit while the fetch cap is saturated, and does not count saturation as an upstream failure', async () => {
    service = await createService(undefined, {
      maxConcurrency: 1,
      queueTimeoutMs: 20,
    });
    await service.getImage(DEFAULT_VARIANT);
    let release!: () => void;
    fetchImage.mockImplementationOnce(
      () =>
        new Promise<UpstreamImage>(
          (resolve) => (release = () => resolve(upstreamImage(9))),
        ),
    );
    const slow = service.getImage({ ...DEFAULT_VARIANT, width: 10 });

    await expect(service.getImage(DEFAULT_VARIANT)).resolves.toMatchObject({
      status: 'HIT',
    });
    await expect(
      service.getImage({ ...DEFAULT_VARIANT, width: 11 }),
    ).rejects.toThrow(UpstreamBusyException);
    release();
    await slow;
    await expect(
      service.getImage({ ...DEFAULT_VARIANT, width: 11 }),
    ).resolves.toMatchObject({ status: 'MISS' });
  });

  it('removes entries past their TTL and stale window from both tiers', async () => {
    service = await createService(60);
    const old = (await service.getImage(DEFAULT_VARIANT)).image;
    clock.advanceSeconds(TTL_SECONDS);
    await service.getImage({ ...DEFAULT_VARIANT, width: 2 });
    clock.advanceSeconds(60);

    await service.removeExpired();

    const [isExpired] = disk.removeWhere.mock.calls[0] as [
      (metadata: Pick<StoredMetadata, 'fetchedAt'>) => boolean,
    ];
    expect(
      isExpired({ fetchedAt: new Date(old.fetchedAt).toISOString() }),
    ).toBe(true);
    expect(isExpired({ fetchedAt: new Date(clock.now()).toISOString() })).toBe(
      false,
    );
    await expect(service.peek(DEFAULT_VARIANT)).resolves.toBeUndefined();
    await expect(
      service.peek({ ...DEFAULT_VARIANT, width: 2 }),
    ).resolves.toBeDefined();
  });

  it('keeps expired entries while no stale window bounds them: they may still be served', async () => {
    await service.getImage(DEFAULT_VARIANT);
    clock.advanceSeconds(TTL_SECONDS * 10);

    await expect(service.removeExpired()).resolves.toBe(0);

    expect(disk.removeWhere).not.toHaveBeenCalled();
    await expect(service.peek(DEFAULT_VARIANT)).resolves.toBeDefined();
  });
});

describe(`${CacheService.name} freshness without waiting`, () => {
  const PREFETCH_SECONDS = 60;
  const SWR_SECONDS = 30;
  let service: CacheService;
  let clock: FakeClock;
  let fetchImage: jest.Mock<Promise<UpstreamImage>, []>;
  /** Resolves the upstream's pending fetches, in order; until then they are in flight. */
  let pending: { resolve: () => void; reject: (error: Error) => void }[];
  let nextId: number;

  function createService(
    windows: { prefetchSeconds?: number; staleWhileRevalidateSeconds?: number },
    maxConcurrency = 8,
  ): Promise<CacheService> {
    return compileService({
      fetchImage,
      clock,
      maxConcurrency,
      queueTimeoutMs: 0,
      ...windows,
      disk: fakeDisk(),
    });
  }

  /** Lets background work (a prefetch, a revalidation) run as far as it can. */
  async function settle(): Promise<void> {
    for (let turn = 0; turn < 10; turn += 1) {
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  /** A request that must be answered without waiting for the upstream: it fails if a fetch is pending when it settles. */
  async function answeredAtOnce() {
    let answered = false;
    const lookup = service.getImage(DEFAULT_VARIANT).finally(() => {
      answered = true;
    });
    await settle();
    expect(answered).toBe(true);
    return lookup;
  }

  beforeEach(() => {
    clock = new FakeClock();
    pending = [];
    nextId = 1;
    fetchImage = jest.fn(
      () =>
        new Promise<UpstreamImage>((resolve, reject) => {
          const id = nextId++;
          pending.push({ resolve: () => resolve(upstreamImage(id)), reject });
        }),
    );
  });

  /** Serves the first image, whose fetch the test completes. */
  async function warm(): Promise<void> {
    const first = service.getImage(DEFAULT_VARIANT);
    await settle();
    pending.shift()?.resolve();
    expect((await first).image.picsumId).toBe('1');
  }

  it('prefetches the next image once the current one has less than the window left, and makes it current at expiry without any request waiting', async () => {
    service = await createService({ prefetchSeconds: PREFETCH_SECONDS });
    await warm();
    const seen: string[] = [];

    // A steady stream, one request every 10 s, across three TTLs; each fetch completes 5 s after it starts.
    for (let second = 10; second <= 3 * TTL_SECONDS; second += 10) {
      clock.advanceSeconds(10);
      const lookup = await answeredAtOnce();
      seen.push(lookup.image.picsumId ?? '');
      expect(lookup.status).toBe('HIT');
      if (pending.length > 0 && second % TTL_SECONDS !== 0) {
        pending.shift()?.resolve();
        await settle();
      }
    }

    // Exactly one image per TTL, each current for the whole TTL, and one fetch per TTL.
    const changes = seen.flatMap((id, index) =>
      index > 0 && id !== seen[index - 1] ? [index] : [],
    );
    expect(changes.map((index) => (index + 1) * 10)).toEqual([
      TTL_SECONDS,
      2 * TTL_SECONDS,
      3 * TTL_SECONDS,
    ]);
    expect(seen.at(-1)).toBe('4');
    expect(fetchImage).toHaveBeenCalledTimes(4);
  });

  it('says a promoted image is prefetched in Cache-Status, with the full TTL counted from the expiry', async () => {
    service = await createService({ prefetchSeconds: PREFETCH_SECONDS });
    await warm();
    clock.advanceSeconds(TTL_SECONDS - 30);
    await answeredAtOnce(); // starts the prefetch
    pending.shift()?.resolve();
    await settle();
    clock.advanceSeconds(30);

    const promoted = await answeredAtOnce();

    expect(promoted.outcome).toEqual({ kind: 'prefetched' });
    expect(promoted.image.picsumId).toBe('2');
    expect(service.freshness(promoted.image)).toMatchObject({
      ageSeconds: 0,
      stale: false,
    });
    expect((await answeredAtOnce()).outcome).toEqual({
      kind: 'hit',
      tier: 'memory',
    });
  });

  it('changes nothing when the prefetch fails: the image stays until expiry, then the miss path fetches', async () => {
    service = await createService({ prefetchSeconds: PREFETCH_SECONDS });
    await warm();
    clock.advanceSeconds(TTL_SECONDS - 30);
    await answeredAtOnce();
    pending.shift()?.reject(new BadGatewayException('upstream said 500'));
    await settle();

    // Within the window, hits do not ask the failing upstream again before the retry time.
    clock.advanceSeconds(5);
    expect((await answeredAtOnce()).image.picsumId).toBe('1');
    expect(fetchImage).toHaveBeenCalledTimes(2);

    clock.advanceSeconds(25);
    const atExpiry = service.getImage(DEFAULT_VARIANT);
    await settle();
    pending.shift()?.resolve();
    const missed = await atExpiry;

    expect(missed.status).toBe('MISS');
    expect(missed.image.picsumId).toBe('3');
  });

  it('a request at expiry waits for a prefetch still running rather than start a second fetch', async () => {
    service = await createService({ prefetchSeconds: PREFETCH_SECONDS });
    await warm();
    clock.advanceSeconds(TTL_SECONDS - 1);
    await answeredAtOnce();
    clock.advanceSeconds(1);

    const atExpiry = service.getImage(DEFAULT_VARIANT);
    await settle();
    pending.shift()?.resolve();

    expect((await atExpiry).image.picsumId).toBe('2');
    expect(fetchImage).toHaveBeenCalledTimes(2);
  });

  it('skips a prefetch while the fetch cap is saturated, and fetches nothing more for it', async () => {
    service = await createService({ prefetchSeconds: PREFETCH_SECONDS }, 1);
    await warm();
    // Another variant holds the only fetch slot.
    const other = service.getImage({ ...DEFAULT_VARIANT, grayscale: true });
    await settle();
    clock.advanceSeconds(TTL_SECONDS - 30);

    const hit = await answeredAtOnce();

    expect(hit.image.picsumId).toBe('1');
    expect(fetchImage).toHaveBeenCalledTimes(2);
    pending.shift()?.resolve();
    await other;
  });

  it('within the stale-while-revalidate window serves the stale image at once while one background fetch replaces it', async () => {
    service = await createService({ staleWhileRevalidateSeconds: SWR_SECONDS });
    await warm();
    clock.advanceSeconds(TTL_SECONDS + 5);

    const stale = await Promise.all([answeredAtOnce(), answeredAtOnce()]);
    expect(
      stale.map(({ status, outcome, image }) => [
        status,
        outcome,
        image.picsumId,
      ]),
    ).toEqual([
      ['STALE', { kind: 'revalidating' }, '1'],
      ['STALE', { kind: 'revalidating' }, '1'],
    ]);
    expect(fetchImage).toHaveBeenCalledTimes(2);
    expect(
      service.freshness(stale[0].image).ttlSeconds -
        service.freshness(stale[0].image).ageSeconds,
    ).toBe(-5);

    pending.shift()?.resolve();
    await settle();
    const fresh = await answeredAtOnce();

    expect(fresh).toMatchObject({ status: 'HIT' });
    expect(fresh.image.picsumId).toBe('2');
    expect(fetchImage).toHaveBeenCalledTimes(2);
  });

  it('serves stale at once while the fetch cap is saturated, and revalidates once a slot is free', async () => {
    service = await createService(
      { staleWhileRevalidateSeconds: SWR_SECONDS },
      1,
    );
    await warm();
    const other = service.getImage({ ...DEFAULT_VARIANT, grayscale: true });
    await settle();
    clock.advanceSeconds(TTL_SECONDS + 1);

    const whileBusy = await answeredAtOnce();
    expect(whileBusy.status).toBe('STALE');
    expect(fetchImage).toHaveBeenCalledTimes(2); // the revalidation found no slot
    pending.shift()?.resolve();
    await other;

    const again = await answeredAtOnce();
    expect(again.status).toBe('STALE');
    expect(fetchImage).toHaveBeenCalledTimes(3);
    pending.shift()?.resolve();
    await settle();
    expect((await answeredAtOnce()).status).toBe('HIT');
  });

  it('past the stale-while-revalidate window, a request waits for the fetch as before', async () => {
    service = await createService({ staleWhileRevalidateSeconds: SWR_SECONDS });
    await warm();
    clock.advanceSeconds(TTL_SECONDS + SWR_SECONDS);

    const miss = service.getImage(DEFAULT_VARIANT);
    await settle();
    pending.shift()?.resolve();

    expect((await miss).status).toBe('MISS');
  });

  it('a failed revalidation leaves the stale image served until the window ends', async () => {
    service = await createService({ staleWhileRevalidateSeconds: SWR_SECONDS });
    await warm();
    clock.advanceSeconds(TTL_SECONDS + 1);
    await answeredAtOnce();
    pending.shift()?.reject(new BadGatewayException('upstream said 500'));
    await settle();

    const again = await answeredAtOnce();

    expect(again.status).toBe('STALE');
    expect(again.image.picsumId).toBe('1');
    expect(fetchImage).toHaveBeenCalledTimes(2); // not again within the retry window
  });

  it.each([
    [RETRY_AFTER_SECONDS, 5, 5],
    [0, 200, 50],
  ])(
    'logs a failed prefetch once per variant and retry window (%i s), however many hits come',
    async (retryAfterSeconds, prefetches, lines) => {
      const warn = jest.spyOn(Logger.prototype, 'warn').mockImplementation();
      warn.mockClear(); // the spy of an earlier case, if any, keeps its calls
      service = await compileService({
        fetchImage,
        clock,
        queueTimeoutMs: 0,
        prefetchSeconds: PREFETCH_SECONDS,
        retryAfterSeconds,
        disk: fakeDisk(),
      });
      await warm();
      fetchImage.mockRejectedValue(
        new BadGatewayException('upstream said 500'),
      );
      clock.advanceSeconds(TTL_SECONDS - PREFETCH_SECONDS);

      // 200 hits, a quarter of a second apart: 50 s of the prefetch window.
      for (let hit = 0; hit < 200; hit += 1) {
        await answeredAtOnce();
        clock.advanceSeconds(0.25);
      }

      const prefetchLines = warn.mock.calls.filter(([message]) =>
        /Prefetching the next image of 1200x1200 failed/.test(String(message)),
      );
      expect(fetchImage).toHaveBeenCalledTimes(1 + prefetches);
      // With no retry window, at most one line a second.
      expect(prefetchLines).toHaveLength(lines);
    },
  );
});

describe(`${CacheService.name} purge and refresh`, () => {
  let service: CacheService;
  let clock: FakeClock;
  let fetchImage: jest.Mock<Promise<UpstreamImage>, []>;
  let disk: ReturnType<typeof fakeDisk>;
  /** The upstream's fetches in flight, in order; each completes when the test resolves it. */
  let pending: (() => void)[];
  let nextId: number;

  async function settle(): Promise<void> {
    for (let turn = 0; turn < 10; turn += 1) {
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  beforeEach(async () => {
    clock = new FakeClock();
    pending = [];
    nextId = 1;
    disk = fakeDisk();
    fetchImage = jest.fn(
      () =>
        new Promise<UpstreamImage>((resolve) => {
          const id = nextId++;
          pending.push(() => resolve(upstreamImage(id)));
        }),
    );
    service = await compileService({
      fetchImage,
      clock,
      disk,
      prefetchSeconds: 60,
    });
  });

  it('a purge during a fetch wins: the waiting request gets the image, no tier keeps it, and the next request fetches again', async () => {
    const waiting = service.getImage(DEFAULT_VARIANT);
    await settle();

    await expect(service.purge('1200x1200')).rejects.toThrow(
      'No image is cached for 1200x1200',
    );
    pending.shift()?.();
    const served = await waiting;
    const next = service.getImage(DEFAULT_VARIANT);
    await settle();
    pending.shift()?.();

    expect(served.image.picsumId).toBe('1');
    expect(disk.save).not.toHaveBeenCalledWith(served.image);
    expect((await next).status).toBe('MISS');
    expect((await next).image.picsumId).toBe('2');
  });

  it('a purge of everything during a prefetch wins: its image is not held, and not made current at expiry', async () => {
    const first = service.getImage(DEFAULT_VARIANT);
    await settle();
    pending.shift()?.();
    await first;
    clock.advanceSeconds(TTL_SECONDS - 30);
    await service.getImage(DEFAULT_VARIANT); // starts the prefetch
    await settle();
    expect(pending).toHaveLength(1);

    await service.purge(null);
    pending.shift()?.();
    await settle();
    clock.advanceSeconds(30);
    const afterPurge = service.getImage(DEFAULT_VARIANT);
    await settle();
    pending.shift()?.();

    expect((await afterPurge).status).toBe('MISS');
    expect((await afterPurge).image.picsumId).toBe('3');
    expect(compiled.get(Prefetcher).held('1200x1200')).toBeUndefined();
  });

  it('a refresh wins over the fetch already running: that one stores nothing, the refreshed image is current', async () => {
    const waiting = service.getImage(DEFAULT_VARIANT);
    await settle();

    const refreshing = service.refresh(DEFAULT_VARIANT);
    await settle();
    pending.shift()?.(); // the fetch the request started
    await settle();
    pending.shift()?.(); // the refresh's own
    const refreshed = await refreshing;
    const after = await service.getImage(DEFAULT_VARIANT);

    expect((await waiting).image.picsumId).toBe('1');
    expect(refreshed.picsumId).toBe('2');
    expect(after).toMatchObject({ status: 'HIT' });
    expect(after.image.picsumId).toBe('2');
    expect(disk.save).toHaveBeenCalledTimes(1);
  });
});
