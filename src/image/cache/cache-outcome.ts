import type { TierName } from './cache-tier';

/** The name this cache gives itself in `Cache-Status` (RFC 9211). */
export const CACHE_NAME = 'image-cache';

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

/**
 * The `Cache-Status` field value for `outcome`, whose image has `ttlSeconds` of freshness
 * left (negative once expired).
 */
export function cacheStatusOf(
  outcome: CacheOutcome,
  ttlSeconds: number,
): string {
  switch (outcome.kind) {
    case 'hit':
      return `${CACHE_NAME}; hit; ttl=${ttlSeconds}; detail=${outcome.tier}`;
    case 'fetched':
      return `${CACHE_NAME}; fwd=${outcome.forward}; fwd-status=200; stored${outcome.collapsed ? '; collapsed' : ''}`;
    case 'stale-on-error':
      return `${CACHE_NAME}; fwd=stale; fwd-status=${outcome.status}; ttl=${ttlSeconds}`;
    case 'stale-while-failing':
      return `${CACHE_NAME}; hit; ttl=${ttlSeconds}; detail=upstream-failing`;
    case 'prefetched':
      return `${CACHE_NAME}; hit; ttl=${ttlSeconds}; detail=prefetched`;
    case 'revalidating':
      return `${CACHE_NAME}; fwd=stale; ttl=${ttlSeconds}; detail=revalidating`;
  }
}

/**
 * The `Cache-Status` field value of an error reply: nothing could be served; the upstream
 * answered `status` (or, where it sent none, this service picked it).
 */
export function cacheStatusOfError(status: number): string {
  return `${CACHE_NAME}; fwd=uri-miss; fwd-status=${status}`;
}
