import { createHash } from 'node:crypto';
import { CONTENT_TYPES, detectImageFormat } from '../upstream/image-signature';
import { isValidPicsumId } from '../upstream/picsum-id';
import type { UpstreamImage } from '../upstream/upstream-reply';
import type { CachedImage } from './cache-model';

/** Builds the in-memory entry, deriving what is served from the stored facts once. */
export function createCachedImage(
  stored: Omit<
    CachedImage,
    'etag' | 'lastModified' | 'validatorHeaders' | 'bodyHeaders'
  >,
): CachedImage {
  const etag = `"${stored.sha256.slice(0, 32)}"`;
  const lastModified = new Date(stored.fetchedAt).toUTCString();
  return {
    ...stored,
    etag,
    lastModified,
    validatorHeaders: {
      etag,
      'last-modified': lastModified,
      ...(stored.picsumId ? { 'x-picsum-id': stored.picsumId } : {}),
    },
    bodyHeaders: {
      'content-type': stored.contentType,
      'content-length': String(stored.body.length),
    },
  };
}

/** The entry of an image the upstream sent, current from `fetchedAt` on. */
export function cachedImageFromUpstream(
  key: string,
  fetched: UpstreamImage,
  fetchedAt: number,
): CachedImage {
  return createCachedImage({
    key,
    body: fetched.body,
    contentType: fetched.contentType,
    sha256: sha256Hex(fetched.body),
    fetchedAt,
    source: fetched.source,
    ...(fetched.picsumId ? { picsumId: fetched.picsumId } : {}),
  });
}

export function sha256Hex(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** What a tier that keeps images outside this process stores of one, besides the body. */
export interface StoredFacts {
  readonly key: string;
  readonly body: Buffer;
  /** The SHA-256 stored with the body, which the body must still have. */
  readonly sha256: string;
  readonly fetchedAt: number;
  readonly source: string;
  readonly picsumId?: string;
}

/**
 * Rebuilds an image a tier read back from storage it does not trust to be intact (a disk,
 * another process): the body must still have its SHA-256 and be a complete image. It is
 * served with the type of what the bytes are, whatever was stored beside them. Returns why
 * when the entry must be discarded.
 */
export function restoreCachedImage(
  stored: StoredFacts,
): CachedImage | { readonly invalid: string } {
  const sha256 = sha256Hex(stored.body);
  if (sha256 !== stored.sha256) {
    return {
      invalid: `body with SHA-256 ${sha256} does not match the stored ${stored.sha256}`,
    };
  }
  const format = detectImageFormat(stored.body);
  if (format === undefined) {
    return {
      invalid: 'body is not a complete JPEG, PNG, WebP, GIF or AVIF image',
    };
  }
  return createCachedImage({
    key: stored.key,
    body: stored.body,
    contentType: CONTENT_TYPES[format],
    sha256,
    fetchedAt: stored.fetchedAt,
    source: stored.source,
    ...(stored.picsumId && isValidPicsumId(stored.picsumId)
      ? { picsumId: stored.picsumId }
      : {}),
  });
}
