import { Logger } from '@nestjs/common';
import { cachedImageOf } from '../../../../test/support/cached-image-of';
import { waitFor } from '../../../../test/support/http-get';
import { useSharedParts } from '../../../../test/support/shared-parts';
import {
  describeWithRedis,
  useRedisServer,
} from '../../../../test/support/redis-server';
import { ReplicaNotices } from './replica-notices';
import { type Notice } from './shared-tier';

describeWithRedis()(ReplicaNotices.name, () => {
  const redis = useRedisServer();
  const shared = useSharedParts(redis);
  const openTier = shared.open;

  it('tells the other replicas, not itself, that an image was stored or a fetch failed, and wakes who waits for it', async () => {
    const storingReplica = await openTier();
    const storing = storingReplica.tier;
    const other = (await openTier()).notices;
    const seenByOther: Notice[] = [];
    const seenByStoring: Notice[] = [];
    other.onNotice((notice) => seenByOther.push(notice));
    storingReplica.notices.onNotice((notice) => seenByStoring.push(notice));
    const image = cachedImageOf('10x10', 'one', shared.clock.now());
    await waitFor(async () =>
      (await redis().cli('pubsub', 'numsub', 'test:notices')).endsWith('2'),
    );

    const waited = other.waitForNotice('10x10', 5000);
    const waitedForAnother = other.waitForNotice('20x20', 200);
    await storing.save(image);

    await expect(waited).resolves.toBe(true);
    await expect(waitedForAnother).resolves.toBe(false);
    await storing.recordFailure('20x20', {
      status: 504,
      message: 'Upstream did not answer',
      retryAfterMs: 10_000,
    });
    await waitFor(() => seenByOther.length === 2);

    expect(seenByOther).toEqual([
      expect.objectContaining({
        type: 'stored',
        key: '10x10',
        etag: image.etag,
        fetchedAt: image.fetchedAt,
      }),
      expect.objectContaining({
        type: 'failed',
        key: '20x20',
        status: 504,
        retryAfterMs: 10_000,
      }),
    ]);
    expect(seenByStoring).toEqual([]);
  });

  it('ignores a notice that fails validation, counting it: a failure never remembered past the retry window', async () => {
    jest.spyOn(Logger.prototype, 'warn').mockImplementation();
    // A channel of its own: no subscriber of an earlier test is counted as this one.
    const listening = (await openTier({ keyPrefix: 'strict:' })).notices;
    const seen: Notice[] = [];
    listening.onNotice((notice) => seen.push(notice));
    await waitFor(async () =>
      (await redis().cli('pubsub', 'numsub', 'strict:notices')).endsWith('1'),
    );
    const notice = (overrides: object) =>
      JSON.stringify({
        type: 'failed',
        from: 'neighbour',
        key: '10x10',
        status: 502,
        message: 'Upstream answered 500',
        retryAfterMs: 5000,
        ...overrides,
      });

    for (const bad of [
      notice({ retryAfterMs: 1e15, status: 599, message: 'Gone forever' }),
      notice({ retryAfterMs: 1e15 }),
      JSON.stringify({
        type: 'stored',
        from: 'neighbour',
        key: '10x10',
        etag: `"${'a'.repeat(32)}"`,
        fetchedAt: 9e15,
      }),
      'not json',
    ]) {
      await redis().cli('publish', 'strict:notices', bad);
    }
    await redis().cli('publish', 'strict:notices', notice({}));
    await waitFor(() => seen.length === 1);

    expect(seen).toEqual([expect.objectContaining({ retryAfterMs: 5000 })]);
    expect(await shared.rejectedCount('notice')).toBe('4');
  });
});
