import {
  type ChildProcess,
  execFile,
  execFileSync,
  spawn,
} from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from './free-port';

const run = promisify(execFile);
const START_TIMEOUT_MS = 10_000;

/**
 * `describe` for specs that need a real Redis, or `describe.skip` with the reason printed when
 * `redis-server` is not installed. Never skipped in CI (`CI` set), where `.ci/run` installs it:
 * there a missing server fails the specs.
 */
export function describeWithRedis(): jest.Describe {
  try {
    execFileSync('redis-server', ['--version']);
    execFileSync('redis-cli', ['--version']);
    return describe;
  } catch {
    if (process.env.CI) {
      return describe;
    }
    process.stderr.write(
      'Skipping specs that need redis-server and redis-cli, which are not installed (Debian: apt-get install redis-server)\n',
    );
    return describe.skip;
  }
}

/**
 * One `RedisServer` for the calling test file, started before its first test and stopped after
 * its last; each test begins with it running and empty. Call inside a `describe`.
 */
export function useRedisServer(): () => RedisServer {
  let server: RedisServer | undefined;
  beforeAll(async () => {
    server = await RedisServer.start();
  });
  afterAll(async () => {
    await server?.stop();
  });
  beforeEach(async () => {
    await running().reset();
  });
  function running(): RedisServer {
    if (!server) {
      throw new Error('redis-server has not started yet');
    }
    return server;
  }
  return running;
}

/**
 * A real `redis-server` of its own, on a free port on 127.0.0.1 (or on `host`, such as the
 * test cluster's bridge address), without persistence, for one test file. It can be killed, hung (SIGSTOP) and started again on the same port.
 */
export class RedisServer {
  private child?: ChildProcess;
  private readonly directory = mkdtempSync(join(tmpdir(), 'redis-'));

  private constructor(
    readonly port: number,
    private readonly extraArguments: string[],
    readonly host: string,
  ) {}

  get url(): string {
    return `redis://${this.host}:${this.port}`;
  }

  static async start(
    extraArguments: string[] = [],
    host = '127.0.0.1',
  ): Promise<RedisServer> {
    const server = new RedisServer(await freePort(), extraArguments, host);
    await server.restart();
    return server;
  }

  /** Starts the server (again), with an empty dataset, and resolves once it answers. */
  async restart(): Promise<void> {
    this.child = spawn(
      'redis-server',
      [
        '--port',
        String(this.port),
        '--bind',
        this.host,
        // Off the loopback interface (the test cluster's bridge), clients come from other
        // network namespaces; protected mode would turn them away.
        '--protected-mode',
        this.host === '127.0.0.1' ? 'yes' : 'no',
        '--save',
        '',
        '--appendonly',
        'no',
        '--dir',
        this.directory,
        '--cluster-config-file',
        `nodes-${this.port}.conf`,
        ...this.extraArguments,
      ],
      { stdio: 'ignore' },
    );
    const deadline = Date.now() + START_TIMEOUT_MS;
    while (!(await this.answers())) {
      if (Date.now() > deadline) {
        this.child.kill('SIGKILL');
        throw new Error(`redis-server on port ${this.port} did not start`);
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  /** Runs `redis-cli` against this server, returning its output. */
  async cli(...args: string[]): Promise<string> {
    const { stdout } = await run('redis-cli', [
      '-h',
      this.host,
      '-p',
      String(this.port),
      ...args,
    ]);
    return stdout.trim();
  }

  /** Sends `signal` to the server: SIGKILL to crash it, SIGSTOP to hang it, SIGCONT to resume. */
  signal(signal: NodeJS.Signals): void {
    this.child?.kill(signal);
  }

  /** Kills the server and waits until it is gone. */
  async kill(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) {
      return;
    }
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGCONT');
    child.kill('SIGKILL');
    await exited;
  }

  async stop(): Promise<void> {
    await this.kill();
    rmSync(this.directory, { recursive: true, force: true });
  }

  /** Leaves the server running (resumed, or started again if a test killed it) and empty. */
  async reset(): Promise<void> {
    this.signal('SIGCONT');
    if ((await this.cli('ping').catch(() => '')) !== 'PONG') {
      await this.restart();
    }
    await this.cli('flushall');
  }

  private answers(): Promise<boolean> {
    return new Promise((resolve) => {
      const socket = connect(this.port, this.host);
      socket.setTimeout(1000);
      socket.once('connect', () => socket.write('PING\r\n'));
      socket.once('data', (data) => {
        socket.destroy();
        // A server with a password answers NOAUTH: it is up all the same.
        resolve(/^(\+PONG|-NOAUTH)/.test(data.toString()));
      });
      socket.once('error', () => resolve(false));
      socket.once('timeout', () => {
        socket.destroy();
        resolve(false);
      });
    });
  }
}

/** A Redis Cluster of three masters, each a `RedisServer`, made with `redis-cli --cluster create`. */
export class RedisCluster {
  private constructor(readonly nodes: RedisServer[]) {}

  /** Seed URLs, as `REDIS_CLUSTER_URLS` takes them. */
  get urls(): string {
    return this.nodes.map((node) => node.url).join(',');
  }

  static async start(): Promise<RedisCluster> {
    const nodes = await Promise.all(
      [1, 2, 3].map(() =>
        RedisServer.start([
          '--cluster-enabled',
          'yes',
          '--cluster-node-timeout',
          '2000',
        ]),
      ),
    );
    const cluster = new RedisCluster(nodes);
    await run('redis-cli', [
      '--cluster',
      'create',
      ...nodes.map((node) => `127.0.0.1:${node.port}`),
      '--cluster-yes',
    ]);
    const deadline = Date.now() + START_TIMEOUT_MS;
    for (const node of nodes) {
      while (
        !(await node.cli('cluster', 'info')).includes('cluster_state:ok')
      ) {
        if (Date.now() > deadline) {
          throw new Error('the Redis Cluster did not reach cluster_state:ok');
        }
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
    return cluster;
  }

  async stop(): Promise<void> {
    await Promise.all(this.nodes.map((node) => node.stop()));
  }
}
