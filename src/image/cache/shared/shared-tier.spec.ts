import { Logger } from '@nestjs/common';
import { performance } from 'node:perf_hooks';
import {
  cachedImageOf,
  completeJpeg,
} from '../../../../test/support/cached-image-of';
import { FakeClock } from '../../../../test/support/fake-clock';
import {
  describeWithRedis,
  RedisServer,
  useRedisServer,
} from '../../../../test/support/redis-server';
import { CacheMetrics } from '../../../metrics/cache-metrics';
import { createClient } from 'redis';
import { OUTAGE_RECOVERY_MS } from '../../../common/outage-log';
import { createCachedImage, sha256Hex } from '../cached-image';
import { RedisConnection } from './redis-connection';
import { SharedCodec } from './shared-codec';
import { ReplicaNotices } from './replica-notices';
import { SharedKeys } from './shared-keys';
import { SharedScan } from './shared-scan';
import { type SharedLock, SharedLocks } from './shared-locks';
import { SharedRejections } from './shared-rejections';
import { type Notice, SharedTier } from './shared-tier';
import type { CachedImage } from '../cache-model';

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

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function timed<T>(task: () => Promise<T>): Promise<[T, number]> {
  const started = performance.now();
  const result = await task();
  return [result, performance.now() - started];
}

describeWithRedis()(SharedTier.name, () => {
  const redis = useRedisServer();
  let clock: FakeClock;
  let metrics: CacheMetrics;
  const opened: RedisConnection[] = [];

  /** A replica's view of the shared tier: its own connection, identity, locks and notices. */
  async function openTier(
    overrides: { keyPrefix?: string; url?: string; password?: string } = {},
  ): Promise<{
    tier: SharedTier;
    connection: RedisConnection;
    locks: SharedLocks;
    notices: ReplicaNotices;
    scan: SharedScan;
  }> {
    const config = {
      urls: [overrides.url ?? redis().url],
      cluster: false,
      displayName: redis().url,
      password: overrides.password,
      keyPrefix: overrides.keyPrefix ?? 'test:',
      commandTimeoutMs: COMMAND_TIMEOUT_MS,
      lockTtlMs: LOCK_TTL_MS,
      retentionSeconds: RETENTION_SECONDS,
    };
    const connection = new RedisConnection(config);
    opened.push(connection);
    await connection.onModuleInit();
    await until(() => connection.available);
    const keys = new SharedKeys(config);
    const codec = new SharedCodec(
      {
        maxBodyBytes: MAX_BODY_BYTES,
        maxRetryAfterMs: RETRY_AFTER_SECONDS * 1000,
      },
      () => clock.now(),
    );
    const rejections = new SharedRejections(metrics);
    const notices = new ReplicaNotices(connection, keys, codec, rejections);
    const locks = new SharedLocks(connection, keys, rejections, config);
    const tier = new SharedTier(
      connection,
      clock,
      config,
      keys,
      codec,
      rejections,
      notices,
    );
    notices.onApplicationBootstrap();
    const scan = new SharedScan(connection, keys, tier, notices);
    return { tier, connection, locks, notices, scan };
  }

  beforeEach(() => {
    clock = new FakeClock();
    metrics = new CacheMetrics();
  });

  afterEach(() => {
    opened.splice(0).forEach((connection) => connection.onModuleDestroy());
    jest.restoreAllMocks();
  });

  it('stores an image and loads it back with its fetch time, checksum and headers', async () => {
    const { tier } = await openTier();
    const image = cachedImageOf('10x10', 'one', clock.now() - 5000);

    await expect(tier.save(image)).resolves.toBe(true);
    const loaded = await tier.load('10x10');

    expect(loaded).toEqual(image);
    await expect(tier.load('20x20')).resolves.toBeUndefined();
  });

  it("connects with REDIS_PASSWORD rather than the URL's password", async () => {
    const guarded = await RedisServer.start(['--requirepass', 'from-secret']);
    try {
      const { tier } = await openTier({
        url: `redis://:stale-password@127.0.0.1:${guarded.port}`,
        password: 'from-secret',
      });

      await expect(
        tier.save(cachedImageOf('10x10', 'one', clock.now())),
      ).resolves.toBe(true);
    } finally {
      await guarded.stop();
    }
  });

  it('lets Redis drop an entry after the TTL plus the stale window, counted from the fetch', async () => {
    const { tier } = await openTier();
    await tier.save(cachedImageOf('10x10', 'one', clock.now() - 20_000));

    const ttlMs = Number(await redis().cli('pttl', 'test:{10x10}:image'));

    expect(ttlMs).toBeGreaterThan(RETENTION_SECONDS * 1000 - 20_000 - 1000);
    expect(ttlMs).toBeLessThanOrEqual(RETENTION_SECONDS * 1000 - 20_000);
    await expect(
      tier.save(
        cachedImageOf('20x20', 'old', clock.now() - RETENTION_SECONDS * 1000),
      ),
    ).resolves.toBe(false);
  });

  it('deletes an entry, or with fetchedBefore only one fetched before then', async () => {
    const { tier } = await openTier();
    const image = cachedImageOf('10x10', 'one', clock.now());
    await tier.save(image);

    await tier.delete('10x10', image.fetchedAt);
    const kept = await tier.load('10x10');
    await tier.delete('10x10', image.fetchedAt + 1);
    const deleted = await tier.load('10x10');

    expect(kept).toEqual(image);
    expect(deleted).toBeUndefined();
  });

  it('reads when an entry was fetched from its header, and deletes by header, also when the header is as long as a header may be', async () => {
    const { tier } = await openTier();
    const image = cachedImageOf('10x10', 'one', clock.now());
    const longHeader = {
      ...cachedImageOf('20x20', 'two', clock.now() - 1000),
      source: `http://127.0.0.1/${'x'.repeat(2000)}.jpg`,
    };
    await tier.save(image);
    await tier.save(longHeader);

    const fetchedAt = [
      await tier.fetchedAt('10x10'),
      await tier.fetchedAt('20x20'),
      await tier.fetchedAt('30x30'),
    ];
    await tier.delete('20x20', longHeader.fetchedAt + 1);

    expect(fetchedAt).toEqual([
      image.fetchedAt,
      longHeader.fetchedAt,
      undefined,
    ]);
    await expect(tier.load('20x20')).resolves.toBeUndefined();
    await expect(tier.load('10x10')).resolves.toEqual(image);
  });

  it('records a failure for the retry window, for replicas that look later', async () => {
    const { tier } = await openTier();
    const other = (await openTier()).tier;
    await tier.recordFailure('10x10', {
      status: 502,
      message: 'Upstream answered 500',
      retryAfterMs: 10_000,
    });

    const failure = await other.loadFailure('10x10');
    const ttlMs = Number(await redis().cli('pttl', 'test:{10x10}:failed'));

    expect(failure).toEqual(
      expect.objectContaining({
        type: 'failed',
        key: '10x10',
        status: 502,
        message: 'Upstream answered 500',
      }),
    );
    expect(failure?.retryAfterMs).toBeGreaterThan(9000);
    expect(failure?.retryAfterMs).toBeLessThanOrEqual(10_000);
    expect(ttlMs).toBeLessThanOrEqual(10_000);
    await expect(other.loadFailure('20x20')).resolves.toBeUndefined();
    await redis().cli('set', 'test:{20x20}:failed', '{"type":"stored"}');
    await expect(other.loadFailure('20x20')).resolves.toBeUndefined();
  });

  it('keeps a variant entry and its lock under one hash tag, below the key prefix', async () => {
    const { tier, locks } = await openTier({ keyPrefix: 'release-a:' });
    await tier.save(cachedImageOf('10x10-grayscale', 'one', clock.now()));
    await locks.lock('10x10-grayscale');

    const keys = (await redis().cli('--raw', 'keys', '*')).split('\n').sort();

    expect(keys).toEqual([
      'release-a:{10x10-grayscale}:image',
      'release-a:{10x10-grayscale}:lock',
    ]);
  });

  it.each([
    ['a body that no longer matches its SHA-256', 'setrange', '60', 'X'],
    ['a value cut short', 'setrange', '0', '\xff\xff\xff\xff'],
  ])(
    'discards %s, never serving it, and logs it',
    async (_case, command, offset, bytes) => {
      const warn = jest.spyOn(Logger.prototype, 'warn').mockImplementation();
      const { tier } = await openTier();
      await tier.save(
        cachedImageOf('10x10', 'a longer body to damage', clock.now()),
      );
      await redis().cli(command, 'test:{10x10}:image', offset, bytes);

      await expect(tier.load('10x10')).resolves.toBeUndefined();

      expect(await redis().cli('exists', 'test:{10x10}:image')).toBe('0');
      expect(warn).toHaveBeenCalledWith(
        expect.stringContaining(
          'Discarded the shared entry at "test:{10x10}:image"',
        ),
      );
    },
  );

  it('discards an entry whose body is not a complete image, even with a matching checksum', async () => {
    jest.spyOn(Logger.prototype, 'warn').mockImplementation();
    const { tier } = await openTier();
    const svg = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg"/>');
    await tier.save(
      createCachedImage({
        ...cachedImageOf('10x10', 'x', clock.now()),
        body: svg,
        sha256: sha256Hex(svg),
      }),
    );

    await expect(tier.load('10x10')).resolves.toBeUndefined();
  });

  it('gives a variant lock to one replica at a time, released only by its holder', async () => {
    const first = (await openTier()).locks;
    const second = (await openTier()).locks;

    const lock = (await first.lock('10x10')) as SharedLock;
    expect(typeof lock).toBe('object');
    await expect(second.lock('10x10')).resolves.toBe('held');
    await expect(second.lock('20x20')).resolves.toMatchObject({});

    await second.unlock({ ...lock, token: 'not-the-holder' });
    await expect(second.lock('10x10')).resolves.toBe('held');
    await first.unlock(lock);
    await expect(second.lock('10x10')).resolves.toHaveProperty('token');
  });

  it('lets another replica take a lock over once its holder stopped renewing it and it expired', async () => {
    const first = (await openTier()).locks;
    const second = (await openTier()).locks;
    const stale = (await first.lock('10x10')) as SharedLock;

    await new Promise((resolve) => setTimeout(resolve, LOCK_TTL_MS + 50));
    const takenOver = await second.lock('10x10');
    await first.unlock(stale); // the old holder wakes up: it must not release the new lock

    expect(takenOver).toHaveProperty('token');
    await expect(first.lock('10x10')).resolves.toBe('held');
  });

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

  it('answers within REDIS_COMMAND_TIMEOUT_MS while Redis hangs, then not at all for a pause, and recovers', async () => {
    const error = jest.spyOn(Logger.prototype, 'error').mockImplementation();
    const log = jest.spyOn(Logger.prototype, 'log').mockImplementation();
    const { tier, connection, locks } = await openTier();
    await tier.save(cachedImageOf('10x10', 'one', clock.now()));

    redis().signal('SIGSTOP');
    try {
      const [hung, hungMs] = await timed(() => tier.load('10x10'));
      const [paused, pausedMs] = await timed(() => tier.load('10x10'));
      const [lock, lockMs] = await timed(() => locks.lock('10x10'));

      expect(hung).toBeUndefined();
      expect(hungMs).toBeLessThan(COMMAND_TIMEOUT_MS + 200);
      expect(paused).toBeUndefined();
      expect(pausedMs).toBeLessThan(50);
      expect(lock).toBe('unavailable');
      expect(lockMs).toBeLessThan(50);
      expect(connection.problem).toMatch(/REDIS_COMMAND_TIMEOUT_MS/);
    } finally {
      redis().signal('SIGCONT');
    }
    await until(() => connection.available, 3000);
    await expect(tier.load('10x10')).resolves.toBeDefined();
    await sleep(OUTAGE_RECOVERY_MS);
    await expect(tier.load('10x10')).resolves.toBeDefined();

    expect(error).toHaveBeenCalledTimes(1);
    expect(log).toHaveBeenCalledWith(
      expect.stringMatching(/shared tier's Redis .* work again/),
    );
  });

  it('fails at once while Redis is down, reconnects by itself, and logs the outage twice in all', async () => {
    const error = jest.spyOn(Logger.prototype, 'error').mockImplementation();
    const log = jest.spyOn(Logger.prototype, 'log').mockImplementation();
    const { tier, connection } = await openTier();

    await redis().kill();
    await until(() => !connection.available);
    const results = [];
    for (let i = 0; i < 20; i += 1) {
      results.push(await timed(() => tier.load('10x10')));
    }
    await redis().restart();
    await until(() => connection.available, 5000);
    const image = cachedImageOf('10x10', 'back', clock.now());

    expect(
      results.every(([loaded, ms]) => loaded === undefined && ms < 50),
    ).toBe(true);
    await expect(tier.save(image)).resolves.toBe(true);
    await sleep(OUTAGE_RECOVERY_MS);
    await expect(tier.load('10x10')).resolves.toEqual(image);
    expect(error).toHaveBeenCalledTimes(1);
    expect(
      log.mock.calls.filter(([message]) => /work again/.test(String(message))),
    ).toHaveLength(1);
  });

  it('logs a Redis that refuses writes but answers reads as one partial outage, not once per command', async () => {
    const error = jest.spyOn(Logger.prototype, 'error').mockImplementation();
    const warn = jest.spyOn(Logger.prototype, 'warn').mockImplementation();
    const log = jest.spyOn(Logger.prototype, 'log').mockImplementation();
    const { tier } = await openTier();
    await tier.save(cachedImageOf('10x10', 'one', clock.now()));
    await redis().cli('config', 'set', 'maxmemory-policy', 'noeviction');
    await redis().cli('config', 'set', 'maxmemory', '1');

    const saved: boolean[] = [];
    try {
      for (let i = 0; i < 200; i += 1) {
        await expect(tier.load('10x10')).resolves.toBeDefined();
        saved.push(
          await tier.save(cachedImageOf(`${i}x${i}`, 'new', clock.now())),
        );
      }
    } finally {
      await redis().cli('config', 'set', 'maxmemory', '0');
    }

    expect(saved.every((stored) => !stored)).toBe(true);
    expect(error.mock.calls).toEqual([
      [expect.stringMatching(/fail: OOM command not allowed/)],
    ]);
    expect(
      warn.mock.calls.filter(([message]) =>
        /partly fail/.test(String(message)),
      ),
    ).toHaveLength(1);
    expect(
      log.mock.calls.filter(([message]) => /work again/.test(String(message))),
    ).toEqual([]);
  });

  describe('reads everything from Redis as strictly as an upstream reply', () => {
    /** Writes `value` under `key` as a neighbour with access to the same Redis could. */
    async function write(
      key: string,
      value: Buffer | string,
      expiryMs?: number,
    ): Promise<void> {
      const client = createClient({ url: redis().url });
      await client.connect();
      try {
        await client.set(
          key,
          value,
          expiryMs === undefined
            ? {}
            : { expiration: { type: 'PX', value: expiryMs } },
        );
      } finally {
        client.destroy();
      }
    }

    function encoded(image: CachedImage): Buffer {
      return new SharedCodec(
        { maxBodyBytes: Infinity, maxRetryAfterMs: Infinity },
        () => clock.now(),
      ).encodeEntry(image);
    }

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

    it('discards an entry fetched in the future, counts it and logs it once with its key', async () => {
      const warn = jest.spyOn(Logger.prototype, 'warn').mockImplementation();
      const { tier } = await openTier();
      const future = cachedImageOf('10x10', 'forever', 9e15);
      await write('test:{10x10}:image', encoded(future));

      const fetchedAt = await tier.fetchedAt('10x10');
      const loaded = await tier.load('10x10');

      expect(fetchedAt).toBeUndefined();
      expect(loaded).toBeUndefined();
      expect(await redis().cli('exists', 'test:{10x10}:image')).toBe('0');
      expect(await rejectedCount('entry')).toBe('2');
      expect(warn).toHaveBeenCalledTimes(1);
      expect(warn).toHaveBeenCalledWith(
        expect.stringMatching(
          /^Discarded the shared entry at "test:\{10x10\}:image": fetched at 9000000000000000 .*ahead of this replica's clock$/,
        ),
      );
    });

    it('takes an entry fetched up to a minute ahead of its clock, another replica’s being ahead of its own', async () => {
      const { tier } = await openTier();
      const ahead = cachedImageOf('10x10', 'ahead', clock.now() + 55_000);
      await write('test:{10x10}:image', encoded(ahead));

      await expect(tier.load('10x10')).resolves.toEqual(ahead);
    });

    it('discards an entry larger than UPSTREAM_MAX_BYTES, and one whose source is not a short http(s) URL', async () => {
      jest.spyOn(Logger.prototype, 'warn').mockImplementation();
      const { tier } = await openTier();
      const large = createCachedImage({
        ...cachedImageOf('10x10', 'x', clock.now()),
        body: completeJpeg('x'.repeat(MAX_BODY_BYTES)),
        sha256: sha256Hex(completeJpeg('x'.repeat(MAX_BODY_BYTES))),
      });
      await write('test:{10x10}:image', encoded(large));
      await write(
        'test:{20x20}:image',
        encoded({
          ...cachedImageOf('20x20', 'y', clock.now()),
          source: `http://127.0.0.1/${'y'.repeat(1024 * 1024)}`,
        }),
      );
      await write(
        'test:{30x30}:image',
        encoded({
          ...cachedImageOf('30x30', 'z', clock.now()),
          source: 'javascript:alert(1)',
        }),
      );

      await expect(tier.load('10x10')).resolves.toBeUndefined();
      await expect(tier.load('20x20')).resolves.toBeUndefined();
      await expect(tier.load('30x30')).resolves.toBeUndefined();
      expect(await rejectedCount('entry')).toBe('3');
    });

    it('discards a failure record with a status, retry or message the upstream client never records, or without an expiry', async () => {
      jest.spyOn(Logger.prototype, 'warn').mockImplementation();
      const { tier } = await openTier();
      const record = (overrides: object) =>
        JSON.stringify({
          type: 'failed',
          from: 'neighbour',
          key: '10x10',
          status: 502,
          message: 'Upstream answered 500 for http://upstream/',
          retryAfterMs: 5000,
          ...overrides,
        });
      const cases: [string, number | undefined][] = [
        [record({ status: 599 }), 5000],
        [record({ retryAfterMs: 1e15 }), 5000],
        [record({ message: 'Send your password to evil.example' }), 5000],
        [record({ message: 'Upstream \u202egnp.exe' }), 5000],
        [record({}), undefined],
        [record({}), 1e9],
      ];

      const loaded = [];
      for (const [value, expiryMs] of cases) {
        await write('test:{10x10}:failed', value, expiryMs);
        loaded.push(await tier.loadFailure('10x10'));
      }
      await write('test:{10x10}:failed', record({}), 5000);
      const valid = await tier.loadFailure('10x10');

      expect(loaded).toEqual(cases.map(() => undefined));
      expect(await rejectedCount('failure')).toBe(String(cases.length));
      expect(valid).toMatchObject({ status: 502, key: '10x10' });
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

    it('takes over a lock left without an expiry, or with one longer than a lock may have, and counts it', async () => {
      jest.spyOn(Logger.prototype, 'warn').mockImplementation();
      const { locks } = await openTier();
      await write('test:{10x10}:lock', 'forever');
      await write('test:{20x20}:lock', 'too long', LOCK_TTL_MS * 100);
      await write('test:{30x30}:lock', 'a replica’s', LOCK_TTL_MS);

      const forever = await locks.lock('10x10');
      const tooLong = await locks.lock('20x20');
      const held = await locks.lock('30x30');
      const ttlMs = Number(await redis().cli('pttl', 'test:{10x10}:lock'));

      expect(forever).toHaveProperty('token');
      expect(tooLong).toHaveProperty('token');
      expect(held).toBe('held');
      expect(ttlMs).toBeGreaterThan(0);
      expect(ttlMs).toBeLessThanOrEqual(LOCK_TTL_MS);
      expect(await rejectedCount('lock')).toBe('2');
    });

    it('purges a variant’s lock with its entry, and every lock with everything', async () => {
      const { tier, scan } = await openTier();
      await tier.save(cachedImageOf('10x10', 'one', clock.now()));
      await write('test:{10x10}:lock', 'forever');
      await write('test:{20x20}:lock', 'forever');
      await write('test:{30x30}:failed', 'junk', 5000);

      await scan.purge('10x10');
      const afterOne = (await redis().cli('--raw', 'keys', '*'))
        .split('\n')
        .sort();
      await scan.purge(null);
      const afterAll = await redis().cli('--raw', 'keys', '*');

      expect(afterOne).toEqual(['test:{20x20}:lock', 'test:{30x30}:failed']);
      expect(afterAll.trim()).toBe('');
    });
  });
});
