import { NotFoundException, ServiceUnavailableException } from '@nestjs/common';
import { cachedImageOf } from '../../../test/support/cached-image-of';
import { DEFAULT_VARIANT } from '../../../test/support/variants';
import { CacheAdmin } from './cache-admin';
import type { DiskStore } from './disk/disk-store';
import type { FailureMemory } from './failure-memory';
import type { FetchCoordinator } from './fetch-coordinator';
import { LocalVariants } from './local-variants';
import { MemoryTier } from './memory-tier';
import type { Prefetcher } from './prefetcher';
import { PurgeGenerations } from './purge-generations';
import type { SharedScan } from './shared/shared-scan';

describe(CacheAdmin.name, () => {
  let admin: CacheAdmin;
  let memory: MemoryTier;
  let generations: PurgeGenerations;
  const disk = {
    has: jest.fn().mockReturnValue(false),
    delete: jest.fn().mockResolvedValue(undefined),
  };
  const shared = {
    enabled: true,
    purge: jest.fn().mockResolvedValue([]),
  };
  const failures = { forget: jest.fn(), forgetAll: jest.fn() };
  const prefetcher = {
    forget: jest.fn().mockReturnValue(false),
    forgetRetries: jest.fn(),
    dropEverywhere: jest.fn().mockResolvedValue(undefined),
  };
  const fetches = { fetchReplacing: jest.fn() };

  beforeEach(() => {
    jest.clearAllMocks();
    const variants = new LocalVariants();
    memory = new MemoryTier(
      { memoryMaxBytes: 64 * 1024 * 1024 } as ConstructorParameters<
        typeof MemoryTier
      >[0],
      variants,
    );
    generations = new PurgeGenerations();
    admin = new CacheAdmin(
      memory,
      disk as unknown as DiskStore,
      shared as unknown as SharedScan,
      variants,
      failures as unknown as FailureMemory,
      prefetcher as unknown as Prefetcher,
      fetches as unknown as FetchCoordinator,
      generations,
    );
  });

  it('purges one variant from memory, disk and Redis, and wins over the fetches of it running', async () => {
    memory.save(cachedImageOf('300x200', 'one'));
    const mark = generations.mark();

    await expect(admin.purge('300x200')).resolves.toBe(1);

    expect(memory.load('300x200')).toBeUndefined();
    expect(disk.delete).toHaveBeenCalledWith('300x200');
    expect(shared.purge).toHaveBeenCalledWith('300x200');
    expect(generations.purgedSince('300x200', mark)).toBe(true);
  });

  it('answers 404 for a variant nothing holds', async () => {
    await expect(admin.purge('300x200')).rejects.toThrow(NotFoundException);
  });

  it('purges every variant a page at a time, counting those Redis alone held once', async () => {
    for (let variant = 1; variant <= 1200; variant += 1) {
      memory.save(cachedImageOf(`${variant}x1`, 'tiny'));
    }
    shared.purge.mockResolvedValueOnce(['1x1', 'only-in-redis']);

    const removed = await admin.purge(null);

    expect(removed).toBe(1201);
    expect(memory.size).toBe(0);
    expect(failures.forgetAll).toHaveBeenCalled();
    expect(prefetcher.forgetRetries).toHaveBeenCalled();
  });

  it('says so when Redis failed, having purged this replica', async () => {
    memory.save(cachedImageOf('300x200', 'one'));
    shared.purge.mockRejectedValueOnce(new Error('connection refused'));

    await expect(admin.purge('300x200')).rejects.toThrow(
      ServiceUnavailableException,
    );
    expect(memory.load('300x200')).toBeUndefined();
  });

  it('refreshes: the running fetches and prefetches store nothing, the held next image goes, a new image replaces every copy', async () => {
    const image = cachedImageOf('1200x1200', 'new');
    fetches.fetchReplacing.mockResolvedValue(image);
    const mark = generations.mark();

    await expect(admin.refresh(DEFAULT_VARIANT, 'req-1')).resolves.toBe(image);

    expect(generations.purgedSince('1200x1200', mark)).toBe(true);
    expect(prefetcher.dropEverywhere).toHaveBeenCalledWith('1200x1200');
    expect(fetches.fetchReplacing).toHaveBeenCalledWith(
      '1200x1200',
      DEFAULT_VARIANT,
      'req-1',
    );
  });
});
