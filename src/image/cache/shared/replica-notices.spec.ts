import { Logger } from '@nestjs/common';
import { performance } from 'node:perf_hooks';
import { cachedImageOf } from '../../../../test/support/cached-image-of';
import { FakeClock } from '../../../../test/support/fake-clock';
import {
  openSharedParts,
  type SharedParts,
  type SharedPartsOverrides,
} from '../../../../test/support/shared-parts';
import {
  describeWithRedis,
  useRedisServer,
} from '../../../../test/support/redis-server';
import { CacheMetrics } from '../../../metrics/cache-metrics';
import { RedisConnection } from './redis-connection';
import { ReplicaNotices } from './replica-notices';
import { type Notice } from './shared-tier';

const COMMAND_TIMEOUT_MS = 300;
const LOCK_TTL_MS = 400;
const RETENTION_SECONDS = 60;
const MAX_BODY_BYTES = 1024 * 1024;
const RETRY_AFTER_SECONDS = 10;

async function until(
  condition: () => boolean | Promise<boolean>,
  ms = 5000,
): Promise<void> {
  const deadline = performance.now() + ms;
  while (!(await condition())) {
    if (performance.now() > deadline) {
      throw new Error(`condition not met within ${ms} ms`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describeWithRedis()(ReplicaNotices.name, () => {
  const redis = useRedisServer();
  let clock: FakeClock;
  let metrics: CacheMetrics;
  const opened: RedisConnection[] = [];

  /** A replica's view of the shared tier: its own connection, identity, locks and notices. */
  async function openTier(
    overrides: SharedPartsOverrides = {},
  ): Promise<SharedParts> {
    const parts = await openSharedParts(redis().url, clock, metrics, {
      commandTimeoutMs: COMMAND_TIMEOUT_MS,
      lockTtlMs: LOCK_TTL_MS,
      retentionSeconds: RETENTION_SECONDS,
      maxBodyBytes: MAX_BODY_BYTES,
      retryAfterSeconds: RETRY_AFTER_SECONDS,
      ...overrides,
    });
    opened.push(parts.connection);
    return parts;
  }

  beforeEach(() => {
    clock = new FakeClock();
    metrics = new CacheMetrics();
  });

  afterEach(() => {
    opened.splice(0).forEach((connection) => connection.onModuleDestroy());
    jest.restoreAllMocks();
  });

  function rejectedCount(kind: string): Promise<string | undefined> {
    return metrics
      .scrape()
      .then(
        (text) =>
          new RegExp(
            `^image_cache_shared_rejected_total\\{kind="${kind}"\\} (\\d+)$`,
            'm',
          ).exec(text)?.[1],
      );
  }

  it('tells the other replicas, not itself, that an image was stored or a fetch failed, and wakes who waits for it', async () => {
    const storingReplica = await openTier();
    const storing = storingReplica.tier;
    const other = (await openTier()).notices;
    const seenByOther: Notice[] = [];
    const seenByStoring: Notice[] = [];
    other.onNotice((notice) => seenByOther.push(notice));
    storingReplica.notices.onNotice((notice) => seenByStoring.push(notice));
    const image = cachedImageOf('10x10', 'one', clock.now());
    await until(async () =>
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
    await until(() => seenByOther.length === 2);

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
    await until(async () =>
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
    await until(() => seen.length === 1);

    expect(seen).toEqual([expect.objectContaining({ retryAfterMs: 5000 })]);
    expect(await rejectedCount('notice')).toBe('4');
  });
});
