import type { CacheAdmin } from './cache-admin';
import type { FailureMemory } from './failure-memory';
import type { Prefetcher } from './prefetcher';
import { PurgeGenerations } from './purge-generations';
import { ReplicaSync } from './replica-sync';
import type { Notice } from './shared/shared-codec';
import type { ReplicaNotices } from './shared/replica-notices';
import type { TierChain } from './tier-chain';

describe(ReplicaSync.name, () => {
  let deliver: (notice: Notice) => void;
  let generations: PurgeGenerations;
  const tiers = { dropLocal: jest.fn() };
  const failures = { forget: jest.fn(), rememberRemote: jest.fn() };
  const prefetcher = { forget: jest.fn() };
  const admin = { purgeHere: jest.fn().mockResolvedValue([]) };

  beforeEach(() => {
    jest.clearAllMocks();
    generations = new PurgeGenerations();
    const notices = {
      onNotice: (listener: (notice: Notice) => void) => (deliver = listener),
    };
    new ReplicaSync(
      notices as unknown as ReplicaNotices,
      tiers as unknown as TierChain,
      failures as unknown as FailureMemory,
      prefetcher as unknown as Prefetcher,
      admin as unknown as CacheAdmin,
      generations,
    ).onModuleInit();
  });

  it('drops the older local copies, the remembered failure and the held next image when another replica stored an image', () => {
    const mark = generations.mark();

    deliver({
      type: 'stored',
      from: 'other',
      key: '300x200',
      etag: `"${'a'.repeat(32)}"`,
      fetchedAt: 1000,
    });

    expect(tiers.dropLocal).toHaveBeenCalledWith('300x200', 1000);
    expect(failures.forget).toHaveBeenCalledWith('300x200');
    expect(prefetcher.forget).toHaveBeenCalledWith('300x200');
    expect(generations.purgedSince('300x200', mark)).toBe(false);
  });

  it('after an admin refresh elsewhere, drops every local copy and stops the fetches running here from storing', () => {
    const mark = generations.mark();

    deliver({
      type: 'stored',
      from: 'other',
      key: '300x200',
      etag: `"${'a'.repeat(32)}"`,
      fetchedAt: 1000,
      replaces: true,
    });

    expect(tiers.dropLocal).toHaveBeenCalledWith('300x200', Infinity);
    expect(generations.purgedSince('300x200', mark)).toBe(true);
  });

  it('purges here what another replica purged, one variant or all', () => {
    deliver({ type: 'purged', from: 'other', key: '300x200' });
    deliver({ type: 'purged', from: 'other', key: null });

    expect(admin.purgeHere.mock.calls).toEqual([['300x200'], [null]]);
  });

  it("remembers another replica's failed fetch for its retry window", () => {
    const failed: Notice = {
      type: 'failed',
      from: 'other',
      key: '300x200',
      status: 502,
      message: 'Upstream answered 500',
      retryAfterMs: 5000,
    };

    deliver(failed);

    expect(failures.rememberRemote).toHaveBeenCalledWith(failed);
  });
});
