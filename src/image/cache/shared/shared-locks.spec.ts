import { Logger } from '@nestjs/common';
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
import { createClient } from 'redis';
import { RedisConnection } from './redis-connection';
import { SharedLocks } from './shared-locks';
import type { SharedLock } from './shared-locks';

const COMMAND_TIMEOUT_MS = 300;
const LOCK_TTL_MS = 400;
const RETENTION_SECONDS = 60;
const MAX_BODY_BYTES = 1024 * 1024;
const RETRY_AFTER_SECONDS = 10;

describeWithRedis()(SharedLocks.name, () => {
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
});
