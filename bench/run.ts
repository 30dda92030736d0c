/**
 * `npm run bench`: the service against plain `node:http` (the limit of any Node.js server),
 * nginx's proxy_cache, Varnish and a naive baseline, all on 127.0.0.1 in front of the same fake
 * Picsum. Every server runs alone on one CPU (SERVER_CPU), wrk and this runner on the other, so
 * the comparison is per core and does not depend on what else the machine does. Servers take
 * turns in interleaved rounds; beside req/s each round reports the CPU time the server used
 * per 1000 requests (/proc/<pid>/stat), the steadier figure. Prints a Markdown report and
 * writes it to bench/RESULTS.md. Settings: BENCH_ROUNDS (3), BENCH_SECONDS (4),
 * BENCH_WARMUP_SECONDS (2); a run with any of them set leaves RESULTS.md alone.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FakePicsum } from '../test/fake-picsum/fake-picsum.server';
import { DEFAULT_REFERENCE, referenceBuild } from './lib/reference-build';
import { diskUsage } from '../test/support/disk-usage';
import {
  parseExposition,
  type Sample,
  sampleValue,
} from '../test/support/prometheus-text';
import { RedisServer } from '../test/support/redis-server';
import {
  type ColdMissLatency,
  type LoadRow,
  type OverBudgetRun,
  renderReport,
  type SharedTierCost,
  type StampedeResult,
  type TailResult,
} from './lib/report';
import {
  type BenchServer,
  LOAD_CPU,
  ROOT,
  startNaive,
  startNginx,
  startNodeAnchor,
  startService,
  startVarnish,
} from './lib/servers';
import {
  type LoadResult,
  type RequestMix,
  runWrk,
  uniformMix,
  zipfMix,
} from './lib/wrk';
import {
  type MemoryRun,
  overBudgetStream,
  tinyVariants,
} from './lib/memory-runs';
import { runOpenLoop } from './lib/open-loop';

export const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
export const SECONDS = Number(process.env.BENCH_SECONDS ?? 4);
/** Load before the measured rounds, so every server runs its steady state (Node: optimised code). */
export const WARMUP_SECONDS = Number(process.env.BENCH_WARMUP_SECONDS ?? 2);
const IMAGE_BYTES = 200_000;
const SMALL_IMAGE_BYTES = 15_000;
const STAMPEDE_REQUESTS = 100;
const COLD_MISSES = 200;
const SERVICE = 'image-cache';
const SERVICE_WITH_REDIS = 'image-cache + Redis';

const HOT: RequestMix = { name: 'hot', paths: ['/image'], weights: [1] };
const SMALL: RequestMix = {
  name: 'small',
  paths: ['/image?width=320&height=240'],
  weights: [1],
};
/** 200 variants, about 40 MB: they fit the default 64 MiB memory tier. */
const WORKING_SET = zipfMix(
  'zipf-200',
  Array.from({ length: 200 }, (_, i) => `/image?width=${1000 + i}&height=800`),
);
/** About 200 MB, uniform: twice the over-budget run's 128 MiB disk budget (and nginx's max_size). */
const OVER_BUDGET = uniformMix(
  'uniform-1000',
  1000,
  (i) => `/image?width=${2000 + i}&height=900`,
);
const OVER_BUDGET_MEMORY = '64Mi';
/** The memory runs' length (the over-budget stream's; the tiny variants' is half again). */
const MEMORY_SECONDS = Number(process.env.BENCH_MEMORY_SECONDS ?? 60);
/** The open-loop run of the hit tail: requests per second, for how long. */
const TAIL_RATE = 1000;
const TAIL_SECONDS = Number(process.env.BENCH_TAIL_SECONDS ?? 60);
const TAIL_HOT_VARIANTS = Array.from(
  { length: 20 },
  (_, i) => `/image?width=${1000 + i}&height=800`,
);
const OVER_BUDGET_DISK = '128Mi';

async function main(): Promise<void> {
  // This runner (and the fake upstream in it) shares LOAD_CPU with wrk.
  execFileSync('taskset', ['-pc', LOAD_CPU, String(process.pid)]);
  const work = mkdtempSync(join(tmpdir(), 'image-cache-bench-'));
  const upstream = new FakePicsum();
  upstream.jpegBytes = IMAGE_BYTES;
  await upstream.start();
  const apiPort = Number(new URL(upstream.baseUrl).port);
  const imagePort = Number(new URL(upstream.imageBaseUrl).port);
  const servers: BenchServer[] = [];
  const redis = await RedisServer.start();
  try {
    const service = await startService(
      SERVICE,
      upstream.baseUrl,
      join(work, 'service'),
    );
    servers.push(service);
    const caches = [
      service,
      await startNginx(apiPort, join(work, 'nginx')),
      await startVarnish(apiPort, imagePort, join(work, 'varnish')),
      await startNaive(upstream.baseUrl, join(work, 'naive')),
    ];
    servers.push(...caches.slice(1));

    log('warming every cache with the hot and the small image');
    for (const server of caches) {
      await warm(server, HOT.paths, IMAGE_BYTES);
    }
    upstream.jpegBytes = SMALL_IMAGE_BYTES;
    for (const server of caches) {
      await warm(server, SMALL.paths, SMALL_IMAGE_BYTES);
    }
    upstream.jpegBytes = IMAGE_BYTES;
    const anchors = new Map<string, BenchServer>();
    for (const mix of [HOT, SMALL]) {
      const anchor = await startNodeAnchor(
        await captureHit(service, mix.paths[0], join(work, mix.name)),
      );
      servers.push(anchor);
      anchors.set(mix.name, anchor);
    }

    const rows: LoadRow[] = [];
    rows.push(
      ...(await rounds(HOT, 8, [...caches, anchorOf(anchors, HOT)], work)),
      ...(await rounds(HOT, 64, [...caches, anchorOf(anchors, HOT)], work)),
      ...(await rounds(SMALL, 64, [...caches, anchorOf(anchors, SMALL)], work)),
    );
    // The hot runs' peak: only the hot and the small image are cached so far.
    const hotRss = caches.map((server) => ({
      name: server.name,
      bytes: server.peakRss(),
    }));
    log('warming every cache with the 200 variants');
    for (const server of caches) {
      await warm(server, WORKING_SET.paths, IMAGE_BYTES);
    }
    rows.push(...(await rounds(WORKING_SET, 64, caches, work)));

    const stampede = await stampedes(caches, upstream);
    const coldMiss = await coldMissLatency(upstream, work);
    const overBudget = await overBudgetRuns(upstream, apiPort, work);
    const sharedTier = await sharedTierCost(upstream, redis, work);
    const memory = await memoryRuns(upstream, work);
    const tail = await hitTail(upstream, work);

    const report = renderReport({
      rows,
      hotRss,
      stampede,
      coldMiss,
      overBudget,
      sharedTier,
      memory,
      tail,
      settings: {
        rounds: ROUNDS,
        seconds: SECONDS,
        warmupSeconds: WARMUP_SECONDS,
        imageBytes: IMAGE_BYTES,
        smallImageBytes: SMALL_IMAGE_BYTES,
        overBudgetMemory: OVER_BUDGET_MEMORY,
        overBudgetDisk: OVER_BUDGET_DISK,
      },
    });
    process.stdout.write(`\n${report}`);
    // A shortened run is for trying things out; only a full one replaces the recorded results.
    const shortened = [
      'BENCH_ROUNDS',
      'BENCH_SECONDS',
      'BENCH_WARMUP_SECONDS',
      'BENCH_MEMORY_SECONDS',
      'BENCH_TAIL_SECONDS',
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

function anchorOf(
  anchors: Map<string, BenchServer>,
  mix: RequestMix,
): BenchServer {
  return anchors.get(mix.name) as BenchServer;
}

/**
 * Every server under load with `mix` at `connections`: unmeasured warm-up, then ROUNDS
 * rounds, every other one in reverse order, so no server always runs right after the same
 * one. Each server's row is the median round.
 */
async function rounds(
  mix: RequestMix,
  connections: number,
  servers: BenchServer[],
  work: string,
): Promise<LoadRow[]> {
  for (const server of servers) {
    await runWrk(server.url, mix, connections, WARMUP_SECONDS, work);
  }
  const results = new Map<string, LoadResult[]>();
  for (let round = 1; round <= ROUNDS; round++) {
    const order = round % 2 === 0 ? [...servers].reverse() : servers;
    for (const server of order) {
      const cpuBefore = server.cpuSeconds();
      const load = await runWrk(server.url, mix, connections, SECONDS, work);
      const result = {
        ...load,
        cpuMsPer1000: ((server.cpuSeconds() - cpuBefore) * 1e6) / load.requests,
      };
      results.set(server.name, [...(results.get(server.name) ?? []), result]);
      log(
        `${mix.name} c=${connections} round ${round} ${server.name}: ${Math.round(result.requestsPerSecond)} req/s, p99 ${result.p99Ms.toFixed(2)} ms, ${result.cpuMsPer1000.toFixed(0)} CPU ms per 1000`,
      );
    }
  }
  return servers.map((server) => ({
    scenario: mix.name,
    connections,
    server: server.name,
    result: median(results.get(server.name) ?? []),
  }));
}

/** Requests every path once, in order, and checks each answers 200 with an image of about `bytes`. */
async function warm(
  server: BenchServer,
  paths: readonly string[],
  bytes: number,
): Promise<void> {
  for (const path of paths) {
    const response = await fetch(`${server.url}${path}`);
    const body = await response.arrayBuffer();
    if (response.status !== 200 || body.byteLength < bytes / 2) {
      throw new Error(
        `${server.name} answered ${path} with ${response.status}, ${body.byteLength} bytes`,
      );
    }
  }
}

/**
 * The service's reply to a hit on `path`, headers and body, saved for the node:http anchor,
 * so that it sends exactly what the service sends. Returns the file naming them.
 */
async function captureHit(
  service: BenchServer,
  path: string,
  prefix: string,
): Promise<string> {
  const response = await fetch(`${service.url}${path}`);
  const body = Buffer.from(await response.arrayBuffer());
  if (response.headers.get('x-cache') !== 'HIT') {
    throw new Error(
      `${path} was not a hit: ${response.headers.get('x-cache')}`,
    );
  }
  const headers: Record<string, string> = {};
  response.headers.forEach((value, name) => {
    // Node's own, which the anchor's Node adds the same way.
    if (
      !['date', 'connection', 'keep-alive', 'content-length'].includes(name)
    ) {
      headers[name] = value;
    }
  });
  writeFileSync(`${prefix}.body`, body);
  writeFileSync(
    `${prefix}.json`,
    JSON.stringify({ headers, bodyFile: `${prefix}.body` }),
  );
  return `${prefix}.json`;
}

/** Upstream fetches caused by 100 concurrent requests for one key nobody has cached yet. */
async function stampedes(
  servers: BenchServer[],
  upstream: FakePicsum,
): Promise<StampedeResult[]> {
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
 * What a miss adds to the upstream's own latency: 200 distinct variants requested once each
 * from a fresh service, against the same `/{w}/{h}` requested from the upstream directly
 * (following its redirect), one request at a time, in alternating order. The fake renders
 * each image once before, so both sides get it ready-made.
 */
async function coldMissLatency(
  upstream: FakePicsum,
  work: string,
): Promise<ColdMissLatency> {
  const service = await startService(
    `${SERVICE} (cold)`,
    upstream.baseUrl,
    join(work, 'cold'),
  );
  const referenceRef = process.env.BENCH_REFERENCE ?? DEFAULT_REFERENCE;
  const referenceRoot =
    referenceRef === 'none' ? undefined : referenceBuild(referenceRef, log);
  const reference = referenceRoot
    ? await startService(
        `${SERVICE} (cold, ${referenceRef})`,
        upstream.baseUrl,
        join(work, 'cold-reference'),
        {},
        referenceRoot,
      )
    : undefined;
  const timed = async (url: string) => {
    const started = performance.now();
    const response = await fetch(url);
    await response.arrayBuffer();
    if (response.status !== 200) {
      throw new Error(`${url} answered ${response.status}`);
    }
    return performance.now() - started;
  };
  try {
    const direct: number[] = [];
    const viaService: number[] = [];
    const viaReference: number[] = [];
    for (let i = 0; i < COLD_MISSES; i++) {
      const [width, height] = [4000 + i, 600];
      const directUrl = `${upstream.baseUrl}/${width}/${height}`;
      await timed(directUrl); // renders the image in the fake
      const query = `/image?width=${width}&height=${height}`;
      const sides: Array<[number[], string]> = [
        [direct, directUrl],
        [viaService, `${service.url}${query}`],
        ...(reference
          ? [[viaReference, `${reference.url}${query}`] as [number[], string]]
          : []),
      ];
      // Each side first, second and last in turn, so none always gets a warmer upstream.
      for (let turn = 0; turn < sides.length; turn++) {
        const [samples, url] = sides[(i + turn) % sides.length];
        samples.push(await timed(url));
      }
    }
    const result: ColdMissLatency = {
      requests: COLD_MISSES,
      directMedianMs: percentile(direct, 0.5),
      directP99Ms: percentile(direct, 0.99),
      serviceMedianMs: percentile(viaService, 0.5),
      serviceP99Ms: percentile(viaService, 0.99),
      ...(reference
        ? {
            reference: {
              commit: referenceRef,
              medianMs: percentile(viaReference, 0.5),
              p99Ms: percentile(viaReference, 0.99),
            },
          }
        : {}),
    };
    log(
      `cold miss: median ${result.serviceMedianMs.toFixed(2)} ms vs ${result.directMedianMs.toFixed(2)} ms direct${result.reference ? `, ${result.reference.medianMs.toFixed(2)} ms on ${referenceRef}` : ''}`,
    );
    return result;
  } finally {
    await service.stop();
    await reference?.stop();
  }
}

/** The two memory runs, each on a fresh service: the over-budget stream, then the tiny variants. */
async function memoryRuns(
  upstream: FakePicsum,
  work: string,
): Promise<MemoryRun[]> {
  const runs: MemoryRun[] = [];
  for (const run of [
    () => overBudgetStream(upstream, work, MEMORY_SECONDS),
    () => tinyVariants(upstream, work, Math.round(MEMORY_SECONDS * 1.5)),
  ]) {
    const result = await run();
    log(
      `memory: ${result.name}: ${Math.round(result.requestsPerSecond)} req/s, peak RSS ${(result.peakRss / 2 ** 20).toFixed(1)} MiB (anonymous ${(result.peakAnonRss / 2 ** 20).toFixed(1)} MiB), ${result.memoryEntries} entries in memory, ${result.diskEntries} on disk`,
    );
    runs.push(result);
  }
  return runs;
}

/**
 * The hit tail under an open loop: a fresh service (default settings) with the 20 hot variants
 * in memory, then 1000 requests per second for TAIL_SECONDS, 19 of every 20 for a hot variant
 * and 1 for a new one. Beside the latencies, what the service says of its event loop and its
 * garbage collections over the run (/metrics), to name the cause of what is slow.
 */
async function hitTail(
  upstream: FakePicsum,
  work: string,
): Promise<TailResult> {
  const service = await startService(
    `${SERVICE} (open loop)`,
    upstream.baseUrl,
    join(work, 'tail'),
  );
  try {
    for (const path of TAIL_HOT_VARIANTS) {
      await (await fetch(`${service.url}${path}`)).arrayBuffer();
    }
    const before = gcTotals(await metricsOf(service.url));
    const result = await runOpenLoop(
      service.url,
      TAIL_HOT_VARIANTS,
      (i) =>
        `/image?width=${3000 + (i % 1000)}&height=${700 + Math.floor(i / 1000)}`,
      TAIL_RATE,
      TAIL_SECONDS,
      work,
    );
    const metrics = await metricsOf(service.url);
    const after = gcTotals(metrics);
    const gc = Object.fromEntries(
      Object.entries(after).map(([kind, total]) => [
        kind,
        {
          count: total.count - (before[kind]?.count ?? 0),
          seconds: total.seconds - (before[kind]?.seconds ?? 0),
        },
      ]),
    );
    const loopDelay = (quantile: string) =>
      (sampleValue(metrics, 'image_cache_event_loop_delay_seconds', {
        quantile,
      }) ?? NaN) * 1000;
    log(
      `hit tail: hits p99.9 ${result.hits.p999Ms.toFixed(2)} ms, max ${result.hits.maxMs.toFixed(2)} ms; event loop delay p99 ${loopDelay('0.99').toFixed(1)} ms, max ${loopDelay('1').toFixed(1)} ms`,
    );
    return {
      ...result,
      gc,
      loopDelayP99Ms: loopDelay('0.99'),
      loopDelayMaxMs: loopDelay('1'),
    };
  } finally {
    await service.stop();
  }
}

async function metricsOf(url: string): Promise<Sample[]> {
  return parseExposition(await (await fetch(`${url}/metrics`)).text());
}

/** Garbage collections so far by kind (minor, major, incremental, weakcb): how many, how long in all. */
function gcTotals(
  samples: readonly Sample[],
): Record<string, { count: number; seconds: number }> {
  const totals: Record<string, { count: number; seconds: number }> = {};
  for (const { name, labels, value } of samples) {
    const field = {
      nodejs_gc_duration_seconds_sum: 'seconds',
      nodejs_gc_duration_seconds_count: 'count',
    }[name] as 'seconds' | 'count' | undefined;
    if (field !== undefined) {
      totals[labels.kind] ??= { count: 0, seconds: 0 };
      totals[labels.kind][field] = value;
    }
  }
  return totals;
}

/**
 * A working set twice the disk budget (1000 variants, about 200 MB, uniform): the service with
 * a 64 MiB memory and 128 MiB disk budget against nginx with `max_size=128m`, each twice in
 * alternating order, the disk usage of each sampled throughout.
 */
async function overBudgetRuns(
  upstream: FakePicsum,
  apiPort: number,
  work: string,
): Promise<OverBudgetRun[]> {
  const runs: OverBudgetRun[] = [];
  for (let round = 1; round <= 2; round++) {
    const starters = [
      async () => {
        const cacheDir = join(work, `over-budget-${round}`);
        const server = await startService(
          `${SERVICE} (over budget)`,
          upstream.baseUrl,
          cacheDir,
          {
            CACHE_MEMORY_MAX_SIZE: OVER_BUDGET_MEMORY,
            CACHE_DISK_MAX_SIZE: OVER_BUDGET_DISK,
            UPSTREAM_QUEUE_TIMEOUT_MS: '10000',
          },
        );
        return { server, cacheDir };
      },
      async () => {
        const prefix = join(work, `nginx-over-budget-${round}`);
        const server = await startNginx(
          apiPort,
          prefix,
          '128m',
          'nginx proxy_cache (over budget)',
        );
        return { server, cacheDir: join(prefix, 'cache') };
      },
    ];
    const order = round % 2 === 0 ? [...starters].reverse() : starters;
    for (const start of order) {
      const { server, cacheDir } = await start();
      try {
        let peakDisk = 0;
        let loading = true;
        const sampling = (async () => {
          while (loading) {
            peakDisk = Math.max(peakDisk, await diskUsage(cacheDir));
            await new Promise((resolve) => setTimeout(resolve, 20));
          }
        })();
        const cpuBefore = server.cpuSeconds();
        const load = await runWrk(
          server.url,
          OVER_BUDGET,
          16,
          SECONDS * 2,
          work,
        );
        loading = false;
        await sampling;
        const run = {
          name: server.name,
          result: {
            ...load,
            cpuMsPer1000:
              ((server.cpuSeconds() - cpuBefore) * 1e6) / load.requests,
          },
          peakRss: server.peakRss(),
          peakDisk,
        };
        runs.push(run);
        log(
          `over budget round ${round} ${run.name}: ${Math.round(load.requestsPerSecond)} req/s, peak RSS ${mb(run.peakRss)}, peak disk ${mb(peakDisk)}`,
        );
      } finally {
        await server.stop();
      }
    }
  }
  return runs;
}

/**
 * What setting `REDIS_URL` costs a hit in memory (it should cost nothing: such a hit sends
 * Redis no command): the hot image at 64 connections, the service with and without it. Each
 * round starts a fresh pair, each start order in half of the rounds, and the figure is the
 * geometric mean of the rounds' ratios.
 */
async function sharedTierCost(
  upstream: FakePicsum,
  redis: RedisServer,
  work: string,
): Promise<SharedTierCost> {
  const ratios: number[] = [];
  const rates = new Map<string, number[]>();
  const roundCount = 2 * Math.ceil(ROUNDS / 2);
  for (let round = 1; round <= roundCount; round++) {
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
      const rate = new Map<string, number>();
      for (const server of pair) {
        await warm(server, HOT.paths, IMAGE_BYTES);
        await runWrk(server.url, HOT, 64, WARMUP_SECONDS, work);
        const result = await runWrk(server.url, HOT, 64, SECONDS, work);
        rate.set(server.name, result.requestsPerSecond);
        rates.set(server.name, [
          ...(rates.get(server.name) ?? []),
          result.requestsPerSecond,
        ]);
      }
      const ratio =
        (rate.get(SERVICE_WITH_REDIS) ?? 0) / (rate.get(SERVICE) ?? 1);
      ratios.push(ratio);
      log(`shared tier round ${round}: with / without ${ratio.toFixed(2)}x`);
    } finally {
      for (const server of pair) {
        await server.stop();
      }
    }
  }
  return {
    without: percentile(rates.get(SERVICE) ?? [0], 0.5),
    with: percentile(rates.get(SERVICE_WITH_REDIS) ?? [0], 0.5),
    ratio: Math.exp(
      ratios.reduce((sum, value) => sum + Math.log(value), 0) / ratios.length,
    ),
    ratios,
  };
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];
}

function median(results: LoadResult[]): LoadResult {
  const pick = (key: keyof LoadResult) =>
    percentile(
      results.map((result) => result[key] ?? 0),
      0.5,
    );
  return {
    requestsPerSecond: pick('requestsPerSecond'),
    p50Ms: pick('p50Ms'),
    p99Ms: pick('p99Ms'),
    cpuMsPer1000: pick('cpuMsPer1000'),
    errors: results.reduce((sum, result) => sum + result.errors, 0),
    requests: results.reduce((sum, result) => sum + result.requests, 0),
  };
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
