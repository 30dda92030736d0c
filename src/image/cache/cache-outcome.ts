import type { AnsweredRequest } from '../../metrics/metric-labels';
import type { CacheOutcome, CacheStatus, TierName } from './cache-model';

/** The name this cache gives itself in `Cache-Status` (RFC 9211). */
export const CACHE_NAME = 'image-cache';

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

/** The labels of a fresh hit, made once per tier: a hit in memory allocates nothing to be counted. */
const HIT_LABELS: Readonly<Record<TierName, AnsweredRequest>> = {
  memory: { result: 'hit', hitTier: 'memory' },
  disk: { result: 'hit', hitTier: 'disk' },
  shared: { result: 'hit', hitTier: 'shared' },
};
const RESULT_OF_STATUS = {
  HIT: 'hit',
  MISS: 'miss',
  STALE: 'stale',
} as const satisfies Record<CacheStatus, AnsweredRequest['result']>;

/** What the metrics count a request answered with `outcome` (as `status`) as. */
export function answeredRequestOf(
  status: CacheStatus,
  outcome: CacheOutcome,
): AnsweredRequest {
  switch (outcome.kind) {
    case 'hit':
      return status === 'HIT'
        ? HIT_LABELS[outcome.tier]
        : { result: RESULT_OF_STATUS[status] };
    case 'prefetched':
      return HIT_LABELS.memory; // held in memory until it became current
    case 'fetched':
      return { result: RESULT_OF_STATUS[status], collapsed: outcome.collapsed };
    case 'stale-on-error':
    case 'stale-while-failing':
      return { result: RESULT_OF_STATUS[status], staleOnError: true };
    case 'revalidating':
      return { result: RESULT_OF_STATUS[status] };
  }
}
