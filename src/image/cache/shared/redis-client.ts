import type * as NodeRedis from '@redis/client';
import type { RedisClientOptions } from '@redis/client';
import type { ConfigType } from '@nestjs/config';
import type { sharedCacheConfig } from '../../../config/shared-cache.config';

/**
 * node-redis (its client alone, without the modules of the `redis` package), loaded when the
 * first client is created: a service without `REDIS_URL` never loads its 500 files, about 5 MB
 * of heap that would count against the memory bound of every pod.
 */
function nodeRedis(): typeof NodeRedis {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return require('@redis/client') as typeof NodeRedis;
}

/** Whether `error` is a command that got no reply in time (node-redis' own timeout, or `withDeadline`'s). */
export function isCommandTimeout(error: unknown): boolean {
  return error instanceof nodeRedis().TimeoutError;
}

/** Longest wait between two attempts to reconnect. */
export const MAX_RECONNECT_DELAY_MS = 1000;

/** The commands the shared tier sends, the same on a standalone Redis and on a cluster. */
export interface RedisCommands {
  get(key: string): Promise<Buffer | null>;
  getRange(key: string, start: number, end: number): Promise<Buffer>;
  pTTL(key: string): Promise<number>;
  set(
    key: string,
    value: Buffer | string,
    options: {
      condition?: 'NX';
      expiration: { type: 'PX'; value: number };
    },
  ): Promise<string | null>;
  eval(
    script: string,
    options: { keys: string[]; arguments: (string | Buffer)[] },
  ): Promise<unknown>;
  publish(channel: string, message: string): Promise<number>;
  del(keys: string[]): Promise<number>;
}

/** One node's keyspace, walked with SCAN. */
export interface ScannedNode {
  scan(
    cursor: string,
    options: { MATCH: string; COUNT: number },
  ): Promise<{ cursor: string | Buffer; keys: (string | Buffer)[] }>;
}

/** What a cluster client adds: its masters, each a node to scan. */
export interface ClusterNodes {
  readonly masters: readonly unknown[];
  nodeClient(node: unknown): Promise<ScannedNode>;
}

/** A client that is a standalone Redis or a cluster, as far as `RedisConnection` needs to know. */
export interface RedisClient extends RedisCommands {
  readonly isReady: boolean;
  connect(): Promise<unknown>;
  destroy(): void;
  on(event: 'error', listener: (error: Error) => void): unknown;
  on(event: 'ready', listener: () => void): unknown;
  subscribe(
    channel: string,
    listener: (message: string) => void,
  ): Promise<void>;
  duplicate(): RedisClient;
}

/**
 * A node-redis client for the Redis of `config`, standalone or cluster, not yet connected: no
 * offline queue, every command bounded by `REDIS_COMMAND_TIMEOUT_MS`, bulk strings as Buffers,
 * and a reconnection strategy that stops once `closing()` says so. `REDIS_PASSWORD` wins over a
 * password in the URL; a cluster's nodes take credentials and TLS from the first seed URL.
 */
export function createRedisClient(
  config: ConfigType<typeof sharedCacheConfig>,
  closing: () => boolean,
): RedisClient {
  const { password, commandTimeoutMs } = config;
  // node-redis lets a URL's password win over the `password` option: REDIS_PASSWORD must win.
  const urls =
    password === undefined ? config.urls : config.urls.map(withoutPassword);
  const socket = {
    connectTimeout: commandTimeoutMs,
    reconnectStrategy: (retries: number) =>
      closing() ? false : Math.min(50 * 2 ** retries, MAX_RECONNECT_DELAY_MS),
  };
  const { createClient, createCluster, RESP_TYPES } = nodeRedis();
  const options = {
    disableOfflineQueue: true,
    commandOptions: {
      timeout: commandTimeoutMs,
      typeMapping: { [RESP_TYPES.BLOB_STRING]: Buffer },
    },
  } satisfies RedisClientOptions;
  let client: RedisClient;
  if (config.cluster) {
    // Nodes found through the seeds take credentials and TLS from the first seed URL.
    const seed = new URL(urls[0]);
    client = createCluster({
      rootNodes: urls.map((url) => ({ url })),
      defaults: {
        ...options,
        ...(seed.username
          ? { username: decodeURIComponent(seed.username) }
          : {}),
        password:
          password ??
          (seed.password ? decodeURIComponent(seed.password) : undefined),
        socket: {
          ...socket,
          ...(seed.protocol === 'rediss:' ? { tls: true } : {}),
        },
      },
      commandOptions: options.commandOptions,
    }) as unknown as RedisClient;
  } else {
    client = createClient({
      ...options,
      url: urls[0],
      // Overrides the URL's password.
      ...(password === undefined ? {} : { password }),
      socket,
    }) as unknown as RedisClient;
  }
  return client;
}

function withoutPassword(text: string): string {
  const url = new URL(text);
  url.password = '';
  return url.toString();
}

/**
 * `reply`, or a `TimeoutError` after `ms`. node-redis' own command timeout covers only the
 * wait to be written, not the wait for the reply, which a hung server never sends; the reply
 * that comes late is dropped.
 */
export function withDeadline<T>(reply: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new (nodeRedis().TimeoutError)()), ms);
  });
  reply.catch(() => undefined); // rejected once the connection closes, after the deadline
  return Promise.race([reply, deadline]).finally(() => clearTimeout(timer));
}
