import { Injectable, type OnApplicationBootstrap } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import { RedisConnection } from './redis-connection';
import { type Notice, SharedCodec } from './shared-codec';
import { SharedKeys } from './shared-keys';
import { SharedRejections } from './shared-rejections';

/** A notice as a replica publishes it: who sent it is added on the way out. */
export type OutgoingNotice = Notice extends infer N
  ? N extends Notice
    ? Omit<N, 'from'>
    : never
  : never;

/**
 * The notices the replicas exchange over Redis pub/sub: an image stored, a variant purged, a
 * fetch failed. A replica hears the others' (never its own), validated like anything read from
 * Redis; the listeners run first, then whoever waits for a notice of that variant wakes.
 */
@Injectable()
export class ReplicaNotices implements OnApplicationBootstrap {
  /** Tells this replica's own notices (and records) from the others'. */
  readonly replicaId = randomUUID();
  private readonly waiting = new Map<string, Set<() => void>>();
  private readonly listeners: ((notice: Notice) => void)[] = [];

  constructor(
    private readonly redis: RedisConnection,
    private readonly keys: SharedKeys,
    private readonly codec: SharedCodec,
    private readonly rejections: SharedRejections,
  ) {}

  onApplicationBootstrap(): void {
    if (this.redis.enabled) {
      this.redis.subscribe(this.keys.channel, (message) =>
        this.receive(message),
      );
    }
  }

  /** Calls `listener` with every notice another replica publishes. */
  onNotice(listener: (notice: Notice) => void): void {
    this.listeners.push(listener);
  }

  /** Resolves true when another replica publishes a notice for `key` within `ms`, false after that. */
  waitForNotice(key: string, ms: number): Promise<boolean> {
    return new Promise((resolve) => {
      const waiters = this.waiting.get(key) ?? new Set<() => void>();
      this.waiting.set(key, waiters);
      const wake = () => finish(true);
      const timer = setTimeout(() => finish(false), ms);
      const finish = (noticed: boolean) => {
        clearTimeout(timer);
        waiters.delete(wake);
        if (waiters.size === 0 && this.waiting.get(key) === waiters) {
          this.waiting.delete(key);
        }
        resolve(noticed);
      };
      waiters.add(wake);
    });
  }

  /** Tells the other replicas; while Redis is down, they find out by the locks and by asking Redis. */
  async publish(notice: OutgoingNotice): Promise<void> {
    try {
      await this.redis.run((redis) =>
        redis.publish(
          this.keys.channel,
          this.codec.encodeNotice({
            ...notice,
            from: this.replicaId,
          }),
        ),
      );
    } catch {
      // Redis is down.
    }
  }

  private receive(message: string): void {
    const notice = this.codec.decodeNotice(message);
    if ('invalid' in notice) {
      this.rejections.rejected(
        'notice',
        `${this.keys.channel} ${notice.key ?? '(no key)'}`,
        notice.invalid,
      );
      return;
    }
    if (notice.from === this.replicaId) {
      return;
    }
    // Listeners first: a waiter that wakes finds the state the notice brings.
    for (const listener of this.listeners) {
      listener(notice);
    }
    if (notice.key === null) {
      return;
    }
    for (const wake of [...(this.waiting.get(notice.key) ?? [])]) {
      wake();
    }
  }
}
