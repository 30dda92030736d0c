export type ImageFormat = 'jpeg' | 'png' | 'gif' | 'webp' | 'avif';

const PNG_SIGNATURE = Buffer.from([
  0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a,
]);
const AVIF_BRANDS = new Set(['avif', 'avis']);

/**
 * Recognises the formats Picsum-compatible servers send by their leading bytes, so that an
 * HTML error page or a truncated start labelled `image/jpeg` is never stored as an image.
 */
export function detectImageFormat(body: Buffer): ImageFormat | undefined {
  if (
    body.length >= 3 &&
    body[0] === 0xff &&
    body[1] === 0xd8 &&
    body[2] === 0xff
  ) {
    return 'jpeg';
  }
  if (body.subarray(0, 8).equals(PNG_SIGNATURE)) {
    return 'png';
  }
  const header = body.toString('latin1', 0, 6);
  if (header === 'GIF87a' || header === 'GIF89a') {
    return 'gif';
  }
  if (
    body.toString('latin1', 0, 4) === 'RIFF' &&
    body.toString('latin1', 8, 12) === 'WEBP'
  ) {
    return 'webp';
  }
  if (isAvif(body)) {
    return 'avif';
  }
  return undefined;
}

/** An ISO-BMFF `ftyp` box whose major or a compatible brand is AVIF. */
function isAvif(body: Buffer): boolean {
  if (body.length < 16 || body.toString('latin1', 4, 8) !== 'ftyp') {
    return false;
  }
  const boxEnd = Math.min(body.readUInt32BE(0), body.length);
  for (let offset = 8; offset + 4 <= boxEnd; offset += 4) {
    // offset 12 holds the minor version, not a brand
    if (
      offset !== 12 &&
      AVIF_BRANDS.has(body.toString('latin1', offset, offset + 4))
    ) {
      return true;
    }
  }
  return false;
}
