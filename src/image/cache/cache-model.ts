/**
 * The cache's model: what it stores, what a lookup finds, what it did. Types only, importing
 * nothing, so every part of the cache (and what serves or measures it) can use them without
 * importing any other part.
 */

/** The tiers in the order a lookup asks them. */
export type TierName = 'memory' | 'disk' | 'shared';

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
  /** What the cache did, for `Cache-Status`. */
  readonly outcome: CacheOutcome;
}

/** What the cache did for one request, in the terms of RFC 9211's `Cache-Status`. */
export type CacheOutcome =
  /** A fresh image, from the tier that held it. */
  | { readonly kind: 'hit'; readonly tier: TierName }
  /**
   * A new image, fetched because nothing was stored (`uri-miss`) or what was stored had
   * expired (`stale`); `collapsed` when the request waited for a fetch another request, or
   * another replica, started.
   */
  | {
      readonly kind: 'fetched';
      readonly forward: 'uri-miss' | 'stale';
      readonly collapsed: boolean;
    }
  /**
   * An expired image, served because the fetch this request made or waited for failed:
   * `status` is what the upstream answered, or the status this service picked where none came
   * back (502, 504 for a timeout).
   */
  | { readonly kind: 'stale-on-error'; readonly status: number }
  /** An expired image, served without asking the upstream, which failed within the retry window. */
  | { readonly kind: 'stale-while-failing' }
  /** A prefetched image that became current at the expiry of the one before, without waiting for the upstream. */
  | { readonly kind: 'prefetched' }
  /** An expired image within the stale-while-revalidate window, served while a background fetch replaces it. */
  | { readonly kind: 'revalidating' };

/** Freshness of an entry at one moment, in the units HTTP caching headers use. */
export interface Freshness {
  readonly stale: boolean;
  readonly expiresAt: number;
  readonly ageSeconds: number;
  readonly ttlSeconds: number;
  /** The RFC 5861 directives `Cache-Control` adds to max-age, e.g. `, stale-while-revalidate=30`. */
  readonly staleDirectives: string;
}
