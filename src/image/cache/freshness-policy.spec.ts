import { FreshnessPolicy } from './freshness-policy';

const FETCHED_AT = Date.parse('2026-12-01T00:00:00Z');
const seconds = (n: number) => FETCHED_AT + n * 1000;

describe(FreshnessPolicy.name, () => {
  const policy = new FreshnessPolicy({
    ttlSeconds: 600,
    staleIfErrorSeconds: 300,
    staleWhileRevalidateSeconds: 30,
    prefetchSeconds: 60,
  });

  it('is fresh for the TTL counted from the fetch, and stale from its last millisecond on', () => {
    expect(policy.expiresAt(FETCHED_AT)).toBe(seconds(600));
    expect(policy.isStale(FETCHED_AT, seconds(600) - 1)).toBe(false);
    expect(policy.isStale(FETCHED_AT, seconds(600))).toBe(true);
  });

  it('gives the freshness HTTP caching headers need: whole seconds of age, never negative', () => {
    expect(policy.freshness(FETCHED_AT, seconds(61.9))).toEqual({
      stale: false,
      expiresAt: seconds(600),
      ageSeconds: 61,
      ttlSeconds: 600,
      staleDirectives: ', stale-while-revalidate=30, stale-if-error=300',
    });
    // Another replica's clock ahead of this one's: the age is 0, not negative.
    expect(policy.freshness(seconds(5), FETCHED_AT).ageSeconds).toBe(0);
  });

  it('names only the stale windows that are set in the RFC 5861 directives', () => {
    const none = new FreshnessPolicy({
      ttlSeconds: 600,
      staleWhileRevalidateSeconds: 0,
      prefetchSeconds: 0,
    });
    const errorOnly = new FreshnessPolicy({
      ttlSeconds: 600,
      staleIfErrorSeconds: 120,
      staleWhileRevalidateSeconds: 0,
      prefetchSeconds: 0,
    });

    expect(none.staleDirectives).toBe('');
    expect(errorOnly.staleDirectives).toBe(', stale-if-error=120');
  });

  it('serves stale on error within its window after expiry, and for ever without one', () => {
    const unbounded = new FreshnessPolicy({
      ttlSeconds: 600,
      staleWhileRevalidateSeconds: 0,
      prefetchSeconds: 0,
    });

    expect(policy.isWithinStaleIfError(FETCHED_AT, seconds(899))).toBe(true);
    expect(policy.isWithinStaleIfError(FETCHED_AT, seconds(900))).toBe(false);
    expect(unbounded.isWithinStaleIfError(FETCHED_AT, seconds(1e6))).toBe(true);
  });

  it('revalidates in the background only within the stale-while-revalidate window, and never when it is 0', () => {
    const off = new FreshnessPolicy({
      ttlSeconds: 600,
      staleWhileRevalidateSeconds: 0,
      prefetchSeconds: 0,
    });

    expect(policy.isWithinRevalidateWindow(FETCHED_AT, seconds(629))).toBe(
      true,
    );
    expect(policy.isWithinRevalidateWindow(FETCHED_AT, seconds(630))).toBe(
      false,
    );
    expect(off.isWithinRevalidateWindow(FETCHED_AT, seconds(601))).toBe(false);
  });

  it('makes a prefetch due once less than its window is left, and never when it is 0', () => {
    const off = new FreshnessPolicy({
      ttlSeconds: 600,
      staleWhileRevalidateSeconds: 0,
      prefetchSeconds: 0,
    });

    expect(policy.isPrefetchDue(FETCHED_AT, seconds(539))).toBe(false);
    expect(policy.isPrefetchDue(FETCHED_AT, seconds(540))).toBe(true);
    expect(off.prefetches).toBe(false);
    expect(off.isPrefetchDue(FETCHED_AT, seconds(599))).toBe(false);
  });

  it('puts an image past serving after its TTL and the longer stale window, never while stale-if-error is unbounded', () => {
    const longRevalidation = new FreshnessPolicy({
      ttlSeconds: 600,
      staleIfErrorSeconds: 10,
      staleWhileRevalidateSeconds: 30,
      prefetchSeconds: 0,
    });
    const unbounded = new FreshnessPolicy({
      ttlSeconds: 600,
      staleWhileRevalidateSeconds: 30,
      prefetchSeconds: 0,
    });

    expect(policy.unservableFrom(FETCHED_AT)).toBe(seconds(900));
    expect(longRevalidation.unservableFrom(FETCHED_AT)).toBe(seconds(630));
    expect(unbounded.boundsStaleServing).toBe(false);
    expect(unbounded.unservableFrom(FETCHED_AT)).toBeUndefined();
  });
});
