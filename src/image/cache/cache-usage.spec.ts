import { cachedImageOf } from '../../../test/support/cached-image-of';
import { FakeClock } from '../../../test/support/fake-clock';
import { CacheUsage } from './cache-usage';
import type { StoredMetadata } from './disk/disk-entry-format';
import type { DiskStore } from './disk/disk-store';
import { FreshnessPolicy } from './freshness-policy';
import { LocalVariants } from './local-variants';
import { MemoryTier } from './memory-tier';
import type { SharedTier } from './shared/shared-tier';

describe(CacheUsage.name, () => {
  let clock: FakeClock;
  let variants: LocalVariants;
  let memory: MemoryTier;
  const onDisk: Partial<StoredMetadata>[] = [];
  const disk = {
    usedBytes: 8192,
    maxBytes: 1 << 20,
    entryCount: 2,
    evictions: 3,
    recent: (limit: number) => onDisk.slice(0, limit),
    status: jest.fn(),
  };

  function usage(shared: Partial<SharedTier>): CacheUsage {
    return new CacheUsage(
      memory,
      disk as unknown as DiskStore,
      shared as SharedTier,
      variants,
      new FreshnessPolicy({
        ttlSeconds: 600,
        staleWhileRevalidateSeconds: 0,
        prefetchSeconds: 0,
      }),
      clock,
    );
  }

  beforeEach(() => {
    clock = new FakeClock();
    variants = new LocalVariants();
    memory = new MemoryTier(
      { memoryMaxBytes: 1 << 20 } as ConstructorParameters<
        typeof MemoryTier
      >[0],
      variants,
    );
    onDisk.splice(0);
  });

  it('lists the most recently used variants in memory, then on disk, each once, up to the limit', () => {
    const fetchedAt = clock.now() - 700_000;
    memory.save(cachedImageOf('a', 'a'));
    memory.save(cachedImageOf('b', 'b'));
    onDisk.push(
      { key: 'b', bytes: 10, fetchedAt: new Date(fetchedAt).toISOString() },
      { key: 'c', bytes: 20, fetchedAt: new Date(fetchedAt).toISOString() },
      { key: 'd', bytes: 30, fetchedAt: new Date(fetchedAt).toISOString() },
    );

    const listed = usage({ enabled: false }).recentVariants(3);

    expect(listed.map((variant) => variant.key)).toEqual(['b', 'a', 'c']);
    expect(listed[2]).toEqual({
      key: 'c',
      bytes: 20,
      expiresAt: new Date(fetchedAt + 600_000).toISOString(),
      stale: true,
    });
  });

  it('reads the tiers’ use and the count of variants without listing them', () => {
    memory.save(cachedImageOf('a', 'a'));

    const view = usage({ enabled: false });

    expect(view.memory()).toMatchObject({ entries: 1, maxBytes: 1 << 20 });
    expect(view.disk()).toEqual({
      bytes: 8192,
      maxBytes: 1 << 20,
      entries: 2,
      evictions: 3,
    });
    expect(view.variantCount).toBe(1);
  });

  it('says whether the shared tier is on, and why it cannot be used', () => {
    expect(usage({ enabled: false }).shared()).toEqual({ enabled: false });
    expect(
      usage({
        enabled: true,
        problem: 'not connected',
      }).shared(),
    ).toEqual({ enabled: true, problem: 'not connected' });
  });
});
