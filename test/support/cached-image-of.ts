import {
  createCachedImage,
  sha256Hex,
} from '../../src/image/cache/cached-image';
import type { CachedImage } from '../../src/image/cache/cache-model';

export const JPEG_START = Buffer.from([0xff, 0xd8, 0xff, 0xe0]);
export const JPEG_END = Buffer.from([0xff, 0xd9]);

/** A complete (if tiny) JPEG: its start and end markers around `text`. */
export function completeJpeg(text: string): Buffer {
  return Buffer.concat([JPEG_START, Buffer.from(text), JPEG_END]);
}

/** A cached image of `key` whose body is `completeJpeg(text)`, fetched at `fetchedAt`. */
export function cachedImageOf(
  key: string,
  text: string,
  fetchedAt = Date.parse('2026-01-01T00:00:00Z'),
): CachedImage {
  const body = completeJpeg(text);
  return createCachedImage({
    key,
    body,
    contentType: 'image/jpeg',
    sha256: sha256Hex(body),
    fetchedAt,
    picsumId: '7',
    source: 'http://127.0.0.1/id/7/10/10.jpg',
  });
}
