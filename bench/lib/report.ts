import { cpus } from 'node:os';
import { LOAD_CPU, SERVER_CPU, versionOf } from './servers';
import type { LoadResult } from './wrk';
import {
  MEMORY_BUDGET,
  MEMORY_BUDGET_BYTES,
  type MemoryRun,
  RSS_ALLOWANCE_BYTES,
} from './memory-runs';
import type { OpenLoopResult } from './open-loop';

/** One server's median round under one workload. */
export interface LoadRow {
  readonly scenario: string;
  readonly connections: number;
  readonly server: string;
  readonly result: LoadResult;
}

export interface StampedeResult {
  readonly name: string;
  readonly fetches: number;
  readonly errors: number;
}

export interface ColdMissLatency {
  readonly requests: number;
  readonly directMedianMs: number;
  readonly directP99Ms: number;
  readonly serviceMedianMs: number;
  readonly serviceP99Ms: number;
  /** The same misses, in the same run, on the service built from an earlier commit. */
  readonly reference?: {
    readonly commit: string;
    readonly medianMs: number;
    readonly p99Ms: number;
  };
}

export interface OverBudgetRun {
  readonly name: string;
  readonly result: LoadResult;
  readonly peakRss: number;
  readonly peakDisk: number;
}

export interface SharedTierCost {
  /** Median req/s without and with `REDIS_URL`. */
  readonly without: number;
  readonly with: number;
  /** Geometric mean over rounds of the ratio with / without, and each round's. */
  readonly ratio: number;
  readonly ratios: number[];
}

/** The open-loop run, with what the service said of its event loop and its collections meanwhile. */
export interface TailResult extends OpenLoopResult {
  readonly gc: Record<string, { count: number; seconds: number }>;
  readonly loopDelayP99Ms: number;
  readonly loopDelayMaxMs: number;
}

export interface BenchResults {
  readonly rows: LoadRow[];
  /** Peak RSS of each cache after the hot and small runs, before the 200 variants were loaded. */
  readonly hotRss: { name: string; bytes: number }[];
  readonly stampede: StampedeResult[];
  readonly coldMiss: ColdMissLatency;
  readonly overBudget: OverBudgetRun[];
  readonly sharedTier: SharedTierCost;
  readonly memory: MemoryRun[];
  readonly tail: TailResult;
  readonly settings: {
    readonly rounds: number;
    readonly seconds: number;
    readonly warmupSeconds: number;
    readonly imageBytes: number;
    readonly smallImageBytes: number;
    readonly overBudgetMemory: string;
    readonly overBudgetDisk: string;
  };
}

const SERVICE = 'image-cache';
const NODE = 'node:http (one Buffer)';
const NGINX = 'nginx proxy_cache';
const MIB = 1024 * 1024;

/** The Markdown report: settings, every table, and each target of issue 11, met or not. */
export function renderReport(results: BenchResults): string {
  const { rows, settings } = results;
  const find = (scenario: string, connections: number, server: string) =>
    rows.find(
      (row) =>
        row.scenario === scenario &&
        row.connections === connections &&
        row.server === server,
    )?.result;
  const lines = [
    '# Benchmark results',
    '',
    `${new Date().toISOString().slice(0, 10)}, ${cpus().length} CPUs (${cpus()[0]?.model.trim() ?? 'unknown CPU'}), Node.js ${process.version}, ${versionOf('nginx', ['-v'])}, ${versionOf('varnishd', ['-V'])}, ${versionOf('wrk', ['--version']).split(' [')[0]}.`,
    '',
    `**Pinning:** every server under test runs alone on CPU ${SERVER_CPU} (\`taskset -c ${SERVER_CPU}\`: one Node.js process, nginx with 1 worker, Varnish with 1 thread pool, all their processes); wrk (1 thread) and the runner, with the fake Picsum, on CPU ${LOAD_CPU}. A per-core comparison.`,
    `Median of ${settings.rounds} interleaved rounds (every other one in reverse order) of ${settings.seconds} s per server, after ${settings.warmupSeconds} s of unmeasured load each; all caches warm. CPU ms per 1000 requests: user plus system time of the server's processes during the round (/proc/<pid>/stat).`,
    `\`hot\`: one ${settings.imageBytes / 1000} KB JPEG. \`small\`: one ${settings.smallImageBytes / 1000} KB JPEG, where the work per request outweighs the copy of the body. \`zipf-200\`: 200 variants of ${settings.imageBytes / 1000} KB with Zipf-like weights (1/rank), about 40 MB. \`${NODE}\`: plain \`node:http\` sending the very headers and body the service sends for that image, no routing, no cache: the limit of any Node.js server (Node has no sendfile).`,
    '',
    '| workload | conns | server | req/s | p50 ms | p99 ms | CPU ms / 1000 req | errors | req/s vs node:http | req/s vs nginx | p99 vs nginx |',
    '|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const row of rows) {
    const node = find(row.scenario, row.connections, NODE);
    const nginx = find(row.scenario, row.connections, NGINX);
    const r = row.result;
    lines.push(
      `| ${row.scenario} | ${row.connections} | ${row.server} | ${Math.round(r.requestsPerSecond)} | ${r.p50Ms.toFixed(2)} | ${r.p99Ms.toFixed(2)} | ${(r.cpuMsPer1000 ?? 0).toFixed(0)} | ${r.errors} | ${node ? ratio(r.requestsPerSecond, node.requestsPerSecond) : '-'} | ${nginx ? ratio(r.requestsPerSecond, nginx.requestsPerSecond) : '-'} | ${nginx ? ratio(r.p99Ms, nginx.p99Ms) : '-'} |`,
    );
  }
  lines.push(
    '',
    '| server | peak RSS after the hot and small runs | upstream fetches in a 100-request cold stampede | stampede errors |',
    '|---|---:|---:|---:|',
  );
  for (const { name, bytes } of results.hotRss) {
    const stampede = results.stampede.find((entry) => entry.name === name);
    lines.push(
      `| ${name} | ${mb(bytes)} | ${stampede?.fetches ?? '-'} | ${stampede?.errors ?? '-'} |`,
    );
  }
  const cold = results.coldMiss;
  lines.push(
    '',
    `**Cold misses** (${cold.requests} distinct variants, each requested once, one at a time, from a fresh service; against the same \`/{w}/{h}\` from the fake Picsum directly, redirect followed): median ${cold.serviceMedianMs.toFixed(2)} ms against ${cold.directMedianMs.toFixed(2)} ms direct, ${signed(cold.serviceMedianMs - cold.directMedianMs)} ms added; p99 ${cold.serviceP99Ms.toFixed(2)} ms against ${cold.directP99Ms.toFixed(2)} ms, ${signed(cold.serviceP99Ms - cold.directP99Ms)} ms added.${
      cold.reference
        ? ` The service built from commit ${cold.reference.commit} (the same misses, interleaved): median ${cold.reference.medianMs.toFixed(2)} ms, ${signed(cold.reference.medianMs - cold.directMedianMs)} ms added; p99 ${cold.reference.p99Ms.toFixed(2)} ms. This build against it: ${signed(cold.serviceMedianMs - cold.reference.medianMs)} ms per miss at the median.`
        : ''
    }`,
    '',
    `**Over budget** (1000 variants, about 200 MB, uniform, 16 connections, ${settings.seconds * 2} s per run, two runs each in alternating order; the service with ${settings.overBudgetMemory} of memory and ${settings.overBudgetDisk} of disk, nginx with \`max_size=128m\`; disk usage sampled every 20 ms):`,
    '',
    '| run | server | req/s | p99 ms | CPU ms / 1000 req | errors | peak RSS | peak disk |',
    '|---:|---|---:|---:|---:|---:|---:|---:|',
    ...results.overBudget.map(
      (run, index) =>
        `| ${Math.floor(index / 2) + 1} | ${run.name} | ${Math.round(run.result.requestsPerSecond)} | ${run.result.p99Ms.toFixed(2)} | ${(run.result.cpuMsPer1000 ?? 0).toFixed(0)} | ${run.result.errors} | ${mb(run.peakRss)} | ${mb(run.peakDisk)} |`,
    ),
    '',
    `**The shared tier's cost to a hit in memory** (the hot image at 64 connections, the service with \`REDIS_URL\` set to a local redis-server against the same service without it; ${results.sharedTier.ratios.length} rounds, each with a fresh pair of processes, each start order in half of them): median ${Math.round(results.sharedTier.with)} req/s with, ${Math.round(results.sharedTier.without)} without; with / without ${results.sharedTier.ratio.toFixed(2)}x (geometric mean; rounds: ${results.sharedTier.ratios.map((value) => value.toFixed(2)).join(', ')}).`,
    '',
    `**Memory** (a fresh service each, \`CACHE_MEMORY_MAX_SIZE=${MEMORY_BUDGET}\`; peak RSS is VmHWM, every resident page including the \`node\` executable's; anonymous is RssAnon sampled every 50 ms, what the kernel cannot reclaim; the bound is the budget plus ${RSS_ALLOWANCE_BYTES / MIB} MiB, ${mib(MEMORY_BUDGET_BYTES + RSS_ALLOWANCE_BYTES)}):`,
    '',
    '| run | s | requests | req/s | errors | peak RSS | peak anonymous | entries in memory | on disk |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...results.memory.map(
      (run) =>
        `| ${run.name} | ${run.seconds} | ${run.requests} | ${Math.round(run.requestsPerSecond)} | ${run.errors} | ${mib(run.peakRss)} | ${mib(run.peakAnonRss)} | ${run.memoryEntries} | ${run.diskEntries} |`,
    ),
    '',
    tailParagraph(results.tail),
    '',
    '## Targets',
    '',
    '| target | met | measured |',
    '|---|---|---:|',
    ...targets(results, find).map(
      ([name, met, measured]) =>
        `| ${name} | ${met ? 'yes' : '**no**'} | ${measured} |`,
    ),
  );
  return `${lines.join('\n')}\n`;
}

type Target = [name: string, met: boolean, measured: string];

function targets(
  results: BenchResults,
  find: (
    scenario: string,
    connections: number,
    server: string,
  ) => LoadResult | undefined,
): Target[] {
  const checks: Target[] = [];
  const rate = (scenario: string, connections: number, server: string) =>
    find(scenario, connections, server)?.requestsPerSecond ?? 0;
  for (const connections of [64, 8]) {
    const ours = rate('hot', connections, SERVICE);
    checks.push(
      atLeast(
        `hot c${connections}: req/s >= 0.9x node:http`,
        ours / rate('hot', connections, NODE),
        0.9,
      ),
      atLeast(
        `hot c${connections}: req/s >= 1.0x nginx`,
        ours / rate('hot', connections, NGINX),
        1.0,
      ),
    );
    const p99 = find('hot', connections, SERVICE)?.p99Ms ?? Infinity;
    const nginxP99 = find('hot', connections, NGINX)?.p99Ms ?? 0;
    checks.push([
      `hot c${connections}: p99 <= 1.5x nginx`,
      p99 <= 1.5 * nginxP99,
      `${(p99 / nginxP99).toFixed(2)}x`,
    ]);
  }
  checks.push(
    atLeast(
      'small c64: req/s >= 0.8x node:http',
      rate('small', 64, SERVICE) / rate('small', 64, NODE),
      0.8,
    ),
  );
  const runsOf = (prefix: string) =>
    results.overBudget.filter((run) => run.name.startsWith(prefix));
  const ours = runsOf(SERVICE);
  const nginx = runsOf(NGINX);
  const meanRate = (runs: OverBudgetRun[]) =>
    runs.reduce((sum, run) => sum + run.result.requestsPerSecond, 0) /
    runs.length;
  const diskBudget = 128 * MIB;
  const peakDisk = Math.max(...ours.map((run) => run.peakDisk));
  checks.push(
    atLeast(
      'over budget: req/s >= 1.0x nginx with the same budget (mean of the runs)',
      meanRate(ours) / meanRate(nginx),
      1.0,
    ),
    [
      'over budget: disk never above CACHE_DISK_MAX_SIZE (sampled)',
      peakDisk <= diskBudget,
      `${mb(peakDisk)} of ${mb(diskBudget)}`,
    ],
  );
  const cold = results.coldMiss;
  const added = cold.serviceMedianMs - cold.directMedianMs;
  checks.push([
    'cold miss: median added latency <= 3 ms',
    added <= 3,
    `${signed(added)} ms`,
  ]);
  const hotRss =
    results.hotRss.find((entry) => entry.name === SERVICE)?.bytes ?? Infinity;
  checks.push([
    'memory: peak RSS in the hot runs <= 130 MB',
    hotRss <= 130e6,
    mb(hotRss),
  ]);
  const bound = MEMORY_BUDGET_BYTES + RSS_ALLOWANCE_BYTES;
  for (const run of results.memory) {
    checks.push([
      `memory: ${run.name}, peak RSS <= ${MEMORY_BUDGET} + ${RSS_ALLOWANCE_BYTES / MIB} MiB`,
      run.peakRss <= bound,
      `${mib(run.peakRss)} (anonymous ${mib(run.peakAnonRss)}) of ${mib(bound)}`,
    ]);
  }
  const { hits } = results.tail;
  checks.push(
    [
      `hit tail: open loop at ${results.tail.rate}/s, hits' p99.9 <= 5 ms`,
      hits.p999Ms <= 5,
      `${hits.p999Ms.toFixed(2)} ms`,
    ],
    [
      `hit tail: open loop at ${results.tail.rate}/s, hits' max <= 20 ms`,
      hits.maxMs <= 20,
      `${hits.maxMs.toFixed(2)} ms`,
    ],
    [
      'hit tail: no failed reply',
      results.tail.failed === 0,
      String(results.tail.failed),
    ],
  );
  const stampede = results.stampede.find((entry) => entry.name === SERVICE);
  checks.push([
    'stampede: exactly 1 upstream fetch',
    stampede?.fetches === 1,
    String(stampede?.fetches),
  ]);
  return checks;
}

function atLeast(name: string, value: number, target: number): Target {
  return [name, value >= target, `${value.toFixed(2)}x`];
}

function ratio(value: number, reference: number): string {
  return `${(value / reference).toFixed(2)}x`;
}

function signed(value: number): string {
  return `${value >= 0 ? '+' : ''}${value.toFixed(2)}`;
}

function tailParagraph(tail: TailResult): string {
  const gc = Object.entries(tail.gc)
    .filter(([, total]) => total.count > 0)
    .map(
      ([kind, total]) =>
        `${total.count} ${kind} (${(total.seconds * 1000).toFixed(0)} ms, ${((total.seconds * 1000) / total.count).toFixed(1)} ms each)`,
    )
    .join(', ');
  const row = (name: string, f: OpenLoopResult['hits']) =>
    `| ${name} | ${f.count} | ${f.p50Ms.toFixed(2)} | ${f.p99Ms.toFixed(2)} | ${f.p999Ms.toFixed(2)} | ${f.maxMs.toFixed(2)} |`;
  return [
    `**Hit tail under an open loop** (vegeta at a constant ${tail.rate} requests/s for ${tail.seconds} s on the load CPU, whatever the replies take; 19 of every 20 requests for one of 20 hot variants in memory, 1 for a new variant; a fresh service with the default settings; ${tail.failed} failed replies). The service's event loop ran late by ${tail.loopDelayP99Ms.toFixed(1)} ms at its p99 and ${tail.loopDelayMaxMs.toFixed(1)} ms at most over its last complete minute (\`image_cache_event_loop_delay_seconds\`); garbage collections during the run: ${gc || 'none'}.`,
    '',
    '| requests | count | p50 ms | p99 ms | p99.9 ms | max ms |',
    '|---|---:|---:|---:|---:|---:|',
    row('hits', tail.hits),
    row('misses', tail.misses),
  ].join('\n');
}

function mib(bytes: number): string {
  return `${(bytes / MIB).toFixed(1)} MiB`;
}

function mb(bytes: number): string {
  return `${(bytes / 1e6).toFixed(1)} MB`;
}
