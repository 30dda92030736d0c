import request from 'supertest';
import type { App } from 'supertest/types';
import { FakePicsum } from '../fake-picsum/fake-picsum.server';
import {
  parseExposition,
  promtoolCheckMetrics,
  type Sample,
  sampleValue,
} from '../support/prometheus-text';
import { startTestApp, type TestApp } from '../support/test-app';

const TTL_SECONDS = 600;

/**
 * `GET /metrics` of the real AppModule against the fake Picsum: exact counts for a known
 * sequence of requests, the labels of every outcome, and an exposition `promtool` accepts.
 */
describe('GET /metrics (AppModule against a local fake Picsum)', () => {
  const upstream = new FakePicsum();
  let service: TestApp;
  let http: App;

  async function start(env: Record<string, string> = {}): Promise<void> {
    service = await startTestApp({
      PICSUM_BASE_URL: upstream.baseUrl,
      CACHE_TTL_SECONDS: String(TTL_SECONDS),
      UPSTREAM_TIMEOUT_MS: '2000',
      UPSTREAM_MAX_BYTES: String(256 * 1024),
      ...env,
    });
    http = service.app.getHttpServer();
  }

  async function scrape(): Promise<{ text: string; samples: Sample[] }> {
    const response = await request(http).get('/metrics').expect(200);
    expect(response.headers['content-type']).toMatch(
      /^text\/plain; version=0\.0\.4/,
    );
    return { text: response.text, samples: parseExposition(response.text) };
  }

  beforeAll(() => upstream.start());
  afterAll(() => upstream.stop());
  beforeEach(() => {
    upstream.reset();
  });
  afterEach(() => service?.close());

  it('counts exactly: 1 miss, 5 hits, then (upstream down, TTL passed) 1 stale', async () => {
    await start();
    await request(http).get('/image').expect(200);
    for (let hit = 0; hit < 5; hit++) {
      await request(http).get('/image').expect(200);
    }
    service.clock.advanceSeconds(TTL_SECONDS + 1);
    upstream.mode = 'server-error';
    await request(http).get('/image').expect(200);

    const { samples } = await scrape();

    const requests = (result: string) =>
      sampleValue(samples, 'image_cache_requests_total', { result });
    expect([
      requests('miss'),
      requests('hit'),
      requests('stale'),
      requests('error'),
    ]).toEqual([1, 5, 1, 0]);
    expect(
      sampleValue(samples, 'image_cache_hits_total', { tier: 'memory' }),
    ).toBe(5);
    expect(
      sampleValue(samples, 'image_cache_hits_total', { tier: 'disk' }),
    ).toBe(0);
    expect(sampleValue(samples, 'image_cache_collapsed_requests_total')).toBe(
      0,
    );
    expect(
      sampleValue(samples, 'image_cache_upstream_fetches_total', {
        outcome: 'success',
      }),
    ).toBe(1);
    expect(
      sampleValue(samples, 'image_cache_upstream_fetches_total', {
        outcome: 'http_error',
      }),
    ).toBe(1);
    expect(
      sampleValue(
        samples,
        'image_cache_upstream_fetch_duration_seconds_count',
        { outcome: 'success' },
      ),
    ).toBe(1);
    expect(
      sampleValue(samples, 'http_request_duration_seconds_count', {
        method: 'GET',
        route: '/image',
        code: '200',
      }),
    ).toBe(7);
    expect(
      sampleValue(samples, 'image_cache_tier_entries', { tier: 'memory' }),
    ).toBe(1);
    expect(
      sampleValue(samples, 'image_cache_tier_entries', { tier: 'disk' }),
    ).toBe(1);
    expect(
      sampleValue(samples, 'image_cache_tier_bytes', { tier: 'disk' }),
    ).toBeGreaterThan(0);
    expect(
      sampleValue(samples, 'image_cache_tier_max_bytes', { tier: 'memory' }),
    ).toBeGreaterThan(0);
    expect(
      sampleValue(samples, 'process_resident_memory_bytes'),
    ).toBeGreaterThan(0);
    // No shared tier is configured, so there is no gauge claiming one is down.
    expect(sampleValue(samples, 'image_cache_shared_tier_up')).toBeUndefined();
  });

  it('counts a 304 under its cache result, a disk hit by its tier, and an error with nothing to serve', async () => {
    await start({ CACHE_MEMORY_MAX_SIZE: '0' });
    const first = await request(http).get('/image').expect(200);
    await request(http)
      .get('/image')
      .set('If-None-Match', first.headers.etag)
      .expect(304);
    await request(http).head('/image').expect(200);
    upstream.mode = 'server-error';
    await request(http).get('/image?width=300&height=200').expect(502);

    const { samples } = await scrape();

    expect(
      sampleValue(samples, 'image_cache_requests_total', { result: 'hit' }),
    ).toBe(2);
    expect(
      sampleValue(samples, 'image_cache_requests_total', { result: 'miss' }),
    ).toBe(1);
    expect(
      sampleValue(samples, 'image_cache_requests_total', { result: 'error' }),
    ).toBe(1);
    expect(
      sampleValue(samples, 'image_cache_hits_total', { tier: 'disk' }),
    ).toBe(2);
    expect(
      sampleValue(samples, 'image_cache_tier_max_bytes', { tier: 'memory' }),
    ).toBe(0);
    for (const [method, code, count] of [
      ['GET', '304', 1],
      ['HEAD', '200', 1],
      ['GET', '502', 1],
    ] as const) {
      expect(
        sampleValue(samples, 'http_request_duration_seconds_count', {
          method,
          route: '/image',
          code,
        }),
      ).toBe(count);
    }
  });

  it('counts the requests that waited for one fetch as collapsed', async () => {
    await start();
    upstream.delayMs = 200;

    await Promise.all(
      Array.from({ length: 10 }, () => request(http).get('/image').expect(200)),
    );
    const { samples } = await scrape();

    expect(
      sampleValue(samples, 'image_cache_requests_total', { result: 'miss' }),
    ).toBe(10);
    expect(sampleValue(samples, 'image_cache_collapsed_requests_total')).toBe(
      9,
    );
    expect(
      sampleValue(samples, 'image_cache_upstream_fetches_total', {
        outcome: 'success',
      }),
    ).toBe(1);
  });

  it.each([
    ['timeout', 'hang'],
    ['invalid', 'html'],
    ['too_large', 'oversized'],
    ['network_error', 'reset'],
    ['redirect_refused', 'foreign-redirect'],
    ['http_error', 'server-error'],
  ] as const)(
    'counts a fetch that failed as %s (fake mode %s)',
    async (outcome, mode) => {
      await start({ UPSTREAM_TIMEOUT_MS: '300' });
      upstream.mode = mode;

      await request(http).get('/image');
      const { samples } = await scrape();

      const counted = samples.filter(
        (sample) =>
          sample.name === 'image_cache_upstream_fetches_total' &&
          sample.value > 0,
      );
      expect(
        counted.map((sample) => [sample.labels.outcome, sample.value]),
      ).toEqual([[outcome, 1]]);
      expect(
        sampleValue(
          samples,
          'image_cache_upstream_fetch_duration_seconds_count',
          { outcome },
        ),
      ).toBe(1);
    },
  );

  it('counts misses refused because the fetch cap was full', async () => {
    await start({
      UPSTREAM_MAX_CONCURRENCY: '1',
      UPSTREAM_QUEUE_TIMEOUT_MS: '50',
    });
    upstream.delayMs = 500;

    const statuses = await Promise.all(
      [100, 200, 300].map((width) =>
        request(http)
          .get(`/image?width=${width}&height=100`)
          .then((reply) => reply.status),
      ),
    );
    const { samples } = await scrape();

    expect(statuses.sort()).toEqual([200, 503, 503]);
    expect(sampleValue(samples, 'image_cache_upstream_busy_total')).toBe(2);
    expect(
      sampleValue(samples, 'image_cache_requests_total', { result: 'error' }),
    ).toBe(2);
  });

  it('counts evictions when the memory budget is full', async () => {
    await start({ CACHE_MEMORY_MAX_SIZE: '10Ki' });
    for (const width of [100, 110, 120, 130, 140, 150, 160, 170]) {
      await request(http)
        .get(`/image?width=${width}&height=${width}`)
        .expect(200);
    }
    const { samples } = await scrape();

    const evictions =
      sampleValue(samples, 'image_cache_evictions_total', { tier: 'memory' }) ??
      0;
    const entries =
      sampleValue(samples, 'image_cache_tier_entries', { tier: 'memory' }) ?? 0;
    expect(evictions).toBeGreaterThan(0);
    expect(evictions + entries).toBe(8);
    expect(
      sampleValue(samples, 'image_cache_tier_bytes', { tier: 'memory' }),
    ).toBeLessThanOrEqual(10 * 1024);
  });

  it('labels routes by their template, never the raw URL, and unmatched ones as such', async () => {
    await start();
    await request(http).get('/image?width=321&height=123').expect(200);
    await request(http).get('/image?width=322&height=123').expect(200);
    await request(http).get('/no/such/path/unmatched-marker').expect(404);
    await request(http).get('/health/live').expect(200);

    const { text, samples } = await scrape();

    expect(text).not.toContain('width=');
    // A word, not a number: a number can turn up in any gauge (a heap size did).
    expect(text).not.toContain('unmatched-marker');
    expect(
      sampleValue(samples, 'http_request_duration_seconds_count', {
        method: 'GET',
        route: '/image',
        code: '200',
      }),
    ).toBe(2);
    expect(
      sampleValue(samples, 'http_request_duration_seconds_count', {
        method: 'GET',
        route: 'unmatched',
        code: '404',
      }),
    ).toBe(1);
    expect(
      sampleValue(samples, 'http_request_duration_seconds_count', {
        method: 'GET',
        route: '/health/live',
        code: '200',
      }),
    ).toBe(1);
  });

  it('passes promtool check metrics', async () => {
    await start();
    await request(http).get('/image').expect(200);

    const { text } = await scrape();

    await expect(promtoolCheckMetrics(text)).resolves.toBe('');
  });
});
