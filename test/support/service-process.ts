import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

const MAIN = join(__dirname, '..', '..', 'dist', 'main.js');
const START_TIMEOUT_MS = 15_000;

/**
 * The built service (`dist/main.js`, as `npm run test:e2e` builds it) in a child process of its
 * own, so a test can kill it for real. It listens on 127.0.0.1 on a port the OS picks.
 */
export class ServiceProcess {
  output = '';
  readonly exited: Promise<{
    code: number | null;
    signal: NodeJS.Signals | null;
  }>;

  private constructor(private readonly child: ChildProcess) {
    child.stdout?.on(
      'data',
      (chunk: Buffer) => (this.output += chunk.toString()),
    );
    child.stderr?.on(
      'data',
      (chunk: Buffer) => (this.output += chunk.toString()),
    );
    this.exited = new Promise((resolve) =>
      child.on('exit', (code, signal) => resolve({ code, signal })),
    );
  }

  /** Starts the service and resolves once it listens, with its base URL. */
  static async start(
    env: Record<string, string>,
    nodeOptions: string[] = [],
  ): Promise<{ service: ServiceProcess; url: string }> {
    const service = ServiceProcess.spawn(env, nodeOptions);
    const url = await service.listening();
    return { service, url };
  }

  /** Starts the service without waiting for it, for tests of start-up failures. */
  static spawn(
    env: Record<string, string>,
    nodeOptions: string[] = [],
  ): ServiceProcess {
    if (!existsSync(MAIN)) {
      throw new Error(
        `${MAIN} does not exist: build first (npm test and npm run test:e2e do)`,
      );
    }
    const child = spawn(process.execPath, [...nodeOptions, MAIN], {
      env: {
        PATH: process.env.PATH,
        NO_COLOR: '1',
        HOST: '127.0.0.1',
        PORT: '0',
        SHUTDOWN_DRAIN_MS: '0',
        ...env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    return new ServiceProcess(child);
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  kill(signal: NodeJS.Signals): void {
    this.child.kill(signal);
  }

  private async listening(): Promise<string> {
    const deadline = Date.now() + START_TIMEOUT_MS;
    let exited = false;
    void this.exited.then(() => (exited = true));
    while (Date.now() < deadline && !exited) {
      const match = /Listening on 127\.0\.0\.1:(\d+)/.exec(this.output);
      if (match) {
        return `http://127.0.0.1:${match[1]}`;
      }
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    this.kill('SIGKILL');
    throw new Error(`The service did not start:\n${this.output}`);
  }
}
