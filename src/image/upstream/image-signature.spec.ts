import { encode } from 'jpeg-js';
import {
  declaredImageFormat,
  detectImageFormat,
  type ImageFormat,
} from './image-signature';

/** Real, decodable 1x1 images of each format (AVIF: its box structure, with an empty payload). */
const JPEG = Buffer.from(
  encode({ data: Buffer.alloc(4, 0x80), width: 1, height: 1 }, 80).data,
);
const PNG = Buffer.from(
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==',
  'base64',
);
const GIF = Buffer.from(
  'R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7',
  'base64',
);
const WEBP = Buffer.from(
  'UklGRhoAAABXRUJQVlA4TA0AAAAvAAAAEAcQERGIiP4HAA==',
  'base64',
);

function box(type: string, payload: Buffer): Buffer {
  const header = Buffer.alloc(8);
  header.writeUInt32BE(8 + payload.length, 0);
  header.write(type, 4, 'latin1');
  return Buffer.concat([header, payload]);
}

const AVIF = Buffer.concat([
  box('ftyp', Buffer.from('avif\0\0\0\0avifmif1miaf', 'latin1')),
  box('meta', Buffer.alloc(20)),
  box('mdat', Buffer.alloc(32, 7)),
]);
const AVIF_AS_COMPATIBLE_BRAND = Buffer.concat([
  box('ftyp', Buffer.from('mif1\0\0\0\0mif1avifmiaf', 'latin1')),
  box('meta', Buffer.alloc(8)),
  box('mdat', Buffer.alloc(8)),
]);

/** The stored XSS the signature check let through: bytes 4-11 spell `ftypavif`. */
const SVG_WITH_FTYP = Buffer.from(
  '<x  ftypavif="1" xmlns="http://www.w3.org/1999/xhtml"><script>alert(document.domain)</script></x>',
);

/** One complete image of each format. */
const COMPLETE_IMAGES: ReadonlyArray<readonly [ImageFormat, Buffer]> = [
  ['jpeg', JPEG],
  ['png', PNG],
  ['gif', GIF],
  ['webp', WEBP],
  ['avif', AVIF],
];

describe(detectImageFormat.name, () => {
  it.each([...COMPLETE_IMAGES, ['avif', AVIF_AS_COMPATIBLE_BRAND] as const])(
    'recognises a complete %s',
    (format, bytes) => {
      expect(detectImageFormat(bytes)).toBe(format);
    },
  );

  it.each([
    ['an HTML page', Buffer.from('<!DOCTYPE html><html></html>')],
    ['an SVG whose bytes 4-11 spell ftypavif', SVG_WITH_FTYP],
    ['an empty body', Buffer.alloc(0)],
    ['a lone JPEG start', Buffer.from([0xff, 0xd8, 0xff])],
    [
      'a JPEG start followed by text',
      Buffer.concat([JPEG.subarray(0, 3), Buffer.from('<script></script>')]),
    ],
    ['a GIF header followed by text', Buffer.from('GIF89a<script>x</script>')],
    [
      'a WebP with bytes after its RIFF data',
      Buffer.concat([WEBP, Buffer.from('<svg/>')]),
    ],
    [
      'an ISO-BMFF file that is not AVIF',
      Buffer.concat([
        box('ftyp', Buffer.from('mp42\0\0\0\0mp42isom', 'latin1')),
        box('mdat', Buffer.alloc(8)),
      ]),
    ],
    [
      'an AVIF whose ftyp box claims more bytes than the body has',
      Buffer.from('\x00\x00\x10\x00ftypavif\x00\x00\x00\x00avif', 'latin1'),
    ],
    [
      'an AVIF whose last box runs past the end',
      Buffer.concat([AVIF, box('free', Buffer.alloc(16)).subarray(0, 12)]),
    ],
  ])('refuses %s', (_, bytes) => {
    expect(detectImageFormat(bytes)).toBeUndefined();
  });

  it.each(COMPLETE_IMAGES)(
    'refuses a %s cut short at any length, as a connection closed early leaves it',
    (_, bytes) => {
      for (let length = 0; length < bytes.length; length++) {
        expect(detectImageFormat(bytes.subarray(0, length))).toBeUndefined();
      }
    },
  );
});

describe(declaredImageFormat.name, () => {
  it.each<[string, ImageFormat]>([
    ['image/jpeg', 'jpeg'],
    ['IMAGE/JPEG; charset=binary', 'jpeg'],
    ['image/jpg', 'jpeg'],
    ['image/png', 'png'],
    ['image/gif', 'gif'],
    ['image/webp', 'webp'],
    ['image/avif', 'avif'],
  ])('reads %j as %s', (contentType, format) => {
    expect(declaredImageFormat(contentType)).toBe(format);
  });

  it.each(['image/svg+xml', 'text/html', 'image/x-icon', '', 'constructor'])(
    'names no format for %j',
    (contentType) => {
      expect(declaredImageFormat(contentType)).toBeUndefined();
    },
  );
});
