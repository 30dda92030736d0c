import {
  Inject,
  Injectable,
  Logger,
  type OnModuleDestroy,
  type OnModuleInit,
} from '@nestjs/common';
import type { ConfigType } from '@nestjs/config';
import { performance } from 'node:perf_hooks';
import {
  createClient,
  createCluster,
  RESP_TYPES,
  type RedisClientOptions,
  TimeoutError,
} from 'redis';
import { errorMessage } from '../../../common/error-message';
import { OutageLog } from '../../../common/outage-log';
import { sharedCacheConfig } from '../../../config/shared-cache.config';

/** After a command timed out (a hung Redis), no command is sent for this long, then one tries again. */
const PAUSE_AFTER_TIMEOUT_MS = 1000;
/** How long start-up waits for the first connection, so the first requests can use the shared tier. */
const STARTUP_CONNECT_WAIT_MS = 3000;
/** Longest wait between two attempts to reconnect. */
const MAX_RECONNECT_DELAY_MS = 1000;

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
interface ScannedNode {
  scan(
    cursor: string,
    options: { MATCH: string; COUNT: number },
  ): Promise<{ cursor: string | Buffer; keys: (string | Buffer)[] }>;
}

/** What a cluster client adds: its masters, each a node to scan. */
interface ClusterNodes {
  readonly masters: readonly unknown[];
  nodeClient(node: unknown): Promise<ScannedNode>;
}

/** A client that is a standalone Redis or a cluster, as far as this class needs to know. */
interface Client extends RedisCommands {
  readonly isReady: boolean;
  connect(): Promise<unknown>;
  destroy(): void;
  on(event: 'error', listener: (error: Error) => void): unknown;
  on(event: 'ready', listener: () => void): unknown;
  subscribe(
    channel: string,
    listener: (message: string) => void,
  ): Promise<void>;
  duplicate(): Client;
}

/** Where a SCAN walk stands: the master it is on (always 0 on a standalone Redis) and SCAN's cursor there. */
export interface ScanPosition {
  readonly node: number;
  readonly cursor: string;
}

export const FIRST_SCAN_POSITION: ScanPosition = { node: 0, cursor: '0' };

/** Thrown for any command the shared tier could not run; the caller goes on without Redis. */
export class RedisUnavailableError extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = RedisUnavailableError.name;
  }
}

/**
 * The connection to the Redis (standalone or cluster) of `REDIS_URL` / `REDIS_CLUSTER_URLS`.
 * Redis is an optimisation here, never a dependency: a command fails after
 * `REDIS_COMMAND_TIMEOUT_MS` at the latest, fails at once while the client is disconnected
 * (no offline queue), and after a timeout no command is sent for a second, so while Redis
 * hangs at most one request a second waits for it. The client reconnects by itself; an
 * outage is logged when it starts and when it ends.
 */
@Injectable()
export class RedisConnection implements OnModuleInit, OnModuleDestroy {
  private readonly logger = new Logger('SharedTier');
  private readonly outage: OutageLog;
  private client?: Client;
  private subscriber?: Client;
  private pausedUntil = -Infinity;
  /** Why the last command failed, while no command has worked since (what readiness shows). */
  private lastFailure?: string;
  private closing = false;

  constructor(
    @Inject(sharedCacheConfig.KEY)
    private readonly config: ConfigType<typeof sharedCacheConfig>,
  ) {
    this.outage = new OutageLog(
      this.logger,
      `Commands to the shared tier's Redis at ${config.displayName}`,
    );
  }

  /** Whether a Redis is configured at all. */
  get enabled(): boolean {
    return this.config.urls.length > 0;
  }

  /** Whether a command sent now may work: connected, and not paused after a timeout. */
  get available(): boolean {
    return (
      this.client !== undefined &&
      this.client.isReady &&
      performance.now() >= this.pausedUntil
    );
  }

  /** Why the shared tier is not available, for readiness; `undefined` while it is. */
  get problem(): string | undefined {
    if (!this.enabled) {
      return undefined;
    }
    if (this.client?.isReady !== true) {
      return 'not connected';
    }
    return this.lastFailure;
  }

  /**
   * Connects, waiting at most a few seconds: a Redis that is down at start delays nothing
   * more, and the client goes on trying in the background.
   */
  async onModuleInit(): Promise<void> {
    if (!this.enabled) {
      return;
    }
    this.client = this.createClient();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.connect(this.client),
      new Promise((resolve) => {
        timer = setTimeout(resolve, STARTUP_CONNECT_WAIT_MS);
      }),
    ]);
    clearTimeout(timer);
  }

  onModuleDestroy(): void {
    this.closing = true;
    this.subscriber?.destroy();
    this.client?.destroy();
  }

  /** Runs `command`, throwing `RedisUnavailableError` at once when Redis is known to be unavailable. */
  async run<T>(command: (redis: RedisCommands) => Promise<T>): Promise<T> {
    const client = this.client;
    if (!client || !this.available) {
      throw new RedisUnavailableError(this.problem ?? 'not configured');
    }
    try {
      const result = await withDeadline(
        command(client),
        this.config.commandTimeoutMs,
      );
      this.lastFailure = undefined;
      this.outage.succeeded();
      return result;
    } catch (error) {
      let reason = errorMessage(error);
      if (error instanceof TimeoutError) {
        reason = `no reply within REDIS_COMMAND_TIMEOUT_MS (${this.config.commandTimeoutMs} ms)`;
        this.pausedUntil = performance.now() + PAUSE_AFTER_TIMEOUT_MS;
      }
      this.recordFailure(reason);
      throw new RedisUnavailableError(reason);
    }
  }

  /**
   * One SCAN step for keys matching `pattern` (never KEYS, which blocks Redis), from
   * `position`: the keys it found, and where the walk goes on, or `undefined` when every master
   * of a cluster has been walked. A step is bounded like any command; `count` is SCAN's
   * `COUNT` hint, so a step may find fewer keys, or none, before the walk ends.
   */
  async scanPage(
    position: ScanPosition,
    pattern: string,
    count: number,
  ): Promise<{ keys: string[]; next: ScanPosition | undefined }> {
    const client = this.client;
    if (!client || !this.available) {
      throw new RedisUnavailableError(this.problem ?? 'not configured');
    }
    const masters = this.config.cluster
      ? (client as unknown as ClusterNodes).masters
      : [undefined];
    if (position.node >= masters.length) {
      return { keys: [], next: undefined };
    }
    const node: ScannedNode = this.config.cluster
      ? await (client as unknown as ClusterNodes).nodeClient(
          masters[position.node],
        )
      : (client as unknown as ScannedNode);
    const reply = await this.run(() =>
      node.scan(position.cursor, { MATCH: pattern, COUNT: count }),
    );
    const cursor = reply.cursor.toString();
    const next =
      cursor !== '0'
        ? { node: position.node, cursor }
        : position.node + 1 < masters.length
          ? { node: position.node + 1, cursor: '0' }
          : undefined;
    return { keys: reply.keys.map((key) => key.toString()), next };
  }

  /**
   * Calls `listener` with every message published on `channel`, from when Redis first answers
   * and after every reconnection. Never waits for Redis: start-up goes on while it is down. On
   * a standalone Redis a second connection listens; a cluster client keeps its own.
   */
  subscribe(channel: string, listener: (message: string) => void): void {
    const client = this.client;
    if (!client) {
      return;
    }
    let listening: Client = client;
    if (!this.config.cluster) {
      listening = this.subscriber = client.duplicate();
      listening.on('error', () => undefined); // the command connection reports the outage
    }
    void this.untilDone(async () => {
      if (listening !== client) {
        await listening.connect();
      }
      await listening.subscribe(channel, listener);
    });
  }

  private recordFailure(reason: string): void {
    this.lastFailure = reason;
    this.outage.failed(reason);
  }

  private createClient(): Client {
    const { password, commandTimeoutMs } = this.config;
    // node-redis lets a URL's password win over the `password` option: REDIS_PASSWORD must win.
    const urls =
      password === undefined
        ? this.config.urls
        : this.config.urls.map(withoutPassword);
    const socket = {
      connectTimeout: commandTimeoutMs,
      reconnectStrategy: (retries: number) =>
        this.closing
          ? false
          : Math.min(50 * 2 ** retries, MAX_RECONNECT_DELAY_MS),
    };
    const options = {
      disableOfflineQueue: true,
      commandOptions: {
        timeout: commandTimeoutMs,
        typeMapping: { [RESP_TYPES.BLOB_STRING]: Buffer },
      },
    } satisfies RedisClientOptions;
    let client: Client;
    if (this.config.cluster) {
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
      }) as unknown as Client;
    } else {
      client = createClient({
        ...options,
        url: urls[0],
        // Overrides the URL's password.
        ...(password === undefined ? {} : { password }),
        socket,
      }) as unknown as Client;
    }
    client.on('error', (error) => {
      if (!this.closing) {
        this.recordFailure(errorMessage(error));
      }
    });
    client.on('ready', () => {
      this.pausedUntil = -Infinity;
      this.lastFailure = undefined;
      this.outage.succeeded();
    });
    return client;
  }

  /** Resolves once connected, trying again every second while the first connection fails. */
  private async connect(client: Client): Promise<void> {
    if (await this.untilDone(() => client.connect())) {
      this.logger.log(`Shared tier on Redis at ${this.config.displayName}`);
    }
  }

  /**
   * Runs `step` until it succeeds, waiting a second after each failure (which the outage log
   * counts); false if the service closed first. The client reconnects by itself once it has
   * connected, but not before.
   */
  private async untilDone(step: () => Promise<unknown>): Promise<boolean> {
    while (!this.closing) {
      try {
        await step();
        return true;
      } catch (error) {
        this.recordFailure(errorMessage(error));
        await new Promise((resolve) =>
          setTimeout(resolve, MAX_RECONNECT_DELAY_MS).unref(),
        );
      }
    }
    return false;
  }
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
function withDeadline<T>(reply: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new TimeoutError()), ms);
  });
  reply.catch(() => undefined); // rejected once the connection closes, after the deadline
  return Promise.race([reply, deadline]).finally(() => clearTimeout(timer));
}
