export type ImageFormat = 'jpeg' | 'png' | 'gif' | 'webp' | 'avif';

/** The only Content-Type each format is ever served with, whatever the upstream called it. */
export const CONTENT_TYPES: Readonly<Record<ImageFormat, string>> = {
  jpeg: 'image/jpeg',
  png: 'image/png',
  gif: 'image/gif',
  webp: 'image/webp',
  avif: 'image/avif',
};

/** Media types an upstream may declare for each format (`image/jpg` is a common misspelling). */
const DECLARED_TYPES: Readonly<Record<string, ImageFormat>> = {
  'image/jpeg': 'jpeg',
  'image/jpg': 'jpeg',
  'image/pjpeg': 'jpeg',
  'image/png': 'png',
  'image/gif': 'gif',
  'image/webp': 'webp',
  'image/avif': 'avif',
};

const PNG_SIGNATURE = Buffer.from([
  0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a,
]);
/** The last chunk of every PNG: length 0, type IEND, and its fixed CRC. */
const PNG_IEND = Buffer.from([
  0, 0, 0, 0, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
]);
const AVIF_BRANDS = new Set(['avif', 'avis']);
/** An `ftyp` box holds its size and type (8 bytes), a major brand and a minor version (8 more). */
const FTYP_MIN_BYTES = 16;

/**
 * Recognises a complete JPEG, PNG, GIF, WebP or AVIF image by its structure at both ends: the
 * signature at the start and the trailer (or, for WebP and AVIF, the container sizes) at the
 * end. A text body (HTML, SVG) cannot pass, and neither can an image cut short, whether the
 * upstream announced its length or simply closed the connection early.
 *
 * Written here rather than taken from a library: `file-type` and `image-type` are ESM-only and
 * look at the leading bytes only, which is what let an SVG through before.
 */
export function detectImageFormat(body: Buffer): ImageFormat | undefined {
  if (isJpeg(body)) {
    return 'jpeg';
  }
  if (isPng(body)) {
    return 'png';
  }
  if (isGif(body)) {
    return 'gif';
  }
  if (isWebp(body)) {
    return 'webp';
  }
  if (isAvif(body)) {
    return 'avif';
  }
  return undefined;
}

/**
 * The format a `Content-Type` header declares, or `undefined` when it names none of the five
 * (SVG, HTML, anything else). Parameters and case are ignored.
 */
export function declaredImageFormat(
  contentType: string,
): ImageFormat | undefined {
  const mediaType = contentType.split(';', 1)[0].trim().toLowerCase();
  return Object.hasOwn(DECLARED_TYPES, mediaType)
    ? DECLARED_TYPES[mediaType]
    : undefined;
}

function isJpeg(body: Buffer): boolean {
  return (
    body.length >= 5 &&
    body[0] === 0xff &&
    body[1] === 0xd8 &&
    body[2] === 0xff &&
    body[body.length - 2] === 0xff &&
    body[body.length - 1] === 0xd9
  );
}

function isPng(body: Buffer): boolean {
  return (
    body.length >= PNG_SIGNATURE.length + PNG_IEND.length &&
    body.subarray(0, PNG_SIGNATURE.length).equals(PNG_SIGNATURE) &&
    body.subarray(body.length - PNG_IEND.length).equals(PNG_IEND)
  );
}

function isGif(body: Buffer): boolean {
  const header = body.toString('latin1', 0, 6);
  return (
    body.length > 6 &&
    (header === 'GIF87a' || header === 'GIF89a') &&
    body[body.length - 1] === 0x3b
  );
}

/** `RIFF`, the size of everything after the first 8 bytes, then `WEBP`. */
function isWebp(body: Buffer): boolean {
  return (
    body.length >= 12 &&
    body.toString('latin1', 0, 4) === 'RIFF' &&
    body.toString('latin1', 8, 12) === 'WEBP' &&
    body.readUInt32LE(4) === body.length - 8
  );
}

/**
 * An ISO-BMFF file that starts with a well-formed `ftyp` box whose major or a compatible brand
 * is AVIF, and whose top-level boxes tile the body exactly and include the `meta` and `mdat`
 * boxes every AVIF has, so one cut short, even at a box boundary, is refused.
 */
function isAvif(body: Buffer): boolean {
  if (
    body.length < FTYP_MIN_BYTES ||
    body.toString('latin1', 4, 8) !== 'ftyp'
  ) {
    return false;
  }
  const ftypBytes = body.readUInt32BE(0);
  if (
    ftypBytes < FTYP_MIN_BYTES ||
    ftypBytes > body.length ||
    ftypBytes % 4 !== 0
  ) {
    return false;
  }
  let hasAvifBrand = false;
  for (let offset = 8; offset < ftypBytes; offset += 4) {
    // offset 12 holds the minor version, not a brand
    if (
      offset !== 12 &&
      AVIF_BRANDS.has(body.toString('latin1', offset, offset + 4))
    ) {
      hasAvifBrand = true;
    }
  }
  if (!hasAvifBrand) {
    return false;
  }
  const types = topLevelBoxes(body, ftypBytes);
  return types !== undefined && types.has('meta') && types.has('mdat');
}

/**
 * The types of the top-level boxes from `offset` on, or `undefined` unless the last one ends
 * exactly at the body's end.
 */
function topLevelBoxes(body: Buffer, offset: number): Set<string> | undefined {
  const types = new Set<string>();
  let position = offset;
  while (position < body.length) {
    if (position + 8 > body.length) {
      return undefined;
    }
    let size = body.readUInt32BE(position);
    types.add(body.toString('latin1', position + 4, position + 8));
    if (size === 0) {
      return types; // "extends to the end of the file", allowed for the last box
    }
    if (size === 1) {
      if (position + 16 > body.length) {
        return undefined;
      }
      const large = body.readBigUInt64BE(position + 8);
      if (large < 16n || large > BigInt(body.length)) {
        return undefined;
      }
      size = Number(large);
    } else if (size < 8) {
      return undefined;
    }
    position += size;
  }
  return position === body.length ? types : undefined;
}
