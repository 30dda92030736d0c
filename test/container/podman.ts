import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { errorMessage } from '../../src/common/error-message';

const execFileAsync = promisify(execFile);
const CONTAINERS_CONF = join(
  __dirname,
  '..',
  '..',
  'scripts',
  'podman',
  'containers.conf',
);

/** Runs `podman <args>` with the project's podman settings and returns its trimmed stdout. */
export async function podman(...args: string[]): Promise<string> {
  try {
    const { stdout } = await execFileAsync('podman', args, {
      env: { ...process.env, CONTAINERS_CONF },
      timeout: 60_000,
    });
    return stdout.trim();
  } catch (error) {
    const { stderr } = error as { stderr?: string };
    throw new Error(
      `podman ${args.join(' ')} failed: ${stderr || errorMessage(error)}`,
    );
  }
}

/**
 * One container of the image, run the way a hardened pod runs it: read-only root filesystem,
 * no capabilities, no privilege escalation, uid 1000, a tmpfs at /tmp, and a named volume at
 * /app/storage standing in for the pod's emptyDir. It shares the host's network so that it
 * reaches the fake upstream on 127.0.0.1 and listens on 127.0.0.1 itself, on a port the OS
 * picks (read back from its log).
 */
export class HardenedContainer {
  /** When the container was last (re)started, to read only that run's log. */
  private startedAt = new Date().toISOString();

  private constructor(
    readonly name: string,
    readonly volume: string,
  ) {}

  static async run(
    image: string,
    name: string,
    volume: string,
    env: Record<string, string>,
  ): Promise<HardenedContainer> {
    const container = new HardenedContainer(name, volume);
    const envArgs = Object.entries({
      HOST: '127.0.0.1',
      PORT: '0',
      ...env,
    }).flatMap(([key, value]) => ['--env', `${key}=${value}`]);
    await podman(
      'run',
      '--detach',
      '--name',
      name,
      '--network',
      'host',
      '--read-only',
      '--cap-drop=ALL',
      '--security-opt',
      'no-new-privileges',
      '--user',
      '1000',
      '--tmpfs',
      '/tmp',
      '--volume',
      `${volume}:/app/storage`,
      ...envArgs,
      image,
    );
    return container;
  }

  /** Waits until the service has logged its address since the container last started. */
  async url(timeoutMs = 30_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const logs = await podman('logs', '--since', this.startedAt, this.name);
      const ports = [...logs.matchAll(/Listening on 127\.0\.0\.1:(\d+)/g)];
      if (ports.length > 0) {
        return `http://127.0.0.1:${ports[ports.length - 1][1]}`;
      }
      if ((await this.inspect('{{.State.Running}}')) !== 'true') {
        throw new Error(`${this.name} exited:\n${logs}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    throw new Error(
      `${this.name} did not start:\n${await podman('logs', this.name)}`,
    );
  }

  /** `podman kill`: SIGKILL, as when a container crashes; resolves once it has exited. */
  async kill(): Promise<void> {
    await podman('kill', this.name);
    await podman('wait', this.name);
  }

  /** `podman start`: the same container again, on the same volume. */
  async start(): Promise<void> {
    this.startedAt = new Date().toISOString();
    await podman('start', this.name);
  }

  /** `podman stop`: SIGTERM, then SIGKILL after the grace period. */
  async stop(
    graceSeconds: number,
  ): Promise<{ exitCode: number; elapsedMs: number }> {
    const started = Date.now();
    await podman('stop', '--time', String(graceSeconds), this.name);
    const elapsedMs = Date.now() - started;
    return {
      exitCode: Number(await this.inspect('{{.State.ExitCode}}')),
      elapsedMs,
    };
  }

  inspect(format: string): Promise<string> {
    return podman('inspect', '--format', format, this.name);
  }

  /** `podman top`: one line per process, with the descriptors asked for. */
  async processes(...descriptors: string[]): Promise<string[][]> {
    const output = await podman('top', this.name, ...descriptors);
    return output
      .split('\n')
      .slice(1)
      .map((line) => line.trim().split(/\s+/));
  }

  exec(...command: string[]): Promise<string> {
    return podman('exec', this.name, ...command);
  }

  async remove(): Promise<void> {
    await podman('rm', '--force', '--time', '0', this.name).catch(() => {});
  }
}
