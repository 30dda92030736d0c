import { performance } from 'node:perf_hooks';
import { RedisConnection } from '../../src/image/cache/shared/redis-connection';
import { ReplicaNotices } from '../../src/image/cache/shared/replica-notices';
import { SharedCodec } from '../../src/image/cache/shared/shared-codec';
import { SharedKeys } from '../../src/image/cache/shared/shared-keys';
import { SharedLocks } from '../../src/image/cache/shared/shared-locks';
import { SharedRejections } from '../../src/image/cache/shared/shared-rejections';
import { SharedScan } from '../../src/image/cache/shared/shared-scan';
import { SharedTier } from '../../src/image/cache/shared/shared-tier';
import type { CacheMetrics } from '../../src/metrics/cache-metrics';
import type { FakeClock } from './fake-clock';

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
