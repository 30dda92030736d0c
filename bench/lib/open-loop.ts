import { execFile, execFileSync } from 'node:child_process';
import { createReadStream, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import { LOAD_CPU, ROOT } from './servers';

const execFileAsync = promisify(execFile);

/** Latency figures of one kind of request, in milliseconds. */
export interface LatencyFigures {
  readonly count: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly p999Ms: number;
  readonly maxMs: number;
}

/** What one open-loop run measured: hits and misses apart, and every reply that was not a 200. */
export interface OpenLoopResult {
  readonly rate: number;
  readonly seconds: number;
  readonly hits: LatencyFigures;
  readonly misses: LatencyFigures;
  readonly failed: number;
}

/**
 * The open-loop run of the hit tail: `rate` requests per second for `seconds`, sent at a
 * constant arrival rate by vegeta (built from the Go module by bench/build-vegeta.sh) on
 * LOAD_CPU, whatever the replies take. Of every 20 requests, 19 ask for one of `hotPaths` in
 * turn (memory hits, once warmed) and one for a variant never asked before (a miss, fetched
 * and stored while the hits go on). Bodies are not kept, only status and latency.
 */
export async function runOpenLoop(
  baseUrl: string,
  hotPaths: readonly string[],
  missPath: (index: number) => string,
  rate: number,
  seconds: number,
  work: string,
): Promise<OpenLoopResult> {
  const vegeta = execFileSync(
    'bash',
    [join(ROOT, 'bench', 'build-vegeta.sh')],
    {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  ).trim();
  const total = rate * seconds;
  const lines: string[] = [];
  const hotUrls = new Set<string>();
  let misses = 0;
  for (let i = 0; i < total; i++) {
    const url =
      i % 20 === 19
        ? `${baseUrl}${missPath(misses++)}`
        : `${baseUrl}${hotPaths[i % hotPaths.length]}`;
    if (i % 20 !== 19) {
      hotUrls.add(url);
    }
    lines.push(`GET ${url}`);
  }
  const targets = join(work, 'open-loop.targets');
  const results = join(work, 'open-loop.bin');
  const csv = join(work, 'open-loop.csv');
  writeFileSync(targets, `${lines.join('\n')}\n`);
  await execFileAsync(
    'taskset',
    [
      '-c',
      LOAD_CPU,
      vegeta,
      'attack',
      `-targets=${targets}`,
      `-rate=${rate}/s`,
      `-duration=${seconds}s`,
      '-timeout=10s',
      '-max-body=0',
      `-output=${results}`,
    ],
    {
      env: { ...process.env, GOMAXPROCS: '1' },
      timeout: (seconds + 60) * 1000,
    },
  );
  execFileSync('bash', [
    '-c',
    `"${vegeta}" encode --to csv --output "${csv}" "${results}"`,
  ]);
  const hitMs: number[] = [];
  const missMs: number[] = [];
  let failed = 0;
  // timestamp,code,latency (ns),bytes out,bytes in,error,body,attack,seq,method,url,headers
  for await (const line of createInterface({ input: createReadStream(csv) })) {
    const fields = line.split(',');
    const code = Number(fields[1]);
    const ms = Number(fields[2]) / 1e6;
    const url = fields[10];
    if (code !== 200) {
      failed += 1;
      continue;
    }
    (hotUrls.has(url) ? hitMs : missMs).push(ms);
  }
  return {
    rate,
    seconds,
    hits: figuresOf(hitMs),
    misses: figuresOf(missMs),
    failed,
  };
}

function figuresOf(values: number[]): LatencyFigures {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (quantile: number) =>
    sorted.length === 0
      ? 0
      : sorted[
          Math.min(sorted.length - 1, Math.ceil(quantile * sorted.length) - 1)
        ];
  return {
    count: sorted.length,
    p50Ms: at(0.5),
    p99Ms: at(0.99),
    p999Ms: at(0.999),
    maxMs: sorted.length === 0 ? 0 : sorted[sorted.length - 1],
  };
}
