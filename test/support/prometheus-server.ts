import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './free-port';

const START_TIMEOUT_MS = 20_000;

/** One result of an instant query: its labels and value. */
export interface InstantSample {
  readonly metric: Record<string, string>;
  readonly value: number;
}

/**
 * A real Prometheus (Debian's `prometheus`) on a free port on 127.0.0.1, with a generated
 * configuration that scrapes `targets` every second and evaluates `rules` every second, and
 * its own temporary storage. Read back through its HTTP API.
 */
export class PrometheusServer {
  private constructor(
    private readonly child: ChildProcess,
    private readonly directory: string,
    readonly url: string,
  ) {}

  static async start(options: {
    job: string;
    targets: string[];
    rules?: string;
  }): Promise<PrometheusServer> {
    const directory = mkdtempSync(join(tmpdir(), 'prometheus-'));
    const rulesFile = join(directory, 'rules.yaml');
    if (options.rules !== undefined) {
      writeFileSync(rulesFile, options.rules);
    }
    const config = {
      global: { scrape_interval: '1s', evaluation_interval: '1s' },
      rule_files: options.rules === undefined ? [] : [rulesFile],
      scrape_configs: [
        {
          job_name: options.job,
          scrape_interval: '1s',
          scrape_timeout: '1s',
          static_configs: [{ targets: options.targets }],
        },
      ],
    };
    // JSON is YAML: no YAML writer needed.
    writeFileSync(join(directory, 'prometheus.yml'), JSON.stringify(config));
    const port = await freePort();
    const child = spawn(
      'prometheus',
      [
        `--config.file=${join(directory, 'prometheus.yml')}`,
        `--storage.tsdb.path=${join(directory, 'data')}`,
        `--web.listen-address=127.0.0.1:${port}`,
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let log = '';
    child.stderr?.on('data', (chunk: Buffer) => (log += chunk.toString()));
    const server = new PrometheusServer(
      child,
      directory,
      `http://127.0.0.1:${port}`,
    );
    const deadline = Date.now() + START_TIMEOUT_MS;
    while (!(await server.ready())) {
      if (Date.now() > deadline || child.exitCode !== null) {
        await server.stop();
        throw new Error(`prometheus did not start:\n${log.slice(-2000)}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    return server;
  }

  /** An instant query through `/api/v1/query`. */
  async query(promql: string): Promise<InstantSample[]> {
    const response = await fetch(
      `${this.url}/api/v1/query?query=${encodeURIComponent(promql)}`,
    );
    const body = (await response.json()) as {
      status: string;
      error?: string;
      data?: {
        result: { metric: Record<string, string>; value: [number, string] }[];
      };
    };
    if (body.status !== 'success' || !body.data) {
      throw new Error(
        `query ${promql} failed: ${body.error ?? response.status}`,
      );
    }
    return body.data.result.map(({ metric, value }) => ({
      metric,
      value: Number(value[1]),
    }));
  }

  /** Polls `promql` until `accept` takes its result, or fails after `timeoutMs`. */
  async waitFor(
    promql: string,
    accept: (samples: InstantSample[]) => boolean,
    timeoutMs = 20_000,
  ): Promise<InstantSample[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const samples = await this.query(promql);
      if (accept(samples)) {
        return samples;
      }
      if (Date.now() > deadline) {
        throw new Error(
          `${promql} gave ${JSON.stringify(samples)} for ${timeoutMs} ms; targets: ${await this.targets()}`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }

  /** Each target's health and last error, for a failure's message. */
  private async targets(): Promise<string> {
    const body = (await (await fetch(`${this.url}/api/v1/targets`)).json()) as {
      data: {
        activeTargets: {
          scrapeUrl: string;
          health: string;
          lastError: string;
        }[];
      };
    };
    return JSON.stringify(
      body.data.activeTargets.map(({ scrapeUrl, health, lastError }) => ({
        scrapeUrl,
        health,
        lastError,
      })),
    );
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      const exited = new Promise((resolve) => this.child.once('exit', resolve));
      this.child.kill('SIGTERM');
      await exited;
    }
    rmSync(this.directory, { recursive: true, force: true });
  }

  private async ready(): Promise<boolean> {
    try {
      return (await fetch(`${this.url}/-/ready`)).ok;
    } catch {
      return false;
    }
  }
}
