import { performance } from 'node:perf_hooks';
import { createClient } from '@redis/client';
import { RedisConnection } from '../../src/image/cache/shared/redis-connection';
import { ReplicaNotices } from '../../src/image/cache/shared/replica-notices';
import { SharedCodec } from '../../src/image/cache/shared/shared-codec';
import { SharedKeys } from '../../src/image/cache/shared/shared-keys';
import { SharedLocks } from '../../src/image/cache/shared/shared-locks';
import { SharedRejections } from '../../src/image/cache/shared/shared-rejections';
import { SharedScan } from '../../src/image/cache/shared/shared-scan';
import { SharedTier } from '../../src/image/cache/shared/shared-tier';
import { CacheMetrics } from '../../src/metrics/cache-metrics';
import { FakeClock } from './fake-clock';
import type { RedisServer } from './redis-server';

/** One replica's parts of the shared tier, on its own connection. */
export interface SharedParts {
  tier: SharedTier;
  connection: RedisConnection;
  locks: SharedLocks;
  notices: ReplicaNotices;
  scan: SharedScan;
}

export interface SharedPartsOverrides {
  keyPrefix?: string;
  url?: string;
  password?: string;
  commandTimeoutMs?: number;
  lockTtlMs?: number;
  retentionSeconds?: number;
  maxBodyBytes?: number;
  retryAfterSeconds?: number;
}

/**
 * The shared tier's parts as a replica wires them, on the Redis at `url`, connected and
 * subscribed to the other replicas' notices. The caller closes `connection` when done
 * (`onModuleDestroy`).
 */
export async function openSharedParts(
  url: string,
  clock: FakeClock,
  metrics: CacheMetrics,
  overrides: SharedPartsOverrides = {},
): Promise<SharedParts> {
  const config = {
    urls: [overrides.url ?? url],
    cluster: false,
    displayName: url,
    password: overrides.password,
    keyPrefix: overrides.keyPrefix ?? 'test:',
    commandTimeoutMs: overrides.commandTimeoutMs ?? 300,
    lockTtlMs: overrides.lockTtlMs ?? 400,
    retentionSeconds: overrides.retentionSeconds ?? 60,
  };
  const connection = new RedisConnection(config);
  await connection.onModuleInit();
  const deadline = performance.now() + 5000;
  while (!connection.available) {
    if (performance.now() > deadline) {
      connection.onModuleDestroy();
      throw new Error(`no connection to ${url} within 5000 ms`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const keys = new SharedKeys(config);
  const codec = new SharedCodec(
    {
      maxBodyBytes: overrides.maxBodyBytes ?? 1024 * 1024,
      maxRetryAfterMs: (overrides.retryAfterSeconds ?? 10) * 1000,
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

/** The limits the shared tier's specs run with: short, so that timeouts and expiries come fast. */
export const COMMAND_TIMEOUT_MS = 300;
export const LOCK_TTL_MS = 400;
export const RETENTION_SECONDS = 60;
export const MAX_BODY_BYTES = 1024 * 1024;
export const RETRY_AFTER_SECONDS = 10;

/** What `useSharedParts` gives the specs of one describe block. */
export interface SharedPartsFixture {
  /** This test's clock, which every replica it opens shares. */
  readonly clock: FakeClock;
  /** This test's metrics, which every replica it opens counts into. */
  readonly metrics: CacheMetrics;
  /** Opens one more replica's parts on the test's Redis; closed after the test. */
  readonly open: (overrides?: SharedPartsOverrides) => Promise<SharedParts>;
  /** Writes `value` under `key` as a neighbour with access to the same Redis could. */
  readonly write: (
    key: string,
    value: Buffer | string,
    expiryMs?: number,
  ) => Promise<void>;
  /** `image_cache_shared_rejected_total{kind}` as scraped now, or `undefined` before the first. */
  readonly rejectedCount: (kind: string) => Promise<string | undefined>;
}

/**
 * For a describe block of the shared tier's specs on the real Redis `redis()`: each test gets a
 * fresh clock and metrics, and the replicas it opens are closed after it.
 */
export function useSharedParts(redis: () => RedisServer): SharedPartsFixture {
  let clock: FakeClock | undefined;
  let metrics: CacheMetrics | undefined;
  const opened: RedisConnection[] = [];
  beforeEach(() => {
    clock = new FakeClock();
    metrics = new CacheMetrics();
  });
  afterEach(() => {
    opened.splice(0).forEach((connection) => connection.onModuleDestroy());
    jest.restoreAllMocks();
  });
  const current = <T>(value: T | undefined): T => {
    if (value === undefined) {
      throw new Error('useSharedParts: only inside a test');
    }
    return value;
  };
  return {
    get clock() {
      return current(clock);
    },
    get metrics() {
      return current(metrics);
    },
    open: async (overrides = {}) => {
      const parts = await openSharedParts(
        redis().url,
        current(clock),
        current(metrics),
        {
          commandTimeoutMs: COMMAND_TIMEOUT_MS,
          lockTtlMs: LOCK_TTL_MS,
          retentionSeconds: RETENTION_SECONDS,
          maxBodyBytes: MAX_BODY_BYTES,
          retryAfterSeconds: RETRY_AFTER_SECONDS,
          ...overrides,
        },
      );
      opened.push(parts.connection);
      return parts;
    },
    write: async (key, value, expiryMs) => {
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
    },
    rejectedCount: async (kind) => {
      const text = await current(metrics).scrape();
      return new RegExp(
        `^image_cache_shared_rejected_total\\{kind="${kind}"\\} (\\d+)$`,
        'm',
      ).exec(text)?.[1];
    },
  };
}
