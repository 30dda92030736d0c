import { Logger } from '@nestjs/common';
import { performance } from 'node:perf_hooks';
import { cachedImageOf } from '../../../../test/support/cached-image-of';
import {
  COMMAND_TIMEOUT_MS,
  useSharedParts,
} from '../../../../test/support/shared-parts';
import { waitFor } from '../../../../test/support/http-get';
import {
  describeWithRedis,
  RedisServer,
  useRedisServer,
} from '../../../../test/support/redis-server';
import { OUTAGE_RECOVERY_MS } from '../../../common/outage-log';
import { RedisConnection } from './redis-connection';

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
  const shared = useSharedParts(redis);
  const openTier = shared.open;

  it("connects with REDIS_PASSWORD rather than the URL's password", async () => {
    const guarded = await RedisServer.start(['--requirepass', 'from-secret']);
    try {
      const { tier } = await openTier({
        url: `redis://:stale-password@127.0.0.1:${guarded.port}`,
        password: 'from-secret',
      });

      await expect(
        tier.save(cachedImageOf('10x10', 'one', shared.clock.now())),
      ).resolves.toBe(true);
    } finally {
      await guarded.stop();
    }
  });

  it('answers within REDIS_COMMAND_TIMEOUT_MS while Redis hangs, then not at all for a pause, and recovers', async () => {
    const error = jest.spyOn(Logger.prototype, 'error').mockImplementation();
    const log = jest.spyOn(Logger.prototype, 'log').mockImplementation();
    const { tier, connection, locks } = await openTier();
    await tier.save(cachedImageOf('10x10', 'one', shared.clock.now()));

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
    await waitFor(() => connection.available, 3000);
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
    await waitFor(() => !connection.available);
    const results = [];
    for (let i = 0; i < 20; i += 1) {
      results.push(await timed(() => tier.load('10x10')));
    }
    await redis().restart();
    await waitFor(() => connection.available, 5000);
    const image = cachedImageOf('10x10', 'back', shared.clock.now());

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
    await tier.save(cachedImageOf('10x10', 'one', shared.clock.now()));
    await redis().cli('config', 'set', 'maxmemory-policy', 'noeviction');
    await redis().cli('config', 'set', 'maxmemory', '1');

    const saved: boolean[] = [];
    try {
      for (let i = 0; i < 200; i += 1) {
        await expect(tier.load('10x10')).resolves.toBeDefined();
        saved.push(
          await tier.save(
            cachedImageOf(`${i}x${i}`, 'new', shared.clock.now()),
          ),
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
