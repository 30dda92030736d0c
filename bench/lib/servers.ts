import {
  type ChildProcess,
  spawn,
  type SpawnOptions,
  spawnSync,
} from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { Socket } from 'node:net';
import { dirname, join } from 'node:path';
import { freePort } from '../../test/support/free-port';

export const ROOT = join(__dirname, '..', '..');
/** The CPU every server under test runs on, alone; wrk and this runner take the other one. */
export const SERVER_CPU = '1';
export const LOAD_CPU = '0';
/**
 * The V8 flags the service runs with everywhere (package.json's `config.nodeFlags`, which
 * `npm run start:prod` and the Dockerfile's CMD pass too; see README).
 */
const NODE_FLAGS = (
  JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
    config: { nodeFlags: string };
  }
).config.nodeFlags
  .split(' ')
  .filter(Boolean);
/** Linux's clock ticks per second, in which /proc/<pid>/stat counts CPU time. */
const CLOCK_TICKS = 100;

/** One server under test, started on 127.0.0.1. */
export interface BenchServer {
  readonly name: string;
  readonly url: string;
  /** Peak resident memory of all its processes so far, in bytes (VmHWM). */
  peakRss(): number;
  /** CPU time (user plus system) all its processes have used so far, in seconds. */
  cpuSeconds(): number;
  /**
   * Peak anonymous resident memory (heap, buffers), sampled every 50 ms: RSS without the
   * file-backed pages of the executable and its libraries (about 50 MB for node).
   */
  peakAnonRss(): number;
  stop(): Promise<void>;
}

/** The service itself: the built `dist/main.js`, in production mode. */
export async function startService(
  name: string,
  upstream: string,
  cacheDir: string,
  env: Record<string, string> = {},
  /** Where the built service is: this checkout, or a reference build of another commit. */
  root = ROOT,
): Promise<BenchServer> {
  const port = await freePort();
  const child = pinned(
    process.execPath,
    [...NODE_FLAGS, join(root, 'dist', 'main.js')],
    {
      env: {
        PATH: process.env.PATH,
        NODE_ENV: 'production',
        NO_COLOR: '1',
        HOST: '127.0.0.1',
        PORT: String(port),
        CACHE_DIR: cacheDir,
        PICSUM_BASE_URL: upstream,
        CACHE_TTL_SECONDS: '3600',
        SHUTDOWN_DRAIN_MS: '0',
        // To compare V8 settings: BENCH_NODE_OPTIONS="--max-old-space-size=256" npm run bench
        // (a flag of package.json's config.nodeFlags wins over the same one in NODE_OPTIONS)
        ...(process.env.BENCH_NODE_OPTIONS
          ? { NODE_OPTIONS: process.env.BENCH_NODE_OPTIONS }
          : {}),
        ...env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  return processServer(name, child, port);
}

/** The naive baseline: NestJS on Express, reading the file from disk on every request. */
export async function startNaive(
  upstream: string,
  cacheDir: string,
): Promise<BenchServer> {
  const port = await freePort();
  return startTypeScript(
    'naive (Nest on Express, disk)',
    join('bench', 'compared', 'naive', 'main.ts'),
    port,
    { NAIVE_UPSTREAM: upstream, NAIVE_DIR: cacheDir, NAIVE_PORT: String(port) },
  );
}

/**
 * nginx from Debian as a proxy_cache, one worker process, configured by bench/compared/nginx.conf, its
 * cache bounded by `maxSize` (nginx's own syntax, e.g. `128m`).
 */
export async function startNginx(
  upstreamPort: number,
  prefix: string,
  maxSize = '512m',
  name = 'nginx proxy_cache',
): Promise<BenchServer> {
  const port = await freePort();
  // nginx's worker drops root for an unprivileged user, which must reach its cache and
  // temporary directories under our private work directory.
  for (const directory of [dirname(prefix), prefix]) {
    mkdirSync(directory, { recursive: true });
    chmodSync(directory, 0o755);
  }
  for (const name of [
    'cache',
    'proxy_temp',
    'client_body',
    'fastcgi_temp',
    'uwsgi_temp',
    'scgi_temp',
  ]) {
    mkdirSync(join(prefix, name), { recursive: true });
    chmodSync(join(prefix, name), 0o777);
  }
  const config = readFileSync(
    join(ROOT, 'bench', 'compared', 'nginx.conf'),
    'utf8',
  )
    .replaceAll('{{PREFIX}}', prefix)
    .replaceAll('{{PORT}}', String(port))
    .replaceAll('{{UPSTREAM_PORT}}', String(upstreamPort))
    .replaceAll('{{MAX_SIZE}}', maxSize);
  const configFile = join(prefix, 'nginx.conf');
  writeFileSync(configFile, config);
  const child = pinned('nginx', ['-p', prefix, '-c', configFile], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return processServer(name, child, port);
}

/**
 * Varnish from Debian, configured by bench/compared/varnish.vcl: `malloc` storage, grace on, one thread
 * pool, all its processes on the server CPU. `apiPort` and `imagePort` are the fake Picsum's.
 */
export async function startVarnish(
  apiPort: number,
  imagePort: number,
  workDir: string,
): Promise<BenchServer> {
  const port = await freePort();
  // varnishd drops root for its own users, which must read the VCL and its work directory.
  for (const directory of [dirname(workDir), workDir]) {
    mkdirSync(directory, { recursive: true });
    chmodSync(directory, 0o755);
  }
  const vcl = readFileSync(
    join(ROOT, 'bench', 'compared', 'varnish.vcl'),
    'utf8',
  )
    .replaceAll('{{API_PORT}}', String(apiPort))
    .replaceAll('{{IMAGE_PORT}}', String(imagePort));
  const vclFile = join(workDir, 'default.vcl');
  writeFileSync(vclFile, vcl);
  chmodSync(vclFile, 0o644);
  const child = pinned(
    'varnishd',
    [
      '-F',
      '-a',
      `127.0.0.1:${port}`,
      '-T',
      'none',
      '-n',
      join(workDir, 'instance'),
      '-f',
      vclFile,
      '-s',
      'malloc,512m',
      '-p',
      'thread_pools=1',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  return processServer('Varnish', child, port);
}

/**
 * The plain `node:http` anchor (bench/compared/node-http.ts), answering with the headers and
 * body of `replyFile` (JSON: `{ headers, bodyFile }`).
 */
export async function startNodeAnchor(replyFile: string): Promise<BenchServer> {
  const port = await freePort();
  return startTypeScript(
    'node:http (one Buffer)',
    join('bench', 'compared', 'node-http.ts'),
    port,
    { ANCHOR_REPLY: replyFile, ANCHOR_PORT: String(port) },
  );
}

/** A TypeScript file of this repository run by Node through ts-node, pinned, in production mode. */
function startTypeScript(
  name: string,
  script: string,
  port: number,
  env: Record<string, string>,
): Promise<BenchServer> {
  const child = pinned(
    process.execPath,
    ['-r', 'ts-node/register/transpile-only', join(ROOT, script)],
    {
      cwd: ROOT,
      env: {
        PATH: process.env.PATH,
        NODE_ENV: 'production',
        TS_NODE_PROJECT: join(ROOT, 'tsconfig.json'),
        ...env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  return processServer(name, child, port);
}

/** Starts `command` on SERVER_CPU; its children inherit the affinity. */
function pinned(
  command: string,
  args: string[],
  options: SpawnOptions,
): ChildProcess {
  return spawn('taskset', ['-c', SERVER_CPU, command, ...args], options);
}

async function processServer(
  name: string,
  child: ChildProcess,
  port: number,
): Promise<BenchServer> {
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<void>((resolve) =>
    child.on('exit', () => resolve()),
  );
  const deadline = Date.now() + 30_000;
  while (!(await accepts(port))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`${name} did not start:\n${output}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const pid = child.pid as number;
  const processes = () => [pid, ...descendantsOf(pid)];
  let peak = 0;
  let peakAnon = 0;
  const sampler = setInterval(() => {
    const anon = processes().reduce(
      (sum, each) => sum + statusKilobytes(each, 'RssAnon'),
      0,
    );
    peakAnon = Math.max(peakAnon, anon);
  }, 50);
  sampler.unref();
  return {
    name,
    url: `http://127.0.0.1:${port}`,
    peakRss: () => {
      const now = processes().reduce(
        (sum, each) => sum + statusKilobytes(each, 'VmHWM'),
        0,
      );
      peak = Math.max(peak, now);
      return peak;
    },
    peakAnonRss: () => peakAnon,
    cpuSeconds: () =>
      processes().reduce((sum, each) => sum + cpuTicks(each), 0) / CLOCK_TICKS,
    stop: async () => {
      clearInterval(sampler);
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    },
  };
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = new Socket();
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
    socket.connect(port, '127.0.0.1');
  });
}

/** A memory figure of /proc/<pid>/status (VmHWM, RssAnon, ...), in bytes; 0 once the process is gone. */
function statusKilobytes(pid: number, field: string): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status);
    return match ? Number(match[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** User plus system CPU time of a process, in clock ticks; 0 once it is gone. */
function cpuTicks(pid: number): number {
  try {
    // The command name (field 2) may hold spaces: count the fields after its closing paren.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[11]) + Number(fields[12]); // utime and stime: fields 14 and 15
  } catch {
    return 0;
  }
}

function descendantsOf(pid: number): number[] {
  return childrenOf(pid).flatMap((child) => [child, ...descendantsOf(child)]);
}

function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
}

/** The first line a command prints of its version (on stdout or stderr), or `not found`. */
export function versionOf(command: string, args: string[]): string {
  const result = spawnSync(command, args, { encoding: 'utf8' });
  if (result.error) {
    return `${command}: not found`;
  }
  const output = `${result.stdout}\n${result.stderr}`.trim();
  return output.split('\n')[0].trim();
}
