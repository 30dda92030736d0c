import { ifNoneMatchMatches } from './conditional-request';

describe(ifNoneMatchMatches.name, () => {
  const etag = '"abc"';

  it.each([
    ['"abc"', true],
    ['W/"abc"', true],
    ['"x", "abc"', true],
    ['*', true],
    ['"abd"', false],
    ['abc', false],
    [undefined, false],
    ['', false],
  ])('If-None-Match %p matches: %p', (header, expected) => {
    expect(ifNoneMatchMatches(header, etag)).toBe(expected);
  });
});
