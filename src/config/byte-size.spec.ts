import { parseByteSize } from './byte-size';

describe(parseByteSize.name, () => {
  it.each([
    ['0', 0],
    ['1048576', 1_048_576],
    ['500M', 500_000_000],
    ['64Mi', 67_108_864],
    ['512Mi', 536_870_912],
    ['1Gi', 1_073_741_824],
    ['1.5Gi', 1_610_612_736],
    ['2k', 2000],
    ['3Ki', 3072],
    [' 10Mi ', 10_485_760],
  ])('reads %j as %d bytes', (text, bytes) => {
    expect(parseByteSize(text)).toBe(bytes);
  });

  it.each(['', 'abc', '-1', '1MB', '1mi', '1 Mi', '0.5', '1e6', 'Mi', '1.5'])(
    'refuses %j',
    (text) => {
      expect(parseByteSize(text)).toBeUndefined();
    },
  );
});
