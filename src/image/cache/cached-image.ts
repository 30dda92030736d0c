/** One stored image as the cache keeps it in memory: the body plus everything needed to serve it. */
export interface CachedImage {
  /** What the image was requested as, e.g. `1200x1200`. */
  readonly key: string;
  readonly body: Buffer;
  readonly contentType: string;
  /** Hex SHA-256 of the body, computed once when the image was fetched and verified on load. */
  readonly sha256: string;
  /** Strong entity tag derived from `sha256`. */
  readonly etag: string;
  /** Epoch milliseconds of the upstream fetch; freshness is measured from here, across restarts. */
  readonly fetchedAt: number;
  /** `fetchedAt` as an HTTP date, for `Last-Modified`. */
  readonly lastModified: string;
  /** The upstream's `Picsum-ID` header, when it sent one. */
  readonly picsumId?: string;
  /** The final upstream URL after redirects. */
  readonly source: string;
  /** Headers of every reply for this image, 304s included, computed once: ETag, Last-Modified, X-Picsum-Id. */
  readonly validatorHeaders: Readonly<Record<string, string>>;
  /** Headers of a reply that carries the body, computed once: Content-Type, Content-Length. */
  readonly bodyHeaders: Readonly<Record<string, string>>;
}

/** Whether a reply was served from a fresh entry, a new fetch, or a stale entry the upstream could not replace. */
export type CacheStatus = 'HIT' | 'MISS' | 'STALE';

export interface CacheLookup {
  readonly image: CachedImage;
  readonly status: CacheStatus;
}

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
