import {
  Inject,
  Injectable,
  Logger,
  type OnModuleDestroy,
  type OnModuleInit,
} from '@nestjs/common';
import type { ConfigType } from '@nestjs/config';
import { performance } from 'node:perf_hooks';
import { errorMessage } from '../../../common/error-message';
import { OutageLog } from '../../../common/outage-log';
import { sharedCacheConfig } from '../../../config/shared-cache.config';
import {
  type ClusterNodes,
  createRedisClient,
  isCommandTimeout,
  MAX_RECONNECT_DELAY_MS,
  type RedisClient,
  type RedisCommands,
  type ScannedNode,
  withDeadline,
} from './redis-client';

/** After a command timed out (a hung Redis), no command is sent for this long, then one tries again. */
const PAUSE_AFTER_TIMEOUT_MS = 1000;
/** How long start-up waits for the first connection, so the first requests can use the shared tier. */
const STARTUP_CONNECT_WAIT_MS = 3000;

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
  private client?: RedisClient;
  private subscriber?: RedisClient;
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
      if (isCommandTimeout(error)) {
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
    let listening: RedisClient = client;
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

  private createClient(): RedisClient {
    const client = createRedisClient(this.config, () => this.closing);
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

  private recordFailure(reason: string): void {
    this.lastFailure = reason;
    this.outage.failed(reason);
  }

  /** Resolves once connected, trying again every second while the first connection fails. */
  private async connect(client: RedisClient): Promise<void> {
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
