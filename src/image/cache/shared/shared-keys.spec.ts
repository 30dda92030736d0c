import { SharedKeys } from './shared-keys';

describe(SharedKeys.name, () => {
  const keys = new SharedKeys({ keyPrefix: 'release-a:' });

  it("keeps a variant's image, next image, lock and failure below the prefix, under one hash tag", () => {
    expect([
      keys.entry('300x200-grayscale'),
      keys.next('300x200-grayscale'),
      keys.lock('300x200-grayscale'),
      keys.failure('300x200-grayscale'),
    ]).toEqual([
      'release-a:{300x200-grayscale}:image',
      'release-a:{300x200-grayscale}:next',
      'release-a:{300x200-grayscale}:lock',
      'release-a:{300x200-grayscale}:failed',
    ]);
    expect(keys.channel).toBe('release-a:notices');
  });

  it('tells the variant of an image key, and nothing of any other key', () => {
    expect(keys.variantOfEntry('release-a:{300x200}:image')).toBe('300x200');
    expect(keys.variantOfEntry('release-a:{300x200}:lock')).toBeUndefined();
    expect(keys.variantOfEntry('release-b:{300x200}:image')).toBeUndefined();
  });

  it('escapes what SCAN would read as a pattern in the prefix', () => {
    const odd = new SharedKeys({ keyPrefix: 'a*b?[c]:' });

    expect(odd.everyEntry).toBe('a\\*b\\?\\[c\\]:{*}:image');
    expect(odd.everything).toBe('a\\*b\\?\\[c\\]:{*}:*');
  });
});
