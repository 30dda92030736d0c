import { Logger } from '@nestjs/common';
import { performance } from 'node:perf_hooks';
import { cachedImageOf } from '../../../../test/support/cached-image-of';
import { FakeClock } from '../../../../test/support/fake-clock';
import {
  describeWithRedis,
  RedisServer,
  useRedisServer,
} from '../../../../test/support/redis-server';
import { createCachedImage, sha256Hex } from '../cached-image';
import { RedisConnection } from './redis-connection';
import { type Notice, type SharedLock, SharedTier } from './shared-tier';

const COMMAND_TIMEOUT_MS = 300;
const LOCK_TTL_MS = 400;
const RETENTION_SECONDS = 60;

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

async function timed<T>(task: () => Promise<T>): Promise<[T, number]> {
  const started = performance.now();
  const result = await task();
  return [result, performance.now() - started];
}

describeWithRedis()(SharedTier.name, () => {
  const redis = useRedisServer();
  let clock: FakeClock;
  const opened: RedisConnection[] = [];

  /** A replica's view of the shared tier: its own connection and identity. */
  async function openTier(
    overrides: { keyPrefix?: string; url?: string; password?: string } = {},
  ): Promise<{ tier: SharedTier; connection: RedisConnection }> {
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
    const tier = new SharedTier(connection, clock, config);
    tier.onApplicationBootstrap();
    return { tier, connection };
  }

  beforeEach(() => {
    clock = new FakeClock();
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

  it('reads when an entry was fetched from its header, and deletes by header, also when the header is long', async () => {
    const { tier } = await openTier();
    const image = cachedImageOf('10x10', 'one', clock.now());
    const longHeader = {
      ...cachedImageOf('20x20', 'two', clock.now() - 1000),
      source: `http://127.0.0.1/${'x'.repeat(6000)}.jpg`,
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
    const { tier } = await openTier({ keyPrefix: 'release-a:' });
    await tier.save(cachedImageOf('10x10-grayscale', 'one', clock.now()));
    await tier.lock('10x10-grayscale');

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
        expect.stringContaining('Discarding shared image "10x10"'),
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
    const first = (await openTier()).tier;
    const second = (await openTier()).tier;

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
    const first = (await openTier()).tier;
    const second = (await openTier()).tier;
    const stale = (await first.lock('10x10')) as SharedLock;

    await new Promise((resolve) => setTimeout(resolve, LOCK_TTL_MS + 50));
    const takenOver = await second.lock('10x10');
    await first.unlock(stale); // the old holder wakes up: it must not release the new lock

    expect(takenOver).toHaveProperty('token');
    await expect(first.lock('10x10')).resolves.toBe('held');
  });

  it('tells the other replicas, not itself, that an image was stored or a fetch failed, and wakes who waits for it', async () => {
    const storing = (await openTier()).tier;
    const other = (await openTier()).tier;
    const seenByOther: Notice[] = [];
    const seenByStoring: Notice[] = [];
    other.onNotice((notice) => seenByOther.push(notice));
    storing.onNotice((notice) => seenByStoring.push(notice));
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
    const { tier, connection } = await openTier();
    await tier.save(cachedImageOf('10x10', 'one', clock.now()));

    redis().signal('SIGSTOP');
    try {
      const [hung, hungMs] = await timed(() => tier.load('10x10'));
      const [paused, pausedMs] = await timed(() => tier.load('10x10'));
      const [lock, lockMs] = await timed(() => tier.lock('10x10'));

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
    await expect(tier.load('10x10')).resolves.toEqual(image);
    expect(error).toHaveBeenCalledTimes(1);
    expect(
      log.mock.calls.filter(([message]) => /work again/.test(String(message))),
    ).toHaveLength(1);
  });
});
