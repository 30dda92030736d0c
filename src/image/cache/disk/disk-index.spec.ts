import { cachedImageOf } from '../../../../test/support/cached-image-of';
import { LocalVariants } from '../local-variants';
import { type DiskEntry, encodeEntry } from './disk-entry-format';
import { DiskIndex } from './disk-index';

function entryOf(key: string, text = key): DiskEntry {
  const { metadata, diskBytes } = encodeEntry(cachedImageOf(key, text));
  return { metadata, diskBytes };
}

describe(DiskIndex.name, () => {
  let variants: LocalVariants;
  let index: DiskIndex;

  beforeEach(() => {
    variants = new LocalVariants();
    index = new DiskIndex(1024 * 1024, variants);
  });

  it('counts entries and their bytes, and tells the variants of every one that comes and goes', () => {
    index.put('a', entryOf('a'));
    index.put('b', entryOf('b'));

    expect(index.size).toBe(2);
    expect(index.usedBytes).toBe(4 * 4096);
    expect(variants.count).toBe(2);

    index.drop('a');
    expect(variants.count).toBe(1);
    expect(index.has('a')).toBe(false);
  });

  it('replaces an entry, returning the one it replaced, without the variant leaving', () => {
    const first = entryOf('a', 'first');
    index.put('a', first);

    expect(index.put('a', entryOf('a', 'second'))).toBe(first);
    expect(variants.count).toBe(1);
  });

  it('drops an entry only while it is the one given, so a newer one stays', () => {
    const old = entryOf('a', 'old');
    index.put('a', old);
    const newer = entryOf('a', 'newer');
    index.put('a', newer);

    index.drop('a', old);

    expect(index.peek('a')).toBe(newer);
  });

  it('names the least recently used entry a use did not refresh, past the keys it must skip', () => {
    index.put('a', entryOf('a'));
    index.put('b', entryOf('b'));
    index.put('c', entryOf('c'));
    index.use('a');
    index.peek('b');

    expect(index.leastRecentlyUsed(() => false)?.[0]).toBe('b');
    expect(index.leastRecentlyUsed((key) => key === 'b')?.[0]).toBe('c');
    expect(index.leastRecentlyUsed(() => true)).toBeUndefined();
  });

  it('lists metadata least recently used first, and the most recent few without counting a use', () => {
    for (const key of ['a', 'b', 'c']) {
      index.put(key, entryOf(key));
    }

    expect(index.metadata().map((metadata) => metadata.key)).toEqual([
      'a',
      'b',
      'c',
    ]);
    expect(index.recent(2).map((metadata) => metadata.key)).toEqual(['c', 'b']);
    expect(index.leastRecentlyUsed(() => false)?.[0]).toBe('a');
  });
});
