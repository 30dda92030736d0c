import { cachedImageOf } from '../../../test/support/cached-image-of';
import { FakeClock } from '../../../test/support/fake-clock';
import type { CachedImage } from './cache-model';
import type { DiskStore } from './disk/disk-store';
import { FreshnessPolicy } from './freshness-policy';
import { LocalVariants } from './local-variants';
import { MemoryTier } from './memory-tier';
import { PurgeGenerations } from './purge-generations';
import type { SharedTier } from './shared/shared-tier';
import { TierChain } from './tier-chain';

const TTL_SECONDS = 600;

describe(TierChain.name, () => {
  let clock: FakeClock;
  let memory: MemoryTier;
  let generations: PurgeGenerations;
  const disk = {
    name: 'disk' as const,
    load: jest.fn<Promise<CachedImage | undefined>, [string]>(),
    save: jest.fn().mockResolvedValue(true),
    delete: jest.fn().mockResolvedValue(undefined),
  };
  const shared = {
    name: 'shared' as const,
    enabled: true,
    load: jest.fn<Promise<CachedImage | undefined>, [string]>(),
    save: jest.fn().mockResolvedValue(true),
    delete: jest.fn().mockResolvedValue(undefined),
  };

  function chain(sharedEnabled = true): TierChain {
    return new TierChain(
      memory,
      disk as unknown as DiskStore,
      { ...shared, enabled: sharedEnabled } as unknown as SharedTier,
      new FreshnessPolicy({
        ttlSeconds: TTL_SECONDS,
        staleWhileRevalidateSeconds: 0,
        prefetchSeconds: 0,
      }),
      generations,
      clock,
    );
  }

  beforeEach(() => {
    jest.clearAllMocks();
    disk.load.mockResolvedValue(undefined);
    shared.load.mockResolvedValue(undefined);
    clock = new FakeClock();
    memory = new MemoryTier(
      { memoryMaxBytes: 1024 * 1024 } as ConstructorParameters<
        typeof MemoryTier
      >[0],
      new LocalVariants(),
    );
    generations = new PurgeGenerations();
  });

  it('copies what the disk holds into memory with its original fetch time, and stops at the first fresh image', async () => {
    const onDisk = cachedImageOf('1200x1200', 'disk', clock.now() - 100_000);
    disk.load.mockResolvedValue(onDisk);

    const found = await chain().findBelowMemory('1200x1200', undefined);

    expect(found).toEqual({ image: onDisk, tier: 'disk' });
    expect(memory.load('1200x1200')?.fetchedAt).toBe(onDisk.fetchedAt);
    expect(shared.load).not.toHaveBeenCalled();
  });

  it("past an expired image in memory asks only the shared tier, and copies another replica's newer image to memory and disk", async () => {
    const expired = cachedImageOf('1200x1200', 'old', clock.now() - 700_000);
    const newer = cachedImageOf('1200x1200', 'new', clock.now() - 1000);
    shared.load.mockResolvedValue(newer);

    const found = await chain().findBelowMemory('1200x1200', expired);

    expect(found).toEqual({ image: newer, tier: 'shared' });
    expect(disk.load).not.toHaveBeenCalled();
    expect(memory.load('1200x1200')).toBe(newer);
    expect(disk.save).toHaveBeenCalledWith(newer);
  });

  it('returns the newest stale image when no tier holds a fresh one', async () => {
    const older = cachedImageOf('1200x1200', 'older', clock.now() - 900_000);
    const newer = cachedImageOf('1200x1200', 'newer', clock.now() - 800_000);
    disk.load.mockResolvedValue(older);
    shared.load.mockResolvedValue(newer);

    const found = await chain().findBelowMemory('1200x1200', undefined);

    expect(found).toEqual({ image: newer, tier: 'shared' });
  });

  it('serves what it found during a purge to the request, but keeps it nowhere', async () => {
    const onDisk = cachedImageOf('1200x1200', 'disk', clock.now());
    let release: (image: CachedImage) => void = () => undefined;
    disk.load.mockReturnValue(
      new Promise((resolve) => (release = (image) => resolve(image))),
    );

    const finding = chain().findBelowMemory('1200x1200', undefined);
    generations.purged('1200x1200');
    release(onDisk);

    expect((await finding)?.image).toBe(onDisk);
    expect(memory.load('1200x1200')).toBeUndefined();
  });

  it('reads each tier once for any number of concurrent lookups of a key', async () => {
    disk.load.mockResolvedValue(
      cachedImageOf('1200x1200', 'disk', clock.now()),
    );
    const tiers = chain();

    await Promise.all([
      tiers.findBelowMemory('1200x1200', undefined),
      tiers.findBelowMemory('1200x1200', undefined),
    ]);

    expect(disk.load).toHaveBeenCalledTimes(1);
  });

  it('stores a new image in memory at once and in the lower tiers, replacing every copy when asked', async () => {
    const image = cachedImageOf('1200x1200', 'new', clock.now());

    const storing = chain().store(image, { replaces: true });
    const inMemoryAtOnce = memory.load('1200x1200');
    await storing;

    expect(inMemoryAtOnce).toBe(image);
    expect(disk.save).toHaveBeenCalledWith(image);
    expect(shared.save).toHaveBeenCalledWith(image, { replaces: true });
  });

  it('drops local copies older than another replica stored, or all of them', () => {
    const image = cachedImageOf('1200x1200', 'mine', clock.now());
    memory.save(image);

    chain().dropLocal('1200x1200', image.fetchedAt);
    const keptAsNewEnough = memory.load('1200x1200');
    chain().dropLocal('1200x1200');

    expect(keptAsNewEnough).toBe(image);
    expect(memory.load('1200x1200')).toBeUndefined();
    expect(disk.delete).toHaveBeenLastCalledWith('1200x1200', Infinity);
  });
});
