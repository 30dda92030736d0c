import { Injectable } from '@nestjs/common';
import { LRUCache } from 'lru-cache';

/**
 * Variants whose latest purge is remembered at once. A fetch outlives at most the lock TTL, so
 * only a purge of more variants than this within one fetch could be forgotten before the fetch
 * that it should stop ends.
 */
const MAX_REMEMBERED_PURGES = 10_000;

/**
 * Makes a purge (or an admin refresh) win over the fetches already running: each fetch or
 * prefetch takes a mark when it starts, and stores its image only if its variant was not
 * purged since. The requests already waiting for it still get its image; no tier keeps it.
 * Marks are numbers of a sequence that every purge moves on, here and, through the purge
 * notices, on every replica.
 */
@Injectable()
export class PurgeGenerations {
  private sequence = 0;
  private everythingPurgedAt = 0;
  private readonly purgedAt = new LRUCache<string, number>({
    max: MAX_REMEMBERED_PURGES,
  });

  /** The mark a fetch takes before it starts. */
  mark(): number {
    return this.sequence;
  }

  /** Records a purge of `key`, or of every variant when `key` is `null`. */
  purged(key: string | null): void {
    this.sequence += 1;
    if (key === null) {
      this.everythingPurgedAt = this.sequence;
    } else {
      this.purgedAt.set(key, this.sequence);
    }
  }

  /** Whether `key` was purged after a fetch took `mark`: then what it got is not stored. */
  purgedSince(key: string, mark: number): boolean {
    return (
      this.everythingPurgedAt > mark || (this.purgedAt.get(key) ?? 0) > mark
    );
  }
}
