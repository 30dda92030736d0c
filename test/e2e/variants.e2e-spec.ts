import request from 'supertest';
import type { App } from 'supertest/types';
import { FakePicsum } from '../fake-picsum/fake-picsum.server';
import { diskUsage } from '../support/disk-usage';
import { makeCacheDir, startTestApp, type TestApp } from '../support/test-app';

const MIB = 1024 * 1024;

/**
 * Image variants through query parameters, the two byte-bounded tiers, the disk index across
 * restarts, and the cap on concurrent upstream fetches, against the real AppModule.
 */
describe('variants and cache tiers (AppModule against a local fake Picsum)', () => {
  const upstream = new FakePicsum();
  const running: TestApp[] = [];
  let http: App;

  async function start(
    env: Record<string, string> = {},
    cacheDir?: string,
  ): Promise<TestApp> {
    const service = await startTestApp(
      {
        PICSUM_BASE_URL: upstream.baseUrl,
        UPSTREAM_TIMEOUT_MS: '2000',
        ...env,
      },
      cacheDir,
    );
    running.push(service);
    http = service.app.getHttpServer();
    return service;
  }

  beforeAll(() => upstream.start());
  afterAll(() => upstream.stop());
  beforeEach(() => upstream.reset());
  afterEach(async () => {
    for (const service of running.splice(0)) {
      await service.close();
    }
    upstream.jpegBytes = 0;
  });

  describe('query parameters', () => {
    beforeEach(() => start());

    it('fetches the variant asked for, and serves it again whatever the parameter order', async () => {
      const first = await request(http)
        .get('/image?width=300&height=200&grayscale&blur=2&format=webp')
        .expect(200);
      const again = await request(http)
        .get('/image?format=webp&blur=2&grayscale=true&height=200&width=300')
        .expect(200);

      expect(first.headers['content-type']).toBe('image/webp');
      expect(first.headers['x-cache']).toBe('MISS');
      const id = Number(first.headers['x-picsum-id']);
      expect(first.body).toEqual(
        upstream.image(id, 300, 200, {
          format: 'webp',
          grayscale: true,
          blur: 2,
        }),
      );
      expect(again.headers['x-cache']).toBe('HIT');
      expect(again.headers.etag).toBe(first.headers.etag);
      expect(upstream.fetches).toBe(1);
    });

    it('shares one entry between /image and the same variant spelled out', async () => {
      await request(http).get('/image').expect(200);

      const spelled = await request(http)
        .get('/image?width=1200&height=1200&grayscale=false&format=jpg')
        .expect(200);

      expect(spelled.headers['x-cache']).toBe('HIT');
      expect(upstream.fetches).toBe(1);
    });

    it('gives each variant its own entry, ETag and /image/info', async () => {
      const plain = await request(http).get('/image?width=64').expect(200);
      const gray = await request(http)
        .get('/image?width=64&grayscale')
        .expect(200);

      expect(gray.headers.etag).not.toBe(plain.headers.etag);
      const info = await request(http)
        .get('/image/info?grayscale=true&width=64')
        .expect(200);
      expect(info.body).toMatchObject({
        key: '64x1200-grayscale',
        etag: gray.headers.etag,
      });
      await request(http).get('/image/info?width=64&blur=5').expect(404);
      expect(upstream.fetches).toBe(2);
    });

    it.each([
      ['/image?width=0', 'query parameter width="0" is not allowed'],
      ['/image?width=5001', 'expected an integer from 1 to 5000'],
      ['/image?blur=11', 'query parameter blur="11" is not allowed'],
      ['/image?grayscale=1&grayscale=0', 'expected a single value'],
      ['/image?format=png', 'expected jpg or webp'],
      ['/image?width=10&width=20', 'expected a single integer'],
      ['/image?size=10', 'unknown query parameter size'],
      ['/image/info?colour=red', 'unknown query parameter colour'],
    ])(
      'answers %s with a 400 naming the problem, and fetches nothing',
      async (path, message) => {
        const response = await request(http).get(path).expect(400);

        expect(response.body).toMatchObject({
          statusCode: 400,
          error: 'Bad Request',
          message: expect.stringContaining(message) as string,
        });
        expect(upstream.fetches).toBe(0);
      },
    );
  });

  it('serves many variants within the budgets from memory once fetched', async () => {
    await start();
    const widths = Array.from({ length: 30 }, (_, i) => 100 + i);

    for (const width of widths) {
      await request(http).get(`/image?width=${width}`).expect(200);
    }
    const again = await Promise.all(
      widths.map((width) => request(http).get(`/image?width=${width}`)),
    );

    expect(again.map((response) => response.headers['x-cache'])).toEqual(
      widths.map(() => 'HIT'),
    );
    expect(upstream.fetches).toBe(30);
  });

  it('evicts under budgets smaller than the working set, and keeps the disk within its budget', async () => {
    upstream.jpegBytes = 20_000;
    const service = await start({
      CACHE_MEMORY_MAX_SIZE: '64Ki',
      CACHE_DISK_MAX_SIZE: '1Mi',
    });
    const widths = Array.from({ length: 60 }, (_, i) => 100 + i);

    for (const width of widths) {
      await request(http).get(`/image?width=${width}`).expect(200);
      expect(await diskUsage(service.cacheDir)).toBeLessThanOrEqual(MIB);
    }
    const newest = await request(http).get('/image?width=158').expect(200);
    const oldest = await request(http).get('/image?width=100').expect(200);

    // 20 KB images take 28 KiB each on disk with their metadata: about 36 fit in 1 MiB.
    expect(newest.headers['x-cache']).toBe('HIT');
    expect(oldest.headers['x-cache']).toBe('MISS');
    expect(upstream.fetches).toBe(61);
    expect(await diskUsage(service.cacheDir)).toBeGreaterThan(MIB / 2);
  });

  it('rebuilds the disk index at restart and serves every stored variant without refetching', async () => {
    const cacheDir = await makeCacheDir();
    const first = await start({}, cacheDir);
    const paths = [
      '/image',
      '/image?width=300&height=200',
      '/image?grayscale',
      '/image?blur=3&format=webp',
    ];
    const etags: string[] = [];
    for (const path of paths) {
      etags.push((await request(http).get(path).expect(200)).headers.etag);
    }
    await first.app.close();
    running.splice(running.indexOf(first), 1);

    await start({}, cacheDir);
    const after = await Promise.all(
      paths.map((path) => request(http).get(path).expect(200)),
    );

    expect(after.map((response) => response.headers['x-cache'])).toEqual(
      paths.map(() => 'HIT'),
    );
    expect(after.map((response) => response.headers.etag)).toEqual(etags);
    expect(upstream.fetches).toBe(paths.length);
  });

  it('never takes the disk above its budget during a burst of distinct misses', async () => {
    upstream.jpegBytes = 20_000;
    const service = await start({
      CACHE_DISK_MAX_SIZE: '1Mi',
      UPSTREAM_QUEUE_TIMEOUT_MS: '20000',
    });
    let peak = 0;
    let bursting = true;
    const watch = (async () => {
      while (bursting) {
        peak = Math.max(peak, await diskUsage(service.cacheDir));
        await new Promise((resolve) => setImmediate(resolve));
      }
    })();

    const responses = await Promise.all(
      Array.from({ length: 80 }, (_, i) =>
        request(http).get(`/image?width=${200 + i}`),
      ),
    );
    bursting = false;
    await watch;

    expect(responses.map((response) => response.status)).toEqual(
      responses.map(() => 200),
    );
    expect(upstream.fetches).toBe(80);
    expect(peak).toBeGreaterThan(MIB / 2);
    expect(peak).toBeLessThanOrEqual(MIB);
  });

  it('caps concurrent upstream fetches with a 503 and Retry-After, while hits are served at once', async () => {
    await start({
      UPSTREAM_MAX_CONCURRENCY: '2',
      UPSTREAM_QUEUE_TIMEOUT_MS: '100',
    });
    await request(http).get('/image').expect(200);
    upstream.delayMs = 500;

    const misses = Promise.all(
      [301, 302, 303, 304, 305].map((width) =>
        request(http).get(`/image?width=${width}`),
      ),
    );
    let missesAnswered = false;
    void misses.then(() => (missesAnswered = true));
    await new Promise((resolve) => setTimeout(resolve, 50));
    const hit = await request(http).get('/image').expect(200);
    const hitBeforeMisses = !missesAnswered;
    const statuses = (await misses).map((response) => response.status);

    // The hit did not queue behind the fetches, which hold their slots for 500 ms.
    expect(hit.headers['x-cache']).toBe('HIT');
    expect(hitBeforeMisses).toBe(true);
    expect(statuses.filter((status) => status === 200)).toHaveLength(2);
    const refused = (await misses).filter(
      (response) => response.status === 503,
    );
    expect(refused).toHaveLength(3);
    expect(refused[0].headers['retry-after']).toBe('1');
    expect((refused[0].body as { message: string }).message).toContain(
      'UPSTREAM_MAX_CONCURRENCY',
    );
    expect(upstream.fetches).toBe(3);
  });
});
