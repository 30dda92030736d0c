import { TerminusModule } from '@nestjs/terminus';
import { Test } from '@nestjs/testing';
import { DiskStore } from '../image/disk-store';
import { CacheStorageHealthIndicator } from './cache-storage.health';

describe(CacheStorageHealthIndicator.name, () => {
  const probe = jest.fn<Promise<void>, []>();
  let indicator: CacheStorageHealthIndicator;

  beforeEach(async () => {
    probe.mockReset();
    const moduleRef = await Test.createTestingModule({
      imports: [TerminusModule],
      providers: [
        CacheStorageHealthIndicator,
        { provide: DiskStore, useValue: { directory: '/app/storage', probe } },
      ],
    }).compile();
    indicator = moduleRef.get(CacheStorageHealthIndicator);
  });

  it('is up when the cache directory takes a write', async () => {
    probe.mockResolvedValue(undefined);

    await expect(indicator.isHealthy('cacheStorage')).resolves.toEqual({
      cacheStorage: { status: 'up', directory: '/app/storage' },
    });
  });

  it('is down, with the reason, when it does not', async () => {
    probe.mockRejectedValue(new Error('EROFS: read-only file system'));

    await expect(indicator.isHealthy('cacheStorage')).resolves.toEqual({
      cacheStorage: {
        status: 'down',
        directory: '/app/storage',
        message: 'EROFS: read-only file system',
      },
    });
  });
});
