/**
 * `npm run bench:readiness`: does a flood of readiness probes slow down misses? The service
 * runs twice in the same run, once probing the disk on every `/health/ready`
 * (`READINESS_DISK_CHECK_INTERVAL_MS=0`, as every probe did before the interval existed) and once with the default interval,
 * while about 700 probes a second hit it and 40 distinct misses are fetched at once (each
 * miss fsyncs its image). Prints the misses' median and p99 latency for both.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FakePicsum } from '../test/fake-picsum/fake-picsum.server';
import { startService } from './lib/servers';

const PROBES_PER_SECOND = 700;
const MISSES = 40;
const ROUNDS = 3;

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];
}

async function missLatencies(url: string, round: number): Promise<number[]> {
  let probing = true;
  const probes = (async () => {
    const interval = 1000 / PROBES_PER_SECOND;
    let next = performance.now();
    const inFlight = new Set<Promise<unknown>>();
    while (probing) {
      const probe = fetch(`${url}/health/ready`)
        .then((response) => response.arrayBuffer())
        .catch(() => undefined);
      inFlight.add(probe);
      void probe.finally(() => inFlight.delete(probe));
      next += interval;
      await new Promise((resolve) =>
        setTimeout(resolve, Math.max(0, next - performance.now())),
      );
    }
    await Promise.all(inFlight);
  })();
  await new Promise((resolve) => setTimeout(resolve, 500));
  const latencies = await Promise.all(
    Array.from({ length: MISSES }, async (_, i) => {
      const started = performance.now();
      const response = await fetch(
        `${url}/image?width=${1000 + round * MISSES + i}`,
      );
      await response.arrayBuffer();
      return performance.now() - started;
    }),
  );
  probing = false;
  await probes;
  return latencies;
}

async function main(): Promise<void> {
  const upstream = new FakePicsum();
  upstream.jpegBytes = 200 * 1024;
  await upstream.start();
  const work = mkdtempSync(join(tmpdir(), 'image-cache-readiness-'));
  try {
    for (const interval of ['0', '5000']) {
      const server = await startService(
        `interval ${interval}`,
        upstream.baseUrl,
        join(work, interval),
        { READINESS_DISK_CHECK_INTERVAL_MS: interval },
      );
      const all: number[] = [];
      for (let round = 0; round < ROUNDS; round++) {
        all.push(...(await missLatencies(server.url, round)));
      }
      await server.stop();
      all.sort((a, b) => a - b);
      process.stdout.write(
        `READINESS_DISK_CHECK_INTERVAL_MS=${interval}: ${MISSES} concurrent misses x ${ROUNDS} rounds under ${PROBES_PER_SECOND} probes/s: p50 ${Math.round(percentile(all, 0.5))} ms, p99 ${Math.round(percentile(all, 0.99))} ms\n`,
      );
    }
  } finally {
    await upstream.stop();
    rmSync(work, { recursive: true, force: true });
  }
}

void main();
