import type { Freshness } from './cache-model';

/** The windows that decide what may be served when, in seconds, as configured. */
export interface FreshnessWindows {
  readonly ttlSeconds: number;
  /** How long past expiry an image may be served while the upstream fails; unset for ever. */
  readonly staleIfErrorSeconds?: number;
  /** How long past expiry an image is served at once while one fetch replaces it; 0 for off. */
  readonly staleWhileRevalidateSeconds: number;
  /** How long before expiry the next image is fetched; 0 for off. */
  readonly prefetchSeconds: number;
}

/**
 * When an image fetched at a given moment is fresh, may be served stale, and should have its
 * successor prefetched: the TTL, stale-if-error, stale-while-revalidate and prefetch windows,
 * and the RFC 5861 directives `Cache-Control` carries for them. Pure: no clock of its own (the
 * moment is passed in), no I/O, so it is tested as arithmetic. Freshness always counts from the
 * original fetch, so a copy promoted from a lower tier keeps only the time it had left.
 */
export class FreshnessPolicy {
  /** What `Cache-Control` adds to max-age, e.g. `, stale-while-revalidate=30, stale-if-error=300`. */
  readonly staleDirectives: string;
  private readonly ttlMs: number;

  constructor(private readonly windows: FreshnessWindows) {
    this.ttlMs = windows.ttlSeconds * 1000;
    this.staleDirectives = [
      windows.staleWhileRevalidateSeconds > 0
        ? `, stale-while-revalidate=${windows.staleWhileRevalidateSeconds}`
        : '',
      windows.staleIfErrorSeconds
        ? `, stale-if-error=${windows.staleIfErrorSeconds}`
        : '',
    ].join('');
  }

  get ttlSeconds(): number {
    return this.windows.ttlSeconds;
  }

  /** Whether an expired image is ever past serving: only while stale-if-error has a bound. */
  get boundsStaleServing(): boolean {
    return this.windows.staleIfErrorSeconds !== undefined;
  }

  /** Whether images are prefetched before they expire. */
  get prefetches(): boolean {
    return this.windows.prefetchSeconds > 0;
  }

  expiresAt(fetchedAt: number): number {
    return fetchedAt + this.ttlMs;
  }

  isStale(fetchedAt: number, now: number): boolean {
    return now >= this.expiresAt(fetchedAt);
  }

  /** The freshness of an image fetched at `fetchedAt`, at `now`, as HTTP caching headers need it. */
  freshness(fetchedAt: number, now: number): Freshness {
    return {
      stale: this.isStale(fetchedAt, now),
      expiresAt: this.expiresAt(fetchedAt),
      ageSeconds: Math.max(0, Math.floor((now - fetchedAt) / 1000)),
      ttlSeconds: this.windows.ttlSeconds,
      staleDirectives: this.staleDirectives,
    };
  }

  /** Whether an expired image may still be served because the upstream fails. */
  isWithinStaleIfError(fetchedAt: number, now: number): boolean {
    const windowSeconds = this.windows.staleIfErrorSeconds;
    return (
      windowSeconds === undefined ||
      now < this.expiresAt(fetchedAt) + windowSeconds * 1000
    );
  }

  /** Whether an expired image is served at once while one background fetch replaces it. */
  isWithinRevalidateWindow(fetchedAt: number, now: number): boolean {
    const windowMs = this.windows.staleWhileRevalidateSeconds * 1000;
    return windowMs > 0 && now < this.expiresAt(fetchedAt) + windowMs;
  }

  /** Whether the successor of an image fetched at `fetchedAt` should be prefetched now. */
  isPrefetchDue(fetchedAt: number, now: number): boolean {
    return (
      this.prefetches &&
      now >= this.expiresAt(fetchedAt) - this.windows.prefetchSeconds * 1000
    );
  }

  /**
   * From when an image fetched at `fetchedAt` can never be served again (past its TTL and the
   * longer of its stale windows), or `undefined` while stale-if-error has no bound.
   */
  unservableFrom(fetchedAt: number): number | undefined {
    const staleIfErrorSeconds = this.windows.staleIfErrorSeconds;
    if (staleIfErrorSeconds === undefined) {
      return undefined;
    }
    const staleSeconds = Math.max(
      staleIfErrorSeconds,
      this.windows.staleWhileRevalidateSeconds,
    );
    return this.expiresAt(fetchedAt) + staleSeconds * 1000;
  }
}
