/** What became of one upstream fetch: the `outcome` label of `image_cache_upstream_fetches_total`. */
export const UPSTREAM_OUTCOMES = [
  'success',
  'timeout',
  'http_error',
  'invalid',
  'too_large',
  'network_error',
  'redirect_refused',
] as const;
export type UpstreamOutcome = (typeof UPSTREAM_OUTCOMES)[number];
