import { detectImageFormat } from './image-signature';

describe(detectImageFormat.name, () => {
  it.each([
    ['jpeg', Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0, 0x10])],
    [
      'png',
      Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0]),
    ],
    ['gif', Buffer.from('GIF89a\x01\x00', 'latin1')],
    ['webp', Buffer.from('RIFF\x10\x00\x00\x00WEBPVP8 ', 'latin1')],
    [
      'avif',
      Buffer.from(
        '\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf',
        'latin1',
      ),
    ],
    [
      'avif',
      Buffer.from(
        '\x00\x00\x00\x1cftypmif1\x00\x00\x00\x00mif1avifmiaf',
        'latin1',
      ),
    ],
  ])('recognises %s', (format, bytes) => {
    expect(detectImageFormat(bytes)).toBe(format);
  });

  it.each([
    ['an HTML page', Buffer.from('<!DOCTYPE html><html></html>')],
    ['an empty body', Buffer.alloc(0)],
    ['a lone JPEG marker byte', Buffer.from([0xff, 0xd8])],
    [
      'an ISO-BMFF file that is not AVIF',
      Buffer.from('\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom', 'latin1'),
    ],
  ])('rejects %s', (_, bytes) => {
    expect(detectImageFormat(bytes)).toBeUndefined();
  });
});
