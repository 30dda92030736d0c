/**
 * `npm run bench:prefetch`: does any request wait for the upstream with prefetch on? The built
 * service runs alone on SERVER_CPU; wrk (a C client, so no garbage collector of the client's
 * own is measured) and this runner with the fake upstream on LOAD_CPU. Each round starts a
 * service with a TTL of 8 s and `CACHE_PREFETCH_SECONDS=4` in front of an upstream that takes
 * 300 ms per request (600 ms per fetch: the redirect, then the image), then, counting from the first image's fetch:
 *
 * - from 0.5 s to 3.5 s, one connection sends `GET /image` every 10 ms: the hit path's p99;
 * - from 3.6 s, for 24 s (three TTLs, across the expiries at 8, 16 and 24 s and the prefetches
 *   from 4, 12 and 20 s, ending before the next one at 28 s), the same stream: its slowest
 *   request, and the upstream's fetches.
 *
 * The target: no request of the stream slower than the hit p99 plus 5 ms, and one fetch per
 * TTL. A control round without prefetch shows what a request that waits looks like.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FakePicsum } from '../test/fake-picsum/fake-picsum.server';
import { sleep } from '../test/support/http-get';
import { LOAD_CPU, SERVER_CPU, startService } from './lib/servers';
import { runWrkScript } from './lib/wrk';

const TTL_SECONDS = 8;
/** Per request to the fake: a fetch makes two, the redirect and the image. */
const UPSTREAM_DELAY_MS = 300;
const GAP_MS = 10;
const ROUNDS = 3;
const MARGIN_MS = 5;

/** One request every GAP_MS on one connection; prints what wrk measured, in microseconds. */
const STREAM_SCRIPT = `
request = function() return wrk.format("GET", "/image") end
delay = function() return ${GAP_MS} end
done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.status + summary.errors.timeout
  io.write(string.format("RESULT %d %d %d %d %d\\n", summary.requests, errors,
    latency:percentile(99), latency:percentile(99.9), latency.max))
end
`;

interface StreamFigures {
  readonly requests: number;
  readonly errors: number;
  readonly p99Ms: number;
  readonly p999Ms: number;
  readonly maxMs: number;
}

async function stream(
  url: string,
  seconds: number,
  script: string,
): Promise<StreamFigures> {
  const stdout = await runWrkScript(url, 1, seconds, script);
  const match = /^RESULT (\d+) (\d+) (\d+) (\d+) (\d+)$/m.exec(stdout);
  if (!match) {
    throw new Error(`wrk printed no RESULT line:\n${stdout}`);
  }
  const [requests, errors, p99, p999, max] = match.slice(1).map(Number);
  return {
    requests,
    errors,
    p99Ms: p99 / 1000,
    p999Ms: p999 / 1000,
    maxMs: max / 1000,
  };
}

async function round(
  name: string,
  upstream: FakePicsum,
  cacheDir: string,
  script: string,
  prefetchSeconds: number,
): Promise<{ reference: StreamFigures; run: StreamFigures; fetches: number }> {
  const server = await startService(name, upstream.baseUrl, cacheDir, {
    CACHE_TTL_SECONDS: String(TTL_SECONDS),
    CACHE_PREFETCH_SECONDS: String(prefetchSeconds),
  });
  try {
    const fetchesAtStart = upstream.fetches;
    await (await fetch(`${server.url}/image`)).arrayBuffer();
    const firstFetchedAt = Date.now();
    await sleep(500);
    const reference = await stream(server.url, 3, script);
    await sleep(Math.max(0, 3600 - (Date.now() - firstFetchedAt)));
    const fetchesBefore = upstream.fetches;
    const run = await stream(server.url, 3 * TTL_SECONDS, script);
    if (fetchesBefore - fetchesAtStart !== 1) {
      throw new Error(
        'the reference hits fetched: the machine is too slow for the timeline',
      );
    }
    return { reference, run, fetches: upstream.fetches - fetchesBefore };
  } finally {
    await server.stop();
  }
}

async function main(): Promise<void> {
  execFileSync('taskset', ['-pc', LOAD_CPU, String(process.pid)]);
  const upstream = new FakePicsum();
  upstream.delayMs = UPSTREAM_DELAY_MS;
  await upstream.start();
  const work = mkdtempSync(join(tmpdir(), 'image-cache-prefetch-'));
  const script = join(work, 'stream.lua');
  writeFileSync(script, STREAM_SCRIPT);
  process.stdout.write(
    `service on CPU ${SERVER_CPU}; wrk, this runner and the fake upstream on CPU ${LOAD_CPU}. TTL ${TTL_SECONDS} s, upstream ${UPSTREAM_DELAY_MS} ms per request (${2 * UPSTREAM_DELAY_MS} ms per fetch), one request every ${GAP_MS} ms\n`,
  );
  let met = true;
  try {
    for (let index = 0; index <= ROUNDS; index += 1) {
      const prefetchSeconds = index === 0 ? 0 : TTL_SECONDS / 2;
      const name =
        index === 0
          ? 'without prefetch (control)'
          : `prefetch ${prefetchSeconds} s, round ${index}`;
      const { reference, run, fetches } = await round(
        name,
        upstream,
        join(work, `round-${index}`),
        script,
        prefetchSeconds,
      );
      const bound = reference.p99Ms + MARGIN_MS;
      const ok = run.maxMs <= bound && fetches === 3 && run.errors === 0;
      if (index > 0) {
        met &&= ok;
      }
      process.stdout.write(
        `${name}: hit p99 ${reference.p99Ms.toFixed(2)} ms (${reference.requests} hits); stream of ${run.requests} requests: p99 ${run.p99Ms.toFixed(2)} ms, p99.9 ${run.p999Ms.toFixed(2)} ms, slowest ${run.maxMs.toFixed(2)} ms (bound ${bound.toFixed(2)} ms), ${run.errors} errors, ${fetches} fetches${index > 0 ? `: ${ok ? 'met' : 'MISSED'}` : ''}\n`,
      );
    }
  } finally {
    await upstream.stop();
    rmSync(work, { recursive: true, force: true });
  }
  process.stdout.write(
    `target (no request slower than the hit p99 + ${MARGIN_MS} ms, one fetch per TTL): ${met ? `met in every round` : 'MISSED'}\n`,
  );
  process.exitCode = met ? 0 : 1;
}

void main();
