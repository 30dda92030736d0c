import { isValidPicsumId } from './picsum-id';

describe(isValidPicsumId.name, () => {
  it.each(['0', '237', '1084', 'abc_DEF-9', 'x'.repeat(32)])(
    'passes %s on',
    (id) => {
      expect(isValidPicsumId(id)).toBe(true);
    },
  );

  it.each([
    '',
    'x'.repeat(33),
    '1 2',
    '1\r\nSet-Cookie: a=b',
    '<script>',
    '../1',
    '١٢',
  ])('refuses %j, which is no plain id', (id) => {
    expect(isValidPicsumId(id)).toBe(false);
  });
});
