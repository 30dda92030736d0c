import {
  BadGatewayException,
  GatewayTimeoutException,
  Logger,
} from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { FakeClock } from '../../test/support/fake-clock';
import { cacheConfig } from '../config/cache.config';
import { upstreamConfig } from '../config/upstream.config';
import { CacheService } from './cache.service';
import { Clock } from './clock';
import { DiskStore } from './disk-store';
import { PicsumClient, type UpstreamImage } from './picsum.client';

const SIZE = { width: 1200, height: 1200 };
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

describe(CacheService.name, () => {
  let service: CacheService;
  let clock: FakeClock;
  let fetchImage: jest.Mock<Promise<UpstreamImage>, []>;
  let disk: { directory: string; load: jest.Mock; save: jest.Mock };

  async function createService(
    staleIfErrorSeconds?: number,
  ): Promise<CacheService> {
    const moduleRef = await Test.createTestingModule({
      providers: [
        CacheService,
        { provide: PicsumClient, useValue: { fetchImage } },
        { provide: DiskStore, useValue: disk },
        { provide: Clock, useValue: clock },
        {
          provide: cacheConfig.KEY,
          useValue: {
            directory: '/cache',
            ttlSeconds: TTL_SECONDS,
            staleIfErrorSeconds,
          },
        },
        {
          provide: upstreamConfig.KEY,
          useValue: {
            imageWidth: 1200,
            imageHeight: 1200,
            retryAfterSeconds: RETRY_AFTER_SECONDS,
          },
        },
      ],
    }).compile();
    return moduleRef.get(CacheService);
  }

  beforeEach(async () => {
    clock = new FakeClock();
    let nextId = 1;
    fetchImage = jest.fn(() => Promise.resolve(upstreamImage(nextId++)));
    disk = {
      directory: '/cache',
      load: jest.fn().mockResolvedValue(undefined),
      save: jest.fn().mockResolvedValue(undefined),
    };
    service = await createService();
  });

  it('fetches, stores and serves on a cold cache', async () => {
    const { image, status } = await service.getImage(SIZE);

    expect(status).toBe('MISS');
    expect(image.picsumId).toBe('1');
    expect(image.etag).toMatch(/^"[0-9a-f]{32}"$/);
    expect(disk.save).toHaveBeenCalledWith(image);
    expect(fetchImage).toHaveBeenCalledTimes(1);
  });

  it('serves from the cache within the TTL without calling the upstream', async () => {
    const first = await service.getImage(SIZE);
    clock.advanceSeconds(TTL_SECONDS - 1);

    const second = await service.getImage(SIZE);

    expect(second).toEqual({ image: first.image, status: 'HIT' });
    expect(fetchImage).toHaveBeenCalledTimes(1);
  });

  it('fetches a new image once the TTL has passed', async () => {
    await service.getImage(SIZE);
    clock.advanceSeconds(TTL_SECONDS);

    const { image, status } = await service.getImage(SIZE);

    expect(status).toBe('MISS');
    expect(image.picsumId).toBe('2');
    expect(fetchImage).toHaveBeenCalledTimes(2);
  });

  it('serves what a previous process stored, measuring freshness from its original fetch', async () => {
    const stored = (await service.getImage(SIZE)).image;
    disk.load.mockResolvedValue(stored);
    const restarted = await createService();
    clock.advanceSeconds(100);

    const { image, status } = await restarted.getImage(SIZE);

    expect(status).toBe('HIT');
    expect(image).toBe(stored);
    expect(restarted.freshness(image).ageSeconds).toBe(100);
    expect(fetchImage).toHaveBeenCalledTimes(1);
  });

  it('reads the disk only once per key', async () => {
    await Promise.all([service.peek(SIZE), service.peek(SIZE)]);
    await service.getImage(SIZE);
    await service.peek(SIZE);

    expect(disk.load).toHaveBeenCalledTimes(1);
  });

  it('fetches again when the stored entry failed verification', async () => {
    // DiskStore.load answers undefined for a corrupt entry after removing it.
    disk.load.mockResolvedValue(undefined);

    const { status } = await service.getImage(SIZE);

    expect(status).toBe('MISS');
    expect(fetchImage).toHaveBeenCalledTimes(1);
  });

  it('serves the stale image when the upstream fails after expiry', async () => {
    const first = await service.getImage(SIZE);
    clock.advanceSeconds(TTL_SECONDS + 1);
    fetchImage.mockRejectedValueOnce(
      new BadGatewayException('Upstream answered 503'),
    );

    const { image, status } = await service.getImage(SIZE);

    expect(status).toBe('STALE');
    expect(image).toBe(first.image);
    expect(disk.save).toHaveBeenCalledTimes(1);
  });

  it('does not call a failing upstream again within UPSTREAM_RETRY_AFTER_SECONDS, then does', async () => {
    await service.getImage(SIZE);
    clock.advanceSeconds(TTL_SECONDS + 1);
    fetchImage.mockRejectedValueOnce(new GatewayTimeoutException('slow'));
    await service.getImage(SIZE);

    clock.advanceSeconds(RETRY_AFTER_SECONDS - 1);
    const during = await service.getImage(SIZE);
    clock.advanceSeconds(1);
    const after = await service.getImage(SIZE);

    expect(during.status).toBe('STALE');
    expect(after.status).toBe('MISS');
    expect(fetchImage).toHaveBeenCalledTimes(3);
  });

  it('bounds stale serving by CACHE_STALE_IF_ERROR_SECONDS', async () => {
    service = await createService(60);
    await service.getImage(SIZE);
    fetchImage.mockRejectedValue(
      new BadGatewayException('Upstream answered 503'),
    );

    clock.advanceSeconds(TTL_SECONDS + 59);
    const within = await service.getImage(SIZE);
    clock.advanceSeconds(RETRY_AFTER_SECONDS + 1);
    const beyond = service.getImage(SIZE);

    expect(within.status).toBe('STALE');
    await expect(beyond).rejects.toThrow('Upstream answered 503');
  });

  it('passes the upstream error on when nothing is cached, and fails fast inside the retry window', async () => {
    fetchImage.mockRejectedValue(
      new GatewayTimeoutException('Upstream did not answer'),
    );

    await expect(service.getImage(SIZE)).rejects.toThrow(
      GatewayTimeoutException,
    );
    await expect(service.getImage(SIZE)).rejects.toThrow(
      GatewayTimeoutException,
    );

    expect(fetchImage).toHaveBeenCalledTimes(1);
  });

  it('records a failed fetch once, however many requests waited for it', async () => {
    const logWarning = jest
      .spyOn(Logger.prototype, 'warn')
      .mockImplementation(() => undefined);
    fetchImage.mockRejectedValue(
      new BadGatewayException('Upstream answered 503'),
    );

    const requests = Array.from({ length: 20 }, () =>
      service.getImage(SIZE).catch((error: Error) => error),
    );
    const results = await Promise.all(requests);

    expect(
      results.every((result) => result instanceof BadGatewayException),
    ).toBe(true);
    expect(fetchImage).toHaveBeenCalledTimes(1);
    expect(logWarning).toHaveBeenCalledTimes(1);
    logWarning.mockRestore();
  });

  it('turns an unexpected error into a 502 rather than a 500', async () => {
    fetchImage.mockRejectedValue(new TypeError('boom'));

    await expect(service.getImage(SIZE)).rejects.toThrow(BadGatewayException);
  });

  it('makes exactly one upstream call for concurrent requests on a cold cache', async () => {
    let release!: () => void;
    fetchImage.mockImplementationOnce(
      () =>
        new Promise<UpstreamImage>(
          (resolve) => (release = () => resolve(upstreamImage(1))),
        ),
    );

    const requests = Array.from({ length: 50 }, () => service.getImage(SIZE));
    await new Promise((resolve) => setImmediate(resolve));
    release();
    const results = await Promise.all(requests);

    expect(fetchImage).toHaveBeenCalledTimes(1);
    expect(new Set(results.map((result) => result.image)).size).toBe(1);
  });

  it('serves the fetched image from memory when the disk cannot store it, and logs why', async () => {
    const logError = jest
      .spyOn(Logger.prototype, 'error')
      .mockImplementation(() => undefined);
    disk.save.mockRejectedValue(new Error('ENOSPC: no space left on device'));

    const first = await service.getImage(SIZE);
    const second = await service.getImage(SIZE);

    expect(first.status).toBe('MISS');
    expect(second.status).toBe('HIT');
    expect(logError).toHaveBeenCalledWith(expect.stringContaining('ENOSPC'));
    logError.mockRestore();
  });

  it('never fetches for peek', async () => {
    await expect(service.peek(SIZE)).resolves.toBeUndefined();

    expect(fetchImage).not.toHaveBeenCalled();
  });

  it('reports freshness the way HTTP caching headers need it', async () => {
    const { image } = await service.getImage(SIZE);
    clock.advanceSeconds(42.7);

    const freshness = service.freshness(image);

    expect(freshness).toEqual({
      stale: false,
      ttlSeconds: TTL_SECONDS,
      ageSeconds: 42,
      expiresAt: image.fetchedAt + TTL_SECONDS * 1000,
    });
  });
});
