import { BadRequestException } from '@nestjs/common';
import { ImageVariantPipe } from './image-variant.pipe';
import { variantKey } from './image-variant';

describe(ImageVariantPipe.name, () => {
  const pipe = new ImageVariantPipe({
    imageWidth: 1200,
    imageHeight: 900,
  } as ConstructorParameters<typeof ImageVariantPipe>[0]);
  const keyOf = (query: Record<string, unknown>) =>
    variantKey(pipe.transform(query));

  it('fills in the defaults, so no parameters and explicit defaults share a key', () => {
    expect(pipe.transform({})).toEqual({
      width: 1200,
      height: 900,
      grayscale: false,
      blur: 0,
      format: 'jpg',
    });
    expect(keyOf({})).toBe('1200x900');
    expect(
      keyOf({
        width: '1200',
        height: '900',
        grayscale: 'false',
        format: 'jpg',
      }),
    ).toBe('1200x900');
    expect(pipe.transform(undefined)).toEqual(pipe.transform({}));
  });

  it('gives one key per variant whatever the order of the parameters', () => {
    const a = keyOf({
      format: 'webp',
      blur: '2',
      grayscale: 'true',
      width: '800',
    });
    const b = keyOf({ width: '800', grayscale: '', blur: '2', format: 'webp' });

    expect(a).toBe('800x900-grayscale-blur2.webp');
    expect(b).toBe(a);
  });

  it.each([
    ['', true],
    ['true', true],
    ['1', true],
    ['yes', true],
    ['false', false],
    ['0', false],
  ])('reads grayscale=%j as Picsum does: %s', (value, grayscale) => {
    expect(pipe.transform({ grayscale: value }).grayscale).toBe(grayscale);
  });

  it("reads a bare blur as Picsum's default blur of 5", () => {
    expect(pipe.transform({ blur: '' }).blur).toBe(5);
    expect(keyOf({ blur: '' })).toBe(keyOf({ blur: '5' }));
  });

  it('tells variants apart', () => {
    const keys = [
      {},
      { width: '1199' },
      { height: '1200' },
      { grayscale: 'true' },
      { blur: '1' },
      { blur: '10' },
      { format: 'webp' },
    ].map(keyOf);

    expect(new Set(keys).size).toBe(keys.length);
  });

  it.each([
    [
      { width: '0' },
      'query parameter width="0" is not allowed: expected an integer from 1 to 5000',
    ],
    [{ width: '5001' }, 'width="5001"'],
    [
      { height: 'abc' },
      'height="abc" is not allowed: expected an integer from 1 to 5000',
    ],
    [{ width: '1.5' }, 'width="1.5"'],
    [{ width: ['100', '200'] }, 'expected a single integer from 1 to 5000'],
    [
      { blur: '0' },
      'blur="0" is not allowed: expected an integer from 1 to 10',
    ],
    [{ blur: '11' }, 'blur="11"'],
    [
      { grayscale: ['true', 'false'] },
      'grayscale=["true","false"] is not allowed: expected a single value',
    ],
    [{ format: 'png' }, 'format="png" is not allowed: expected jpg or webp'],
    [
      { size: '10' },
      'unknown query parameter size; allowed: width, height, grayscale, blur, format',
    ],
    [{ w: '1', h: '2' }, 'unknown query parameters w, h'],
  ])('refuses %j with a 400 that names the problem', (query, message) => {
    const transform = () => pipe.transform(query);

    expect(transform).toThrow(BadRequestException);
    expect(transform).toThrow(message);
  });
});
