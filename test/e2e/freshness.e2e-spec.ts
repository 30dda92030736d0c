import { rm } from 'node:fs/promises';
import request from 'supertest';
import type { App } from 'supertest/types';
import { FakePicsum } from '../fake-picsum/fake-picsum.server';
import { sleep, waitFor } from '../support/http-get';
import { steadyStream } from '../support/steady-stream';
import { ServiceProcess } from '../support/service-process';
import { makeCacheDir, startTestApp, type TestApp } from '../support/test-app';

const TTL_SECONDS = 600;

describe('freshness without waiting (AppModule against a local fake Picsum, fake clock)', () => {
  const upstream = new FakePicsum();
  let service: TestApp;
  let http: App;

  async function start(env: Record<string, string>): Promise<void> {
    service = await startTestApp({
      PICSUM_BASE_URL: upstream.baseUrl,
      CACHE_TTL_SECONDS: String(TTL_SECONDS),
      UPSTREAM_RETRY_AFTER_SECONDS: '10',
      ...env,
    });
    http = service.app.getHttpServer();
  }

  /** Lets a background fetch against the fake finish. */
  async function untilFetches(count: number): Promise<void> {
    for (
      let waited = 0;
      upstream.fetches < count && waited < 5000;
      waited += 10
    ) {
      await sleep(10);
    }
    await sleep(50); // and be stored
  }

  beforeAll(() => upstream.start());
  afterAll(() => upstream.stop());
  beforeEach(() => upstream.reset());
  afterEach(() => service.close());

  it('tells downstream caches the stale windows it keeps (RFC 5861)', async () => {
    await start({
      CACHE_STALE_WHILE_REVALIDATE_SECONDS: '30',
      CACHE_STALE_IF_ERROR_SECONDS: '300',
    });

    const reply = await request(http).get('/image').expect(200);

    expect(reply.headers['cache-control']).toBe(
      `public, max-age=${TTL_SECONDS}, stale-while-revalidate=30, stale-if-error=300`,
    );
  });

  it('SWR: serves the stale image at once within the window, while one background fetch replaces it; then the new one', async () => {
    await start({ CACHE_STALE_WHILE_REVALIDATE_SECONDS: '30' });
    const first = await request(http).get('/image').expect(200);
    upstream.delayMs = 300;
    service.clock.advanceSeconds(TTL_SECONDS + 4);

    const stale = await Promise.all(
      Array.from({ length: 5 }, () => request(http).get('/image').expect(200)),
    );
    await waitFor(
      async () =>
        ((await request(http).get('/image/info')).body as { etag: string })
          .etag !== first.headers.etag,
      5000,
    );
    const fresh = await request(http).get('/image').expect(200);

    expect(
      stale.map((reply) => [
        reply.headers['x-cache'],
        reply.headers['cache-status'],
        reply.headers.etag,
      ]),
    ).toEqual(
      stale.map(() => [
        'STALE',
        'image-cache; fwd=stale; ttl=-4; detail=revalidating',
        first.headers.etag,
      ]),
    );
    expect(fresh.headers['x-cache']).toBe('HIT');
    expect(fresh.headers.etag).not.toBe(first.headers.etag);
    expect(upstream.fetches).toBe(2);
  });

  it('prefetch: the next image is fetched before expiry and served at expiry as a hit, one fetch per TTL', async () => {
    await start({ CACHE_PREFETCH_SECONDS: '60' });
    const etags: string[] = [];
    const statuses: string[] = [];

    await request(http).get('/image').expect(200);
    for (let step = 1; step <= 3 * 20; step += 1) {
      service.clock.advanceSeconds(TTL_SECONDS / 20);
      const reply = await request(http).get('/image').expect(200);
      etags.push(String(reply.headers.etag));
      statuses.push(String(reply.headers['cache-status']));
      await untilFetches(1 + Math.floor((step + 2) / 20));
    }

    // 30 s steps: the first image until 600 s, then one new image at each expiry.
    expect(new Set(etags).size).toBe(4);
    expect(
      [19, 39, 59].map((index) => etags[index] !== etags[index - 1]),
    ).toEqual([true, true, true]);
    expect(
      statuses.filter((status) => /detail=prefetched/.test(status)),
    ).toEqual([
      `image-cache; hit; ttl=${TTL_SECONDS}; detail=prefetched`,
      `image-cache; hit; ttl=${TTL_SECONDS}; detail=prefetched`,
      `image-cache; hit; ttl=${TTL_SECONDS}; detail=prefetched`,
    ]);
    expect(statuses.every((status) => /; hit;/.test(status))).toBe(true);
    expect(upstream.fetches).toBe(4);
  });
});

/**
 * Prefetch under real time, on the built service in a process of its own: a steady stream of
 * requests across three TTLs, with an upstream that takes a whole second per fetch (half a
 * second for each of its two requests, the redirect and the image), half the prefetch window. A
 * request that waited for a fetch would take that second; the bound below is half of it, so that a
 * busy shared machine (jest runs other suites beside this one) cannot fail the spec, while a
 * missing prefetch always does. The finer figure, the slowest request against the hit path's
 * p99 plus 5 ms, is measured pinned to a core by `npm run bench:prefetch`.
 */
describe('prefetch under a steady stream (dist/main.js, real time)', () => {
  /** Per request to the fake: a fetch makes two, the redirect and the image. */
  const UPSTREAM_DELAY_MS = 500;
  const FETCH_MS = 2 * UPSTREAM_DELAY_MS;
  const upstream = new FakePicsum();
  let running: { service: ServiceProcess; cacheDir: string } | undefined;

  beforeAll(() => upstream.start());
  afterAll(async () => {
    running?.service.kill('SIGKILL');
    await running?.service.exited;
    await rm(running?.cacheDir ?? '', { recursive: true, force: true });
    await upstream.stop();
  });

  it('no request across 3 TTLs waits for the upstream, and there is one fetch per TTL', async () => {
    const ttlSeconds = 4;
    const cacheDir = await makeCacheDir();
    const { service, url } = await ServiceProcess.start({
      PICSUM_BASE_URL: upstream.baseUrl,
      CACHE_DIR: cacheDir,
      CACHE_TTL_SECONDS: String(ttlSeconds),
      CACHE_PREFETCH_SECONDS: String(ttlSeconds / 2),
    });
    running = { service, cacheDir };
    upstream.delayMs = UPSTREAM_DELAY_MS;

    const result = await steadyStream(url, upstream, ttlSeconds);

    process.stdout.write(
      `prefetch: ${result.stream.length} requests across 3 TTLs of ${ttlSeconds} s, slowest ${result.slowest.toFixed(1)} ms (a fetch takes ${FETCH_MS} ms); hit p99 ${result.hitP99.toFixed(1)} ms over ${result.hitTimes.length} hits; ${result.fetches} fetches; ${result.images} images\n`,
    );
    expect(result.stream.every((reply) => reply.status === 200)).toBe(true);
    expect(result.stream.every((reply) => reply.xCache === 'HIT')).toBe(true);
    expect(result.slowest).toBeLessThan(FETCH_MS / 2);
    expect(result.fetches).toBe(3);
    expect(result.images).toBe(4);
  }, 60_000);
});
