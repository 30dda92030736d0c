import { Injectable, type OnModuleInit } from '@nestjs/common';
import { CacheAdmin } from './cache-admin';
import { FailureMemory } from './failure-memory';
import { Prefetcher } from './prefetcher';
import { PurgeGenerations } from './purge-generations';
import { ReplicaNotices } from './shared/replica-notices';
import { TierChain } from './tier-chain';

/**
 * What a notice from another replica changes here: a newer image stored there drops the older
 * copies here (every copy, after an admin refresh), a purge there purges here, a failed fetch
 * there is remembered here for its retry window.
 */
@Injectable()
export class ReplicaSync implements OnModuleInit {
  constructor(
    private readonly notices: ReplicaNotices,
    private readonly tiers: TierChain,
    private readonly failures: FailureMemory,
    private readonly prefetcher: Prefetcher,
    private readonly admin: CacheAdmin,
    private readonly generations: PurgeGenerations,
  ) {}

  onModuleInit(): void {
    this.notices.onNotice((notice) => {
      if (notice.type === 'stored') {
        // Another replica stored a newer image: the local copy must not be served any more.
        // After an admin refresh (`replaces`), no copy is, whatever its fetch time says, and
        // a fetch running here stores nothing.
        if (notice.replaces) {
          this.generations.purged(notice.key);
        }
        this.tiers.dropLocal(
          notice.key,
          notice.replaces ? Infinity : notice.fetchedAt,
        );
        this.failures.forget(notice.key);
        // A next image held here was for the image that is now replaced: its successor is
        // prefetched again, or fetched at expiry.
        this.prefetcher.forget(notice.key);
      } else if (notice.type === 'purged') {
        void this.admin.purgeHere(notice.key);
      } else {
        // Another replica's fetch failed: asking the upstream again now would fail the same way.
        this.failures.rememberRemote(notice);
      }
    });
  }
}
