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
import { createClient } from 'redis';
import { RedisConnection } from './redis-connection';
import { SharedScan } from './shared-scan';
import { FIRST_SCAN_POSITION, type ScanPosition } from './redis-connection';

const COMMAND_TIMEOUT_MS = 300;
const LOCK_TTL_MS = 400;
const RETENTION_SECONDS = 60;
const MAX_BODY_BYTES = 1024 * 1024;
const RETRY_AFTER_SECONDS = 10;

describeWithRedis()(SharedScan.name, () => {
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

  it('walks every entry a SCAN page at a time, each read from its header alone', async () => {
    const { tier, scan } = await openTier();
    const keys = Array.from({ length: 25 }, (_, i) => `${i + 1}x10`);
    for (const key of keys) {
      await tier.save(cachedImageOf(key, key, clock.now()));
    }

    const seen: string[] = [];
    let position: ScanPosition | undefined = FIRST_SCAN_POSITION;
    let pages = 0;
    while (position) {
      const page = await scan.entriesPage(position, 5);
      seen.push(...page.entries.map((entry) => entry.key));
      expect(page.entries.every((entry) => entry.bytes !== undefined)).toBe(
        true,
      );
      position = page.next;
      pages += 1;
    }

    expect(seen.sort()).toEqual([...keys].sort());
    expect(pages).toBeGreaterThan(1);
    await expect(scan.entryOf('404x404')).resolves.toBeUndefined();
  });
});
