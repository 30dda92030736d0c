/**
 * `npm run bench:status`: does anyone polling the status page cost the hits anything, however
 * many variants are cached? Before the service starts, 50,000 variants are written to its
 * CACHE_DIR in its own format (the disk tier's index holds them all at start). The built
 * service runs alone on SERVER_CPU; on LOAD_CPU, wrk sends memory hits on one variant (8
 * connections, 10 s) alone, then again while a second wrk polls `GET /status` on 2 connections
 * as fast as it can, three rounds of each. Reports `/status`'s size and time, and the hits' p50
 * and p99 with and without the polling, in the same run.
 *
 * The target: the hits' p99 while polling stays within 1.5 times its p99 alone, plus 1 ms, and
 * `/status` is under 64 KB and 5 ms at the median.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { FakePicsum } from '../test/fake-picsum/fake-picsum.server';
import { cachedImageOf } from '../test/support/cached-image-of';
import { FakeClock } from '../test/support/fake-clock';
import { openDiskStore } from '../test/support/open-disk-store';
import { SERVER_CPU, startService } from './lib/servers';
import { type LoadResult, parseWrk, runWrkScript } from './lib/wrk';

const VARIANTS = 50_000;
const ROUNDS = 3;
const SECONDS = 10;

async function writeVariants(directory: string): Promise<void> {
  const store = await openDiskStore(directory, 4 * 2 ** 30, new FakeClock());
  const fetchedAt = Date.now();
  for (let start = 1; start <= VARIANTS; start += 500) {
    const batch = [];
    for (let variant = start; variant < start + 500; variant += 1) {
      batch.push(store.save(cachedImageOf(`${variant}x1`, 'tiny', fetchedAt)));
    }
    await Promise.all(batch);
  }
}

function script(path: string): string {
  return `request = function() return wrk.format("GET", ${JSON.stringify(path)}) end\n`;
}

async function statusFigures(
  url: string,
): Promise<{ bytes: number; medianMs: number }> {
  const times: number[] = [];
  let bytes = 0;
  for (let poll = 0; poll < 51; poll += 1) {
    const started = performance.now();
    const text = await (await fetch(`${url}/status`)).text();
    times.push(performance.now() - started);
    bytes = Buffer.byteLength(text);
  }
  times.sort((a, b) => a - b);
  return { bytes, medianMs: times[25] };
}

async function main(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), 'bench-status-'));
  const cacheDir = join(work, 'cache');
  const hitsScript = join(work, 'hits.lua');
  const statusScript = join(work, 'status.lua');
  writeFileSync(hitsScript, script('/image'));
  writeFileSync(statusScript, script('/status'));
  const upstream = new FakePicsum();
  await upstream.start();
  const started = performance.now();
  await writeVariants(cacheDir);
  process.stdout.write(
    `${VARIANTS} variants written in ${((performance.now() - started) / 1000).toFixed(1)} s\n`,
  );
  const service = await startService('service', upstream.baseUrl, cacheDir, {
    CACHE_DISK_MAX_SIZE: '4Gi',
  });
  try {
    await fetch(`${service.url}/image`).then((reply) => reply.arrayBuffer());
    const report = (await (await fetch(`${service.url}/status`)).json()) as {
      variantCount: number;
    };
    const status = await statusFigures(service.url);
    const alone: LoadResult[] = [];
    const polled: LoadResult[] = [];
    let polls = 0;
    for (let round = 0; round < ROUNDS; round += 1) {
      alone.push(
        parseWrk(
          await runWrkScript(service.url, 8, SECONDS, hitsScript, [
            '--latency',
          ]),
        ),
      );
      const [hits, poller] = await Promise.all([
        runWrkScript(service.url, 8, SECONDS, hitsScript, ['--latency']),
        runWrkScript(service.url, 2, SECONDS, statusScript, ['--latency']),
      ]);
      polled.push(parseWrk(hits));
      polls += parseWrk(poller).requests;
    }
    const p99Alone = Math.max(...alone.map((result) => result.p99Ms));
    const p99Polled = Math.max(...polled.map((result) => result.p99Ms));
    const bound = p99Alone * 1.5 + 1;
    const lines = [
      `service on CPU ${SERVER_CPU}; ${report.variantCount} variants cached`,
      `GET /status: ${status.bytes} bytes, median ${status.medianMs.toFixed(2)} ms (target: < 65536 bytes, < 5 ms): ${status.bytes < 65_536 && status.medianMs < 5 ? 'pass' : 'FAIL'}`,
      ...alone.map(
        (result, round) =>
          `round ${round + 1}: hits alone ${result.requestsPerSecond.toFixed(0)}/s p50 ${result.p50Ms.toFixed(2)} ms p99 ${result.p99Ms.toFixed(2)} ms; with /status polled ${polled[round].requestsPerSecond.toFixed(0)}/s p50 ${polled[round].p50Ms.toFixed(2)} ms p99 ${polled[round].p99Ms.toFixed(2)} ms`,
      ),
      `/status polls answered while the hits ran: ${polls} (${(polls / (ROUNDS * SECONDS)).toFixed(0)}/s)`,
      `hits' p99 with /status polled: ${p99Polled.toFixed(2)} ms, alone: ${p99Alone.toFixed(2)} ms (target: <= 1.5 x alone + 1 ms = ${bound.toFixed(2)} ms): ${p99Polled <= bound ? 'pass' : 'FAIL'}`,
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
  } finally {
    await service.stop();
    await upstream.stop();
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`${String(error)}\n`);
  process.exit(1);
});
