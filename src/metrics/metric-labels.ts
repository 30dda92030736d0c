/*
 * The labels the service's metrics take: the vocabulary in which the rest of the service tells
 * `CacheMetrics` what happened. Labels, not the cache's own types, so src/metrics/ never imports
 * the domain it measures (an ESLint rule keeps it so).
 */

/** `result` of `image_cache_requests_total`: what an `/image` request was answered with. */
export type RequestResult = 'hit' | 'miss' | 'stale' | 'error';

/** `tier` of `image_cache_hits_total`. */
export type HitTier = 'memory' | 'disk' | 'shared';

/**
 * What an `/image` request answered with an image (200 or 304) is counted as: labels, not the
 * cache's own types, so this module never imports the domain it measures.
 */
export interface AnsweredRequest {
  readonly result: Exclude<RequestResult, 'error'>;
  /** The tier of a fresh hit (a prefetched image held in memory counts as a memory hit). */
  readonly hitTier?: HitTier;
  /** A miss that waited for a fetch another request, or another replica, started. */
  readonly collapsed?: boolean;
  /** An expired image served because the upstream failed. */
  readonly staleOnError?: boolean;
}

/** `action` of `image_cache_admin_actions_total`. */
export type AdminAction = 'refresh' | 'purge' | 'entries' | 'denied';
export const ADMIN_ACTIONS: readonly AdminAction[] = [
  'refresh',
  'purge',
  'entries',
  'denied',
];

/** `kind` of `image_cache_shared_rejected_total`: what was read from Redis and failed validation. */
export type SharedRejectedKind =
  'entry' | 'next' | 'notice' | 'failure' | 'lock';
export const SHARED_REJECTED_KINDS: readonly SharedRejectedKind[] = [
  'entry',
  'next',
  'notice',
  'failure',
  'lock',
];

/** The tiers with a byte budget of their own, as the tier gauges label them. */
export type BudgetedTier = 'memory' | 'disk';

/** What the tier gauges read at each scrape. */
export interface TierUsage {
  readonly bytes: number;
  readonly maxBytes: number;
  readonly entries: number;
  /** Entries evicted for space since start. */
  readonly evictions: number;
}
