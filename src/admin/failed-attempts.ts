import { LRUCache } from 'lru-cache';

/** Addresses remembered at once, so that many addresses cannot grow memory without bound. */
const MAX_ADDRESSES = 10_000;

/**
 * Counts failed attempts per client address in a fixed window (an LRU whose entries expire
 * with the window), so that a token cannot be guessed at speed from one address.
 */
export class FailedAttempts {
  private readonly attempts: LRUCache<string, { count: number }>;

  constructor(
    private readonly limit: number,
    private readonly windowMs: number,
  ) {
    this.attempts = new LRUCache({
      max: MAX_ADDRESSES,
      ttl: windowMs,
      ttlAutopurge: false,
      noUpdateTTL: true,
    });
  }

  /** Seconds until `address` may try again, or 0 while it has attempts left. */
  retryAfterSeconds(address: string): number {
    const entry = this.attempts.get(address);
    if (!entry || entry.count < this.limit) {
      return 0;
    }
    return Math.max(
      1,
      Math.ceil(this.attempts.getRemainingTTL(address) / 1000),
    );
  }

  record(address: string): void {
    const entry = this.attempts.get(address);
    if (entry) {
      entry.count += 1;
    } else {
      this.attempts.set(address, { count: 1 });
    }
  }
}
