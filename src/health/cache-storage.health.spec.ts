import { TerminusModule } from '@nestjs/terminus';
import { Test } from '@nestjs/testing';
import { CacheUsage } from '../image/cache/cache-usage';
import type { DiskStatus } from '../image/cache/disk/disk-health';
import { CacheStorageHealthIndicator } from './cache-storage.health';

describe(CacheStorageHealthIndicator.name, () => {
  const status = jest.fn<Promise<DiskStatus>, []>();
  let indicator: CacheStorageHealthIndicator;

  beforeEach(async () => {
    status.mockReset();
    const moduleRef = await Test.createTestingModule({
      imports: [TerminusModule],
      providers: [
        CacheStorageHealthIndicator,
        { provide: CacheUsage, useValue: { diskStatus: status } },
      ],
    }).compile();
    indicator = moduleRef.get(CacheStorageHealthIndicator);
  });

  it('is up when the cache directory takes writes', async () => {
    status.mockResolvedValue({ readable: true, writable: true });

    await expect(indicator.isHealthy('cacheStorage')).resolves.toEqual({
      cacheStorage: { status: 'up', writable: true },
    });
  });

  it('stays up, saying the kind of error (not the path), while stored images can be read but nothing can be written', async () => {
    status.mockResolvedValue({
      readable: true,
      writable: false,
      reason: "EROFS: read-only file system, open '/app/storage/probe'",
    });

    await expect(indicator.isHealthy('cacheStorage')).resolves.toEqual({
      cacheStorage: { status: 'up', writable: false, problem: 'EROFS' },
    });
  });

  it('is down, with the kind of error and not the path, when the directory cannot be read', async () => {
    status.mockResolvedValue({
      readable: false,
      writable: false,
      reason: "ENOENT: no such file or directory, scandir '/app/storage'",
    });

    await expect(indicator.isHealthy('cacheStorage')).resolves.toEqual({
      cacheStorage: { status: 'down', writable: false, problem: 'ENOENT' },
    });
  });
});
