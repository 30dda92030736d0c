import { LocalVariants } from './local-variants';

describe(LocalVariants.name, () => {
  let variants: LocalVariants;

  beforeEach(() => {
    variants = new LocalVariants();
  });

  it('counts a variant once, however many places hold its current image', () => {
    variants.added('a', 'memory');
    variants.added('a', 'disk');
    variants.added('b', 'disk');

    expect(variants.count).toBe(2);

    variants.removed('a', 'memory');
    expect(variants.count).toBe(2);
    variants.removed('a', 'disk');
    expect(variants.count).toBe(1);
    expect(variants.has('a')).toBe(false);
  });

  it('counts the variants each place holds', () => {
    variants.added('a', 'memory');
    variants.added('a', 'disk');
    variants.added('a', 'disk');
    variants.added('b', 'disk');
    variants.added('c', 'next');
    variants.removed('b', 'disk');

    expect(variants.countIn('memory')).toBe(1);
    expect(variants.countIn('disk')).toBe(1);
    expect(variants.countIn('next')).toBe(1);
  });

  it('lists a variant with only a prefetched next image, without counting it', () => {
    variants.added('a', 'next');

    expect(variants.has('a')).toBe(true);
    expect(variants.count).toBe(0);
    expect(variants.page(undefined, 10)).toEqual(['a']);
  });

  it('ignores the removal of a place that did not hold the variant', () => {
    variants.removed('never', 'disk');
    variants.added('a', 'disk');
    variants.removed('a', 'memory');

    expect(variants.count).toBe(1);
  });

  it('pages variants in key order from after a key, neither repeating nor hiding any when others come and go between pages', () => {
    for (const key of ['d', 'b', 'a', 'c', 'e']) {
      variants.added(key, 'disk');
    }

    const first = variants.page(undefined, 2);
    variants.removed('a', 'disk');
    variants.added('bb', 'memory');
    const second = variants.page(first[first.length - 1], 2);
    const third = variants.page(second[second.length - 1], 2);

    expect(first).toEqual(['a', 'b']);
    expect(second).toEqual(['bb', 'c']);
    expect(third).toEqual(['d', 'e']);
    expect(variants.page('e', 2)).toEqual([]);
  });
});
