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
  RedisServer,
  useRedisServer,
} from '../../../../test/support/redis-server';
import { CacheMetrics } from '../../../metrics/cache-metrics';
import { OUTAGE_RECOVERY_MS } from '../../../common/outage-log';
import { RedisConnection } from './redis-connection';

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

describeWithRedis()(RedisConnection.name, () => {
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
});
