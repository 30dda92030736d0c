/**
 * `npm run bench`: the service against nginx's proxy_cache and a naive baseline, and the
 * service with its shared tier on a real redis-server, all on 127.0.0.1 in front of the same
 * fake Picsum, in interleaved rounds. Prints a Markdown table
 * and writes it to bench/RESULTS.md. Settings: BENCH_ROUNDS (5), BENCH_SECONDS (4),
 * BENCH_WARMUP_SECONDS (3).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { FakePicsum } from '../test/fake-picsum/fake-picsum.server';
import { diskUsage } from '../test/support/disk-usage';
import { RedisServer } from '../test/support/redis-server';
import {
  type BenchServer,
  ROOT,
  startNaive,
  startNginx,
  startService,
  versionOf,
} from './servers';
import { type LoadResult, type RequestMix, runWrk, zipfMix } from './wrk';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 4);
/** Load before the measured rounds, so every server runs its steady state (Node: optimised code). */
const WARMUP_SECONDS = Number(process.env.BENCH_WARMUP_SECONDS ?? 3);
const CONNECTIONS = [8, 64];
const IMAGE_BYTES = 200_000;
const STAMPEDE_REQUESTS = 100;
const MIB = 1024 * 1024;
const SERVICE = 'image-cache';
const SERVICE_WITH_REDIS = 'image-cache + Redis';

const HOT: RequestMix = { name: 'hot', paths: ['/image'], weights: [1] };
/** 200 variants, about 40 MB: they fit the default 64 MiB memory tier. */
const WORKING_SET = zipfMix(
  'zipf-200',
  Array.from({ length: 200 }, (_, i) => `/image?width=${1000 + i}&height=800`),
);

interface Row {
  scenario: string;
  connections: number;
  server: string;
  result: LoadResult;
}

async function main(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), 'image-cache-bench-'));
  const upstream = new FakePicsum();
  upstream.jpegBytes = IMAGE_BYTES;
  await upstream.start();
  const upstreamPort = Number(new URL(upstream.baseUrl).port);
  const servers: BenchServer[] = [];
  const redis = await RedisServer.start();
  try {
    servers.push(
      await startService(SERVICE, upstream.baseUrl, join(work, 'service')),
      await startNginx(upstreamPort, join(work, 'nginx')),
      await startNaive(upstream.baseUrl, join(work, 'naive')),
    );
    const [service, nginx] = servers;

    log('warming every cache with the hot image and the 200 variants');
    for (const server of servers) {
      await warm(server, [...HOT.paths, ...WORKING_SET.paths]);
    }

    const rows: Row[] = [];
    for (const mix of [HOT, WORKING_SET]) {
      for (const server of servers) {
        await runWrk(server.url, mix, 64, WARMUP_SECONDS, work);
      }
      for (const connections of CONNECTIONS) {
        const results = new Map<string, LoadResult[]>();
        for (let round = 1; round <= ROUNDS; round++) {
          // Every other round in reverse order, so no server always runs right after the
          // same one, or always first while the machine is cool.
          const order = round % 2 === 0 ? [...servers].reverse() : servers;
          for (const server of order) {
            const result = await runWrk(
              server.url,
              mix,
              connections,
              SECONDS,
              work,
            );
            results.set(server.name, [
              ...(results.get(server.name) ?? []),
              result,
            ]);
            server.peakRss();
            log(
              `${mix.name} c=${connections} round ${round} ${server.name}: ${Math.round(result.requestsPerSecond)} req/s, p99 ${result.p99Ms.toFixed(2)} ms`,
            );
          }
        }
        for (const server of servers) {
          rows.push({
            scenario: mix.name,
            connections,
            server: server.name,
            result: median(results.get(server.name) ?? []),
          });
        }
      }
    }

    const rss = servers.map((server) => ({
      name: server.name,
      bytes: server.peakRss(),
      anonBytes: server.peakAnonRss(),
    }));
    const stampede = await stampedes(servers, upstream);
    const overBudget = await largeWorkingSet(upstream, work);
    const sharedTier = await sharedTierCost(upstream, redis, work);

    const report = renderReport(
      rows,
      rss,
      stampede,
      overBudget,
      sharedTier,
      nginx.name,
      service.name,
    );
    process.stdout.write(`\n${report}`);
    // A shortened run is for trying things out; only a full one replaces the recorded results.
    const shortened = [
      'BENCH_ROUNDS',
      'BENCH_SECONDS',
      'BENCH_WARMUP_SECONDS',
    ].some((name) => process.env[name] !== undefined);
    if (shortened) {
      log('BENCH_* settings changed: bench/RESULTS.md left as it was');
    } else {
      writeFileSync(join(ROOT, 'bench', 'RESULTS.md'), report);
      log('wrote bench/RESULTS.md');
    }
  } finally {
    for (const server of servers) {
      await server.stop();
    }
    await redis.stop();
    await upstream.stop();
    rmSync(work, { recursive: true, force: true });
  }
}

/** Requests every path once, in order, and checks each answers 200 with an image. */
async function warm(
  server: BenchServer,
  paths: readonly string[],
): Promise<void> {
  for (const path of paths) {
    const response = await fetch(`${server.url}${path}`);
    const body = await response.arrayBuffer();
    if (response.status !== 200 || body.byteLength < IMAGE_BYTES / 2) {
      throw new Error(
        `${server.name} answered ${path} with ${response.status}, ${body.byteLength} bytes`,
      );
    }
  }
}

/** Upstream fetches caused by 100 concurrent requests for one key nobody has cached yet. */
async function stampedes(
  servers: BenchServer[],
  upstream: FakePicsum,
): Promise<{ name: string; fetches: number; errors: number }[]> {
  const results = [];
  upstream.delayMs = 200;
  for (const [index, server] of servers.entries()) {
    const path = `/image?width=${3000 + index}&height=700`;
    const before = upstream.fetches;
    const statuses = await Promise.all(
      Array.from({ length: STAMPEDE_REQUESTS }, async () => {
        const response = await fetch(`${server.url}${path}`);
        await response.arrayBuffer();
        return response.status;
      }),
    );
    results.push({
      name: server.name,
      fetches: upstream.fetches - before,
      errors: statuses.filter((status) => status !== 200).length,
    });
    log(
      `stampede ${server.name}: ${upstream.fetches - before} upstream fetch(es)`,
    );
  }
  upstream.delayMs = 0;
  return results;
}

/**
 * What setting `REDIS_URL` costs a hit in memory (it should cost nothing: such a hit sends
 * Redis no command): the hot image at 8 and 64 connections, the service with and without it.
 * Two processes of the very same service differ by up to 10% on this path, and the one
 * started second tends to lose; so each round starts a fresh pair, each order in half of the
 * rounds, and the figure is the geometric mean of the rounds' ratios, in which the
 * advantage of starting first cancels out.
 */
async function sharedTierCost(
  upstream: FakePicsum,
  redis: RedisServer,
  work: string,
): Promise<SharedTierCost[]> {
  const ratios = new Map<number, number[]>(CONNECTIONS.map((c) => [c, []]));
  const rates = new Map<string, number[]>();
  const rounds = 2 * Math.ceil(ROUNDS / 2);
  for (let round = 1; round <= rounds; round++) {
    const names = [SERVICE, SERVICE_WITH_REDIS];
    const order = round % 2 === 0 ? names.reverse() : names;
    const pair: BenchServer[] = [];
    try {
      for (const name of order) {
        pair.push(
          await startService(
            name,
            upstream.baseUrl,
            join(work, `shared-${round}-${pair.length}`),
            name === SERVICE_WITH_REDIS ? { REDIS_URL: redis.url } : {},
          ),
        );
      }
      for (const server of pair) {
        await warm(server, [...HOT.paths, ...WORKING_SET.paths]);
        await runWrk(server.url, HOT, 64, WARMUP_SECONDS, work);
      }
      for (const connections of CONNECTIONS) {
        const rate = new Map<string, number>();
        for (const server of pair) {
          const result = await runWrk(
            server.url,
            HOT,
            connections,
            SECONDS,
            work,
          );
          rate.set(server.name, result.requestsPerSecond);
          const key = `${server.name} c=${connections}`;
          rates.set(key, [...(rates.get(key) ?? []), result.requestsPerSecond]);
        }
        const ratio =
          (rate.get(SERVICE_WITH_REDIS) ?? 0) / (rate.get(SERVICE) ?? 1);
        ratios.get(connections)?.push(ratio);
        log(
          `shared tier round ${round} c=${connections}: with REDIS_URL ${Math.round(rate.get(SERVICE_WITH_REDIS) ?? 0)} req/s, without ${Math.round(rate.get(SERVICE) ?? 0)} req/s, ${ratio.toFixed(2)}x`,
        );
      }
    } finally {
      for (const server of pair) {
        await server.stop();
      }
    }
  }
  const middle = (values: number[]) =>
    [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
  return CONNECTIONS.map((connections) => ({
    connections,
    without: middle(rates.get(`${SERVICE} c=${connections}`) ?? [0]),
    with: middle(rates.get(`${SERVICE_WITH_REDIS} c=${connections}`) ?? [0]),
    ratio: geometricMean(ratios.get(connections) ?? [0]),
    ratios: ratios.get(connections) ?? [],
  }));
}

interface SharedTierCost {
  connections: number;
  /** Median req/s without and with `REDIS_URL`. */
  without: number;
  with: number;
  /** Geometric mean over rounds of the ratio with / without, and each round's. */
  ratio: number;
  ratios: number[];
}

/**
 * A working set larger than both budgets (1000 variants, about 200 MB, against 64 MiB of
 * memory and 128 MiB of disk): peak RSS, and the peak disk usage sampled during the run.
 */
async function largeWorkingSet(upstream: FakePicsum, work: string) {
  const cacheDir = join(work, 'over-budget');
  const diskMaxBytes = 128 * MIB;
  const server = await startService(
    'image-cache (over budget)',
    upstream.baseUrl,
    cacheDir,
    {
      CACHE_MEMORY_MAX_SIZE: '64Mi',
      CACHE_DISK_MAX_SIZE: '128Mi',
      UPSTREAM_QUEUE_TIMEOUT_MS: '10000',
    },
  );
  try {
    const mix: RequestMix = {
      name: 'uniform-1000',
      paths: Array.from(
        { length: 1000 },
        (_, i) => `/image?width=${2000 + i}&height=900`,
      ),
      weights: Array.from({ length: 1000 }, () => 1),
    };
    let peakDisk = 0;
    let loading = true;
    const sampling = (async () => {
      while (loading) {
        peakDisk = Math.max(peakDisk, await diskUsage(cacheDir));
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    })();
    const result = await runWrk(server.url, mix, 16, SECONDS * 2, work);
    loading = false;
    await sampling;
    const rss = server.peakRss();
    const anonRss = server.peakAnonRss();
    log(
      `over budget: peak RSS ${mb(rss)} (anonymous ${mb(anonRss)}), peak disk ${mb(peakDisk)} of ${mb(diskMaxBytes)}`,
    );
    return {
      result,
      rss,
      anonRss,
      peakDisk,
      diskMaxBytes,
      memoryMaxBytes: 64 * MIB,
    };
  } finally {
    await server.stop();
  }
}

function geometricMean(values: number[]): number {
  return Math.exp(
    values.reduce((sum, value) => sum + Math.log(value), 0) / values.length,
  );
}

function median(results: LoadResult[]): LoadResult {
  const pick = (key: keyof LoadResult) => {
    const sorted = results.map((result) => result[key]).sort((a, b) => a - b);
    return sorted[Math.floor(sorted.length / 2)];
  };
  return {
    requestsPerSecond: pick('requestsPerSecond'),
    p50Ms: pick('p50Ms'),
    p99Ms: pick('p99Ms'),
    errors: results.reduce((sum, result) => sum + result.errors, 0),
    requests: results.reduce((sum, result) => sum + result.requests, 0),
  };
}

function renderReport(
  rows: Row[],
  rss: { name: string; bytes: number; anonBytes: number }[],
  stampede: { name: string; fetches: number; errors: number }[],
  overBudget: Awaited<ReturnType<typeof largeWorkingSet>>,
  sharedTier: SharedTierCost[],
  reference: string,
  subject: string,
): string {
  const find = (scenario: string, connections: number, server: string) =>
    rows.find(
      (row) =>
        row.scenario === scenario &&
        row.connections === connections &&
        row.server === server,
    )?.result as LoadResult;
  const lines = [
    '# Benchmark results',
    '',
    `${new Date().toISOString().slice(0, 10)}, ${cpus().length} cores (${cpus()[0]?.model.trim() ?? 'unknown CPU'}), Node.js ${process.version}, ${versionOf('nginx', ['-v'])}, ${versionOf('wrk', ['--version']).split(' [')[0]}.`,
    `Median of ${ROUNDS} interleaved rounds (every other one in reverse order) of ${SECONDS} s per server, after ${WARMUP_SECONDS} s of unmeasured load each; wrk with 1 thread; ${IMAGE_BYTES / 1000} KB JPEGs from the fake Picsum; all caches warm.`,
    `\`hot\`: one image. \`zipf-200\`: 200 variants requested with Zipf-like weights (1/rank), about 40 MB.`,
    '',
    '| scenario | conns | server | req/s | p50 ms | p99 ms | errors | req/s vs nginx | p99 vs nginx |',
    '|---|---:|---|---:|---:|---:|---:|---:|---:|',
  ];
  for (const row of rows) {
    const nginx = find(row.scenario, row.connections, reference);
    lines.push(
      `| ${row.scenario} | ${row.connections} | ${row.server} | ${Math.round(row.result.requestsPerSecond)} | ${row.result.p50Ms.toFixed(2)} | ${row.result.p99Ms.toFixed(2)} | ${row.result.errors} | ${(row.result.requestsPerSecond / nginx.requestsPerSecond).toFixed(2)}x | ${(row.result.p99Ms / nginx.p99Ms).toFixed(2)}x |`,
    );
  }
  lines.push(
    '',
    '| server | peak RSS | of which anonymous | upstream fetches in a 100-request cold stampede | stampede errors |',
    '|---|---:|---:|---:|---:|',
  );
  for (const { name, bytes, anonBytes } of rss) {
    const fetches = stampede.find((entry) => entry.name === name);
    lines.push(
      `| ${name} | ${mb(bytes)} | ${mb(anonBytes)} | ${fetches?.fetches ?? '-'} | ${fetches?.errors ?? '-'} |`,
    );
  }
  lines.push(
    '',
    `Over budget (1000 variants, about 200 MB, uniform, 16 connections, ${SECONDS * 2} s; 64 MiB memory, 128 MiB disk): ${Math.round(overBudget.result.requestsPerSecond)} req/s, ${overBudget.result.errors} errors, peak RSS ${mb(overBudget.rss)} (anonymous ${mb(overBudget.anonRss)}), peak disk usage ${mb(overBudget.peakDisk)} of ${mb(overBudget.diskMaxBytes)}.`,
    '',
    `The shared tier's cost to a hit in memory (the hot image, the service with \`REDIS_URL\` set to a local redis-server against the same service without it; ${sharedTier[0]?.ratios.length ?? 0} rounds, each with a fresh pair of processes, each start order in half of them):`,
    '',
    '| conns | req/s without, median | req/s with, median | with / without, geometric mean | each round |',
    '|---:|---:|---:|---:|---|',
    ...sharedTier.map(
      (cost) =>
        `| ${cost.connections} | ${Math.round(cost.without)} | ${Math.round(cost.with)} | ${cost.ratio.toFixed(2)}x | ${cost.ratios.map((ratio) => ratio.toFixed(2)).join(', ')} |`,
    ),
    '',
    '## Targets',
    '',
  );
  const checks: [string, boolean, string][] = [];
  for (const scenario of [HOT.name, WORKING_SET.name]) {
    for (const connections of CONNECTIONS) {
      const ours = find(scenario, connections, subject);
      const nginx = find(scenario, connections, reference);
      const naive = rows.find(
        (row) =>
          row.scenario === scenario &&
          row.connections === connections &&
          row.server.startsWith('naive'),
      )?.result as LoadResult;
      const throughput = ours.requestsPerSecond / nginx.requestsPerSecond;
      const p99 = ours.p99Ms / nginx.p99Ms;
      const overNaive = ours.requestsPerSecond / naive.requestsPerSecond;
      checks.push(
        [
          `${scenario} c=${connections}: throughput >= 1.1x nginx`,
          throughput >= 1.1,
          `${throughput.toFixed(2)}x`,
        ],
        [
          `${scenario} c=${connections}: p99 <= 1.5x nginx`,
          p99 <= 1.5,
          `${p99.toFixed(2)}x`,
        ],
        [
          `${scenario} c=${connections}: throughput >= 4x naive`,
          overNaive >= 4,
          `${overNaive.toFixed(2)}x`,
        ],
      );
    }
  }
  for (const cost of sharedTier) {
    checks.push([
      `hot c=${cost.connections}: with REDIS_URL set >= 0.95x without`,
      cost.ratio >= 0.95,
      `${cost.ratio.toFixed(2)}x`,
    ]);
  }
  const serviceRss = rss.find((entry) => entry.name === subject)?.bytes ?? 0;
  checks.push(
    [
      'peak RSS < 200 MB with the default 64 MiB memory budget',
      serviceRss < 200 * 1e6,
      mb(serviceRss),
    ],
    [
      'exactly 1 upstream fetch in the stampede',
      stampede.find((entry) => entry.name === subject)?.fetches === 1,
      String(stampede.find((entry) => entry.name === subject)?.fetches),
    ],
    [
      'over budget: RSS <= memory budget + 100 MB',
      overBudget.rss <= overBudget.memoryMaxBytes + 100 * 1e6,
      mb(overBudget.rss),
    ],
    [
      'over budget: anonymous RSS <= memory budget + 100 MB',
      overBudget.anonRss <= overBudget.memoryMaxBytes + 100 * 1e6,
      mb(overBudget.anonRss),
    ],
    [
      'over budget: disk never above CACHE_DISK_MAX_SIZE',
      overBudget.peakDisk <= overBudget.diskMaxBytes,
      mb(overBudget.peakDisk),
    ],
  );
  lines.push('| target | met | measured |', '|---|---|---:|');
  for (const [name, met, measured] of checks) {
    lines.push(`| ${name} | ${met ? 'yes' : '**no**'} | ${measured} |`);
  }
  return `${lines.join('\n')}\n`;
}

function mb(bytes: number): string {
  return `${(bytes / 1e6).toFixed(1)} MB`;
}

function log(message: string): void {
  process.stderr.write(`[bench] ${message}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(
    `${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  process.exit(1);
});
