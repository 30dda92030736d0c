import { cacheStatusOf, cacheStatusOfError } from './cache-outcome';

describe(cacheStatusOf.name, () => {
  it.each([
    [
      { kind: 'hit', tier: 'memory' },
      540,
      'image-cache; hit; ttl=540; detail=memory',
    ],
    [
      { kind: 'hit', tier: 'disk' },
      12,
      'image-cache; hit; ttl=12; detail=disk',
    ],
    [
      { kind: 'hit', tier: 'shared' },
      600,
      'image-cache; hit; ttl=600; detail=shared',
    ],
    [
      { kind: 'fetched', forward: 'uri-miss', collapsed: false },
      600,
      'image-cache; fwd=uri-miss; fwd-status=200; stored',
    ],
    [
      { kind: 'fetched', forward: 'stale', collapsed: true },
      600,
      'image-cache; fwd=stale; fwd-status=200; stored; collapsed',
    ],
    [
      { kind: 'stale-on-error', status: 504 },
      -30,
      'image-cache; fwd=stale; fwd-status=504; ttl=-30',
    ],
    [
      { kind: 'stale-while-failing' },
      -31,
      'image-cache; hit; ttl=-31; detail=upstream-failing',
    ],
    [
      { kind: 'prefetched' },
      600,
      'image-cache; hit; ttl=600; detail=prefetched',
    ],
    [
      { kind: 'revalidating' },
      -2,
      'image-cache; fwd=stale; ttl=-2; detail=revalidating',
    ],
  ] as const)('says %j with %i s left as %s', (outcome, ttl, expected) => {
    expect(cacheStatusOf(outcome, ttl)).toBe(expected);
  });

  it('says an error with nothing to serve as a forward with the status', () => {
    expect(cacheStatusOfError(502)).toBe(
      'image-cache; fwd=uri-miss; fwd-status=502',
    );
  });
});
