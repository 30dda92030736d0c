import type { CachedImage, Freshness } from './cache/cache-model';

/** The body of `GET /image/info`. */
export interface ImageInfo {
  /** The cache key of the variant, e.g. `1200x1200` or `800x600-grayscale-blur2.webp`. */
  readonly key: string;
  /** Picsum's id of the image, or `null` when the upstream did not send one. */
  readonly id: string | null;
  readonly contentType: string;
  readonly bytes: number;
  readonly etag: string;
  readonly fetchedAt: string;
  readonly expiresAt: string;
  readonly stale: boolean;
  /** The final upstream URL the image came from. */
  readonly source: string;
}

/** What `GET /image/info` says of `image`, whose freshness is `freshness`. */
export function imageInfoOf(
  image: CachedImage,
  freshness: Freshness,
): ImageInfo {
  return {
    key: image.key,
    id: image.picsumId ?? null,
    contentType: image.contentType,
    bytes: image.body.length,
    etag: image.etag,
    fetchedAt: new Date(image.fetchedAt).toISOString(),
    expiresAt: new Date(freshness.expiresAt).toISOString(),
    stale: freshness.stale,
    source: image.source,
  };
}
