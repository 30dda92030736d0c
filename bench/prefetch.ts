/**
 * `npm run bench:prefetch`: does any request wait for the upstream with prefetch on? The built
 * service runs alone on SERVER_CPU, this runner (the client and the fake upstream) on LOAD_CPU.
 * Each round is a steady stream of `GET /image` across three TTLs of 4 s (one request every
 * 10 ms over one kept-alive connection) with an upstream that takes 300 ms per fetch, after
 * 1.4 s of hits that give the hit path's p99 in the same round (see `steadyStream`). Every
 * request over the bound is listed with its `Cache-Status` and when it was sent. The target: no request of
 * the stream slower than that p99 plus 5 ms, and one fetch per TTL. A control round without
 * prefetch shows what a request that waits looks like.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FakePicsum } from '../test/fake-picsum/fake-picsum.server';
import { type SteadyStream, steadyStream } from '../test/support/steady-stream';
import { LOAD_CPU, SERVER_CPU, startService } from './servers';

const TTL_SECONDS = 4;
const UPSTREAM_DELAY_MS = 300;
const ROUNDS = 3;
const MARGIN_MS = 5;

async function round(
  name: string,
  upstream: FakePicsum,
  cacheDir: string,
  prefetchSeconds: number,
): Promise<SteadyStream> {
  const server = await startService(name, upstream.baseUrl, cacheDir, {
    CACHE_TTL_SECONDS: String(TTL_SECONDS),
    CACHE_PREFETCH_SECONDS: String(prefetchSeconds),
  });
  try {
    return await steadyStream(server.url, upstream, TTL_SECONDS);
  } finally {
    await server.stop();
  }
}

function describe(name: string, result: SteadyStream): string {
  const bound = result.hitP99 + MARGIN_MS;
  const over = result.stream.filter((reply) => reply.ms > bound);
  const shown = over
    .map(
      (reply) =>
        `\n  ${reply.ms.toFixed(2)} ms, sent at ${(reply.at / 1000).toFixed(2)} s: ${reply.cacheStatus}`,
    )
    .join('');
  return `${name}: ${result.stream.length} requests, slowest ${result.slowest.toFixed(2)} ms, hit p99 ${result.hitP99.toFixed(2)} ms (${result.hitTimes.length} hits), ${over.length} slower than p99 + ${MARGIN_MS} ms; ${result.fetches} fetches, ${result.images} images${shown}`;
}

async function main(): Promise<void> {
  execFileSync('taskset', ['-pc', LOAD_CPU, String(process.pid)]);
  const upstream = new FakePicsum();
  upstream.delayMs = UPSTREAM_DELAY_MS;
  await upstream.start();
  const work = mkdtempSync(join(tmpdir(), 'image-cache-prefetch-'));
  process.stdout.write(
    `service on CPU ${SERVER_CPU}, client and fake upstream on CPU ${LOAD_CPU}; TTL ${TTL_SECONDS} s, upstream ${UPSTREAM_DELAY_MS} ms per fetch\n`,
  );
  let met = true;
  try {
    const control = await round('control', upstream, join(work, 'control'), 0);
    process.stdout.write(
      `${describe('without prefetch (control)', control)}\n`,
    );
    for (let index = 1; index <= ROUNDS; index += 1) {
      const result = await round(
        `round ${index}`,
        upstream,
        join(work, `round-${index}`),
        TTL_SECONDS / 2,
      );
      const bound = result.hitP99 + MARGIN_MS;
      const ok =
        result.stream.every((reply) => reply.ms <= bound) &&
        result.fetches === 3 &&
        result.images === 4;
      met &&= ok;
      process.stdout.write(
        `${describe(`prefetch ${TTL_SECONDS / 2} s, round ${index}`, result)}: ${ok ? 'met' : 'MISSED'}\n`,
      );
    }
  } finally {
    await upstream.stop();
    rmSync(work, { recursive: true, force: true });
  }
  process.stdout.write(
    `target (no request slower than the hit p99 + ${MARGIN_MS} ms, one fetch per TTL): ${met ? 'met in every round' : 'MISSED'}\n`,
  );
  process.exitCode = met ? 0 : 1;
}

void main();
