import { Agent, get as httpGet } from 'node:http';
import { performance } from 'node:perf_hooks';
import type { FakePicsum } from '../fake-picsum/fake-picsum.server';
import { type Reply, sleep } from './http-get';

/** One reply of the stream, and when its request was sent (ms after the first image was fetched). */
export interface StreamReply extends Reply {
  readonly at: number;
}

/** What a steady stream of requests across three TTLs saw. */
export interface SteadyStream {
  /** The hit path's reference: hits of the first image before any prefetch, in ms. */
  readonly hitTimes: number[];
  readonly hitP99: number;
  /** Every request of the stream, in order. */
  readonly stream: StreamReply[];
  readonly slowest: number;
  /** Upstream fetches during the stream. */
  readonly fetches: number;
  /** Distinct images (ETags) the stream saw. */
  readonly images: number;
}

/** The first hits after start, left out of the reference: the code is still being compiled. */
const WARM_UP_MS = 500;

/** The `p`-th percentile of `values` (nearest rank). */
export function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[
    Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)
  ];
}

/**
 * Requests `GET /image` of the service at `url` (started with `CACHE_TTL_SECONDS=ttlSeconds`
 * and a prefetch window of half of it, or without prefetch for a control) one at a time over
 * one kept-alive connection, so the client adds as little as it can to what is measured. Times
 * count from the first image's fetch: half a second of hits to warm up, unmeasured; hits until
 * just before the first prefetch window (at half a TTL), which give the hit path's reference;
 * then a request every `gapMs` for three TTLs, across the expiries at 1, 2 and 3 TTLs, ending
 * just before the fourth prefetch window opens.
 */
export async function steadyStream(
  url: string,
  upstream: FakePicsum,
  ttlSeconds: number,
  gapMs = 10,
): Promise<SteadyStream> {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  try {
    const get = (path: string) => timedGet(`${url}${path}`, agent);
    await get('/image');
    const firstFetchedAt = Date.now();
    const since = () => Date.now() - firstFetchedAt;
    const referenceEnd = (ttlSeconds / 2) * 1000 - 100;
    const hitTimes: number[] = [];
    while (since() < referenceEnd) {
      const { ms } = await get('/image');
      if (since() >= WARM_UP_MS) {
        hitTimes.push(ms);
      }
    }
    const fetchesBefore = upstream.fetches;
    const stream: StreamReply[] = [];
    while (since() < referenceEnd + 3 * ttlSeconds * 1000) {
      const at = since();
      stream.push({ ...(await get('/image')), at });
      await sleep(gapMs);
    }
    return {
      hitTimes,
      hitP99: percentile(hitTimes, 99),
      stream,
      slowest: Math.max(...stream.map((reply) => reply.ms)),
      fetches: upstream.fetches - fetchesBefore,
      images: new Set(stream.map((reply) => reply.etag)).size,
    };
  } finally {
    agent.destroy();
  }
}

/** GETs `url` over `agent` and reads the whole body. */
function timedGet(url: string, agent: Agent): Promise<Reply> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    httpGet(url, { agent }, (response) => {
      response.on('data', () => undefined);
      response.on('end', () =>
        resolve({
          status: response.statusCode ?? 0,
          etag: response.headers.etag ?? null,
          cacheStatus: String(response.headers['cache-status']),
          xCache: String(response.headers['x-cache']),
          ms: performance.now() - started,
        }),
      );
    }).on('error', reject);
  });
}
