import { createCachedImage } from './cached-image';
import { LocalVariants } from './local-variants';
import { MemoryTier } from './memory-tier';
import type { CachedImage } from './cache-model';

const KIB = 1024;

function imageOf(key: string, bytes: number): CachedImage {
  return createCachedImage({
    key,
    body: Buffer.alloc(bytes, 1),
    contentType: 'image/jpeg',
    sha256: '0'.repeat(64),
    fetchedAt: 0,
    source: 'http://upstream/',
  });
}

function tierOf(
  memoryMaxBytes: number,
  variants = new LocalVariants(),
): MemoryTier {
  return new MemoryTier(
    { memoryMaxBytes } as ConstructorParameters<typeof MemoryTier>[0],
    variants,
  );
}

describe(MemoryTier.name, () => {
  it('stays within its byte budget, evicting the least recently used', () => {
    const tier = tierOf(3 * (100 * KIB + 2 * KIB));
    for (const key of ['a', 'b', 'c']) {
      tier.save(imageOf(key, 100 * KIB));
    }
    tier.load('a');

    tier.save(imageOf('d', 100 * KIB));

    expect(['a', 'b', 'c', 'd'].filter((key) => tier.load(key))).toEqual([
      'a',
      'c',
      'd',
    ]);
    expect(tier.bytes).toBeLessThanOrEqual(3 * (100 * KIB + 2 * KIB));
  });

  it("counts the disk index's records against its budget, evicting bodies to make room for them", () => {
    const variants = new LocalVariants();
    const tier = tierOf(4 * (100 * KIB + 2 * KIB), variants);
    for (const key of ['a', 'b', 'c', 'd']) {
      tier.save(imageOf(key, 100 * KIB));
    }
    // The disk tier indexes 150 images: 150 KiB of records.
    for (let record = 0; record < 150; record++) {
      variants.added(`on-disk-${record}`, 'disk');
    }

    tier.save(imageOf('e', 100 * KIB));

    expect(tier.diskRecordBytes).toBe(150 * KIB);
    expect(['a', 'b', 'c', 'd', 'e'].filter((key) => tier.peek(key))).toEqual([
      'd',
      'e',
    ]);
    expect(tier.bytes + tier.diskRecordBytes).toBeLessThanOrEqual(
      tier.maxBytes,
    );
  });

  it('counts an entry by its body plus a fixed overhead', () => {
    const tier = tierOf(10 * 1024 * KIB);
    const image = imageOf('key', 5000);

    tier.save(image);

    expect(tier.bytes).toBe(MemoryTier.sizeOf(image));
    expect(MemoryTier.sizeOf(image)).toBeGreaterThan(5000);
    expect(MemoryTier.sizeOf(image)).toBeLessThan(5000 + 2 * KIB);
  });

  it('skips an image larger than the whole budget instead of emptying itself for it', () => {
    const tier = tierOf(200 * KIB);
    tier.save(imageOf('small', 10 * KIB));

    tier.save(imageOf('huge', 300 * KIB));

    expect(tier.load('huge')).toBeUndefined();
    expect(tier.load('small')).toBeDefined();
  });

  it('removes the entries a predicate picks without counting the scan as a use', () => {
    const tier = tierOf(3 * (100 * KIB + 2 * KIB));
    for (const key of ['a', 'b', 'c']) {
      tier.save(imageOf(key, 100 * KIB));
    }

    const removed = tier.removeWhere((image) => image.key === 'b');
    tier.save(imageOf('d', 100 * KIB));
    tier.save(imageOf('e', 100 * KIB));

    expect(removed).toBe(1);
    expect(['a', 'b', 'c', 'd', 'e'].filter((key) => tier.load(key))).toEqual([
      'c',
      'd',
      'e',
    ]);
  });

  it('holds nothing with a budget of 0', () => {
    const tier = tierOf(0);

    tier.save(imageOf('a', 10));

    expect(tier.load('a')).toBeUndefined();
    expect(tier.size).toBe(0);
  });

  it('keeps the headers precomputed with the body', () => {
    const tier = tierOf(1024 * KIB);
    tier.save(imageOf('a', 10));

    expect(tier.load('a')?.bodyHeaders).toEqual({
      'content-type': 'image/jpeg',
      'content-length': '10',
    });
  });

  it('tells LocalVariants of every entry it takes and every entry that leaves, evicted or deleted', () => {
    const variants = new LocalVariants();
    const tier = tierOf(2 * (100 * KIB + 2 * KIB), variants);

    tier.save(imageOf('a', 100 * KIB));
    tier.save(imageOf('b', 100 * KIB));
    tier.save(imageOf('b', 100 * KIB));
    const afterSaves = variants.page(undefined, 10);
    tier.save(imageOf('c', 100 * KIB));
    const afterEviction = variants.page(undefined, 10);
    tier.delete('b');
    tier.save(imageOf('huge', 300 * KIB));

    expect(afterSaves).toEqual(['a', 'b']);
    expect(afterEviction).toEqual(['b', 'c']);
    expect(variants.page(undefined, 10)).toEqual(['c']);
    expect(variants.count).toBe(1);
  });

  it('lists the most recently used images first, without counting that as a use', () => {
    const tier = tierOf(10 * (100 * KIB + 2 * KIB));
    for (const key of ['a', 'b', 'c']) {
      tier.save(imageOf(key, 100 * KIB));
    }
    tier.load('a');

    expect(tier.recent(2).map((image) => image.key)).toEqual(['a', 'c']);
    expect(tier.recent(2).map((image) => image.key)).toEqual(['a', 'c']);
  });
});
