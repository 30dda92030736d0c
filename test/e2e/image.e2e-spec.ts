import { readdir, rm } from 'node:fs/promises';
import { get } from 'node:http';
import request from 'supertest';
import type { App } from 'supertest/types';
import { FakePicsum } from '../fake-picsum/fake-picsum.server';
import { startTestApp, type TestApp } from '../support/test-app';

const TTL_SECONDS = 600;
const RETRY_AFTER_SECONDS = 10;

describe('GET /image (AppModule against a local fake Picsum)', () => {
  const upstream = new FakePicsum();
  let service: TestApp;
  let http: App;

  async function start(env: Record<string, string> = {}): Promise<void> {
    service = await startTestApp({
      PICSUM_BASE_URL: upstream.baseUrl,
      CACHE_TTL_SECONDS: String(TTL_SECONDS),
      UPSTREAM_RETRY_AFTER_SECONDS: String(RETRY_AFTER_SECONDS),
      // Well above the fake's delays, so a slow shared machine never turns a test's fetch into a 504.
      UPSTREAM_TIMEOUT_MS: '2000',
      UPSTREAM_MAX_BYTES: String(256 * 1024),
      ...env,
    });
    http = service.app.getHttpServer();
  }

  function storedFiles(): Promise<string[]> {
    return readdir(service.cacheDir).then((names) => names.sort());
  }

  beforeAll(() => upstream.start());
  afterAll(() => upstream.stop());
  beforeEach(async () => {
    upstream.reset();
    await start();
  });
  afterEach(() => service.close());

  it('fresh start: fetches through the redirect, validates, stores and serves the image', async () => {
    const response = await request(http).get('/image').expect(200);

    const id = Number(response.headers['x-picsum-id']);
    expect(response.body).toEqual(upstream.jpeg(id, 1200, 1200));
    expect(response.headers).toMatchObject({
      'content-type': 'image/jpeg',
      'content-length': String(upstream.jpeg(id, 1200, 1200).length),
      'cache-control': `public, max-age=${TTL_SECONDS}`,
      age: '0',
      'x-cache': 'MISS',
      'last-modified': new Date(service.clock.now()).toUTCString(),
    });
    expect(response.headers.etag).toMatch(/^"[0-9a-f]{32}"$/);
    expect(upstream.fetches).toBe(1);
    expect(upstream.imageRequests).toBe(1);
    expect(
      (await storedFiles()).some((name) => name.endsWith('.meta.json')),
    ).toBe(true);
  });

  it('within the TTL: serves from the cache without calling the upstream', async () => {
    const first = await request(http).get('/image').expect(200);
    service.clock.advanceSeconds(TTL_SECONDS - 1);

    const second = await request(http).get('/image').expect(200);

    expect(second.headers['x-cache']).toBe('HIT');
    expect(second.headers.etag).toBe(first.headers.etag);
    expect(second.headers.age).toBe(String(TTL_SECONDS - 1));
    expect(second.body).toEqual(first.body);
    expect(upstream.fetches).toBe(1);
  });

  it('after the TTL: fetches a new image and serves it', async () => {
    const first = await request(http).get('/image').expect(200);
    service.clock.advanceSeconds(TTL_SECONDS);

    const second = await request(http).get('/image').expect(200);

    expect(second.headers['x-cache']).toBe('MISS');
    expect(second.headers['x-picsum-id']).not.toBe(
      first.headers['x-picsum-id'],
    );
    expect(second.headers.etag).not.toBe(first.headers.etag);
    expect(upstream.fetches).toBe(2);
  });

  it('new pod: an empty CACHE_DIR starts fresh and fetches', async () => {
    await request(http).get('/image').expect(200);
    const firstPod = service;
    await start();

    const response = await request(http).get('/image').expect(200);

    expect(response.headers['x-cache']).toBe('MISS');
    expect(upstream.fetches).toBe(2);
    await firstPod.close();
  });

  describe('the upstream fails after the TTL', () => {
    it.each([
      'server-error',
      'html',
      'mislabeled',
      'truncated',
      'oversized',
      'reset',
      'hang',
    ] as const)(
      '%s: serves the stale image, stores nothing, does not call again within the retry window',
      async (mode) => {
        const cached = await request(http).get('/image').expect(200);
        const filesBefore = await storedFiles();
        service.clock.advanceSeconds(TTL_SECONDS + 1);
        upstream.mode = mode;

        const stale = await request(http).get('/image').expect(200);
        const again = await request(http).get('/image').expect(200);

        expect(stale.headers['x-cache']).toBe('STALE');
        expect(stale.headers['cache-control']).toBe('public, max-age=0');
        expect(stale.headers.etag).toBe(cached.headers.etag);
        expect(stale.body).toEqual(cached.body);
        expect(again.headers['x-cache']).toBe('STALE');
        // A connection closed unanswered is, for all the client can tell, a kept-alive one the
        // upstream had just closed: the request is sent once more, on a new connection.
        const requestsOfTheFailedFetch = mode === 'reset' ? 2 : 1;
        expect(upstream.fetches).toBe(1 + requestsOfTheFailedFetch);
        expect(await storedFiles()).toEqual(filesBefore);

        upstream.mode = 'ok';
        service.clock.advanceSeconds(RETRY_AFTER_SECONDS);
        const recovered = await request(http).get('/image').expect(200);
        expect(recovered.headers['x-cache']).toBe('MISS');
        expect(upstream.fetches).toBe(2 + requestsOfTheFailedFetch);
      },
    );

    it('keeps readiness at 200 while stale images are served', async () => {
      await request(http).get('/image').expect(200);
      service.clock.advanceSeconds(TTL_SECONDS + 1);
      upstream.mode = 'server-error';
      await request(http).get('/image').expect(200);

      await request(http).get('/health/ready').expect(200);
    });
  });

  describe('nothing cached and the upstream failing', () => {
    it('answers 502 with a JSON error naming the cause, never a half image', async () => {
      upstream.mode = 'truncated';

      const response = await request(http).get('/image').expect(502);

      expect(response.headers['content-type']).toMatch(/^application\/json/);
      expect(response.body).toEqual({
        statusCode: 502,
        error: 'Bad Gateway',
        message: expect.stringContaining(
          'closed the connection before the body was complete',
        ) as string,
      });
      expect(await storedFiles()).toEqual([]);
    });

    it('answers 504 when the upstream does not answer in time', async () => {
      await service.close();
      await start({ UPSTREAM_TIMEOUT_MS: '500' });
      upstream.mode = 'hang';

      const response = await request(http).get('/image').expect(504);

      expect(response.body).toMatchObject({
        statusCode: 504,
        message: expect.stringContaining(
          'UPSTREAM_TIMEOUT_MS (500 ms)',
        ) as string,
      });
    });

    it('answers from the remembered failure within the retry window instead of calling again', async () => {
      upstream.mode = 'server-error';
      await request(http).get('/image').expect(502);

      await request(http).get('/image').expect(502);

      expect(upstream.fetches).toBe(1);
    });
  });

  describe('Cache-Status (RFC 9211)', () => {
    const cacheStatus = async (path = '/image', status = 200) =>
      (await request(http).get(path).expect(status)).headers['cache-status'];

    it('says uri-miss on a cold cache, then a memory hit with the seconds left', async () => {
      const miss = await cacheStatus();
      service.clock.advanceSeconds(60);
      const hit = await cacheStatus();

      expect(miss).toBe('image-cache; fwd=uri-miss; fwd-status=200; stored');
      expect(hit).toBe(
        `image-cache; hit; ttl=${TTL_SECONDS - 60}; detail=memory`,
      );
    });

    it('says a disk hit when the memory tier is off, and a stale refetch after the TTL', async () => {
      await service.close();
      await start({ CACHE_MEMORY_MAX_SIZE: '0' });
      await cacheStatus();

      const fromDisk = await cacheStatus();
      service.clock.advanceSeconds(TTL_SECONDS);
      const refetched = await cacheStatus();

      expect(fromDisk).toBe(
        `image-cache; hit; ttl=${TTL_SECONDS}; detail=disk`,
      );
      expect(refetched).toBe('image-cache; fwd=stale; fwd-status=200; stored');
    });

    it('marks the requests of a stampede that waited for the fetch as collapsed', async () => {
      upstream.delayMs = 200;
      const url = `${await service.app.getUrl()}/image`;

      const responses = await Promise.all(
        Array.from({ length: 10 }, () => fetch(url)),
      );
      await Promise.all(responses.map((response) => response.arrayBuffer()));
      const values = responses.map((response) =>
        response.headers.get('cache-status'),
      );

      expect(values.sort()).toEqual([
        'image-cache; fwd=uri-miss; fwd-status=200; stored',
        ...Array.from(
          { length: 9 },
          () => 'image-cache; fwd=uri-miss; fwd-status=200; stored; collapsed',
        ),
      ]);
    });

    it("says stale-if-error with the upstream's own status as fwd-status, then upstream-failing inside the retry window", async () => {
      await cacheStatus();
      service.clock.advanceSeconds(TTL_SECONDS + 5);
      upstream.mode = 'server-error';

      const failedNow = await cacheStatus();
      service.clock.advanceSeconds(1);
      const withinWindow = await cacheStatus();

      // The upstream answered 500; the service's own 502 is not what the next hop returned.
      expect(failedNow).toBe('image-cache; fwd=stale; fwd-status=500; ttl=-5');
      expect(withinWindow).toBe(
        'image-cache; hit; ttl=-6; detail=upstream-failing',
      );
    });

    it("says uri-miss with the upstream's status when there is nothing to serve; 502 where none came back, 504 for a timeout", async () => {
      upstream.mode = 'server-error';
      const failed = await cacheStatus('/image', 502);
      upstream.mode = 'reset';
      const reset = await cacheStatus('/image?width=300', 502);
      await service.close();
      await start({ UPSTREAM_TIMEOUT_MS: '300' });
      upstream.mode = 'hang';
      const timedOut = await cacheStatus('/image', 504);

      expect(failed).toBe('image-cache; fwd=uri-miss; fwd-status=500');
      expect(reset).toBe('image-cache; fwd=uri-miss; fwd-status=502');
      expect(timedOut).toBe('image-cache; fwd=uri-miss; fwd-status=504');
    });
  });

  describe('a stampede of requests for one variant', () => {
    it('makes exactly one upstream fetch for 100 concurrent requests on a cold cache', async () => {
      upstream.delayMs = 200;
      const url = `${await service.app.getUrl()}/image`;

      const responses = await Promise.all(
        Array.from({ length: 100 }, () => fetch(url)),
      );
      const etags = new Set(
        responses.map((response) => response.headers.get('etag')),
      );
      await Promise.all(responses.map((response) => response.arrayBuffer()));

      expect(responses.every((response) => response.status === 200)).toBe(true);
      expect(etags.size).toBe(1);
      expect(upstream.fetches).toBe(1);
    });

    it('makes exactly one upstream fetch for 100 concurrent requests on an expired cache', async () => {
      await request(http).get('/image').expect(200);
      service.clock.advanceSeconds(TTL_SECONDS);
      upstream.delayMs = 200;
      const url = `${await service.app.getUrl()}/image`;

      const responses = await Promise.all(
        Array.from({ length: 100 }, () => fetch(url)),
      );
      await Promise.all(responses.map((response) => response.arrayBuffer()));

      expect(responses.every((response) => response.status === 200)).toBe(true);
      expect(upstream.fetches).toBe(2);
    });

    it('does not cancel the shared fetch when the client that started it disconnects', async () => {
      upstream.delayMs = 150;
      const url = `${await service.app.getUrl()}/image`;
      // A client that closes its connection mid-request, as a browser does when the user navigates away.
      const impatient = get(url);
      const disconnected = new Promise((resolve) =>
        impatient.on('close', resolve),
      );
      impatient.on('error', () => undefined);
      await new Promise((resolve) => setTimeout(resolve, 50));
      const others = Array.from({ length: 5 }, () => fetch(url));
      impatient.destroy();
      await disconnected;

      const responses = await Promise.all(others);
      await Promise.all(responses.map((response) => response.arrayBuffer()));

      expect(responses.map((response) => response.status)).toEqual([
        200, 200, 200, 200, 200,
      ]);
      expect(upstream.fetches).toBe(1);
      await request(http).get('/image/info').expect(200);
    });
  });

  describe('HTTP caching', () => {
    it('answers If-None-Match with the current ETag with 304 and no body', async () => {
      const first = await request(http).get('/image').expect(200);

      const response = await request(http)
        .get('/image')
        .set('If-None-Match', first.headers.etag)
        .expect(304);

      expect(response.headers.etag).toBe(first.headers.etag);
      expect(response.headers['x-cache']).toBe('HIT');
      expect(response.text ?? '').toBe('');
    });

    it('sends the whole image when If-None-Match holds another ETag', async () => {
      await request(http).get('/image').expect(200);

      await request(http)
        .get('/image')
        .set('If-None-Match', '"something-else"')
        .expect(200);
    });

    it('answers HEAD with the headers of GET and no body', async () => {
      const get = await request(http).get('/image').expect(200);

      const head = await request(http).head('/image').expect(200);

      expect(head.headers['content-length']).toBe(
        get.headers['content-length'],
      );
      expect(head.headers.etag).toBe(get.headers.etag);
      expect(head.headers['content-type']).toBe('image/jpeg');
      expect(head.body).toEqual({});
      expect(upstream.fetches).toBe(1);
    });
  });

  describe('fresh hits in memory (answered by FreshHitHook, before the controller)', () => {
    /** The headers of a reply, without those that differ between any two replies. */
    function replyHeaders(response: request.Response): Record<string, string> {
      const headers = { ...(response.headers as Record<string, string>) };
      delete headers.date;
      delete headers['x-request-id'];
      return headers;
    }

    it('sends exactly what the controller sends for the same hit', async () => {
      await request(http).get('/image').expect(200);
      service.clock.advanceSeconds(42);

      const fast = await request(http).get('/image').expect(200);
      // A conditional request is left to the controller, which sends the whole image when
      // the ETag differs.
      const viaController = await request(http)
        .get('/image')
        .set('If-None-Match', '"another"')
        .expect(200);

      expect(replyHeaders(fast)).toEqual(replyHeaders(viaController));
      expect(fast.headers).toMatchObject({
        'x-cache': 'HIT',
        age: '42',
        'cache-status': `image-cache; hit; ttl=${TTL_SECONDS - 42}; detail=memory`,
        'x-content-type-options': 'nosniff',
        'content-security-policy': "default-src 'none'; sandbox",
      });
      expect(fast.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
      expect(fast.body).toEqual(viaController.body);
    });

    it('makes the headers of each second of age anew', async () => {
      await request(http).get('/image').expect(200);

      service.clock.advanceSeconds(5);
      const early = await request(http).get('/image').expect(200);
      service.clock.advanceSeconds(1);
      const later = await request(http).get('/image').expect(200);

      expect([early.headers.age, later.headers.age]).toEqual(['5', '6']);
      expect(later.headers['cache-status']).toBe(
        `image-cache; hit; ttl=${TTL_SECONDS - 6}; detail=memory`,
      );
    });

    it('serves two spellings of one variant from one entry, and still refuses a bad query after a good one', async () => {
      const plain = await request(http)
        .get('/image?width=300&height=300')
        .expect(200);

      const spelled = await request(http)
        .get('/image?height=300&width=300')
        .expect(200);
      await request(http).get('/image?width=300&height=300&nope=1').expect(400);
      await request(http).get('/image?width=300&height=300x').expect(400);

      expect(spelled.headers['x-cache']).toBe('HIT');
      expect(spelled.headers.etag).toBe(plain.headers.etag);
      expect(upstream.fetches).toBe(1);
    });
  });

  describe('GET /image/info', () => {
    it('answers 404 with a JSON error before anything is cached, without fetching', async () => {
      const response = await request(http).get('/image/info').expect(404);

      expect(response.body).toEqual({
        statusCode: 404,
        error: 'Not Found',
        message:
          'No image is cached yet for 1200x1200; GET /image with the same parameters fetches one',
      });
      expect(upstream.fetches).toBe(0);
    });

    it('describes the cached image, and says when it is stale', async () => {
      const image = await request(http).get('/image').expect(200);
      const fetchedAt = service.clock.now();
      service.clock.advanceSeconds(TTL_SECONDS);

      const { body } = (await request(http).get('/image/info').expect(200)) as {
        body: unknown;
      };

      const id = image.headers['x-picsum-id'];
      expect(body).toEqual({
        key: '1200x1200',
        id,
        contentType: 'image/jpeg',
        bytes: Number(image.headers['content-length']),
        etag: image.headers.etag,
        fetchedAt: new Date(fetchedAt).toISOString(),
        expiresAt: new Date(fetchedAt + TTL_SECONDS * 1000).toISOString(),
        stale: true,
        source: expect.stringMatching(
          // Picsum's image URLs carry an hmac
          `^${upstream.imageBaseUrl}/id/${id}/1200/1200\\.jpg\\?hmac=[\\w-]{43}$`,
        ) as unknown,
      });
      expect(upstream.fetches).toBe(1);
    });
  });

  describe('health', () => {
    it('reports liveness and readiness in the Terminus format', async () => {
      const live = await request(http).get('/health/live').expect(200);
      const ready = await request(http).get('/health/ready').expect(200);

      expect(live.body).toMatchObject({ status: 'ok' });
      expect(ready.body).toMatchObject({
        status: 'ok',
        info: {
          cacheStorage: { status: 'up', writable: true },
          shutdown: { status: 'up' },
          sharedCache: { status: 'up', configured: false },
        },
      });
    });

    it('turns readiness to 503 when the cache storage is unusable, keeping liveness at 200', async () => {
      await rm(service.cacheDir, { recursive: true });
      // The disk is probed at most once per READINESS_DISK_CHECK_INTERVAL_MS (5 s).
      await request(http).get('/health/ready').expect(200);
      service.clock.advanceSeconds(5);

      const ready = await request(http).get('/health/ready').expect(503);
      await request(http).get('/health/live').expect(200);

      expect(ready.body).toMatchObject({
        status: 'error',
        error: { cacheStorage: { status: 'down', problem: 'ENOENT' } },
      });
      // The directory is in the logs; a probe's body names the kind of failure only.
      expect(JSON.stringify(ready.body)).not.toContain(service.cacheDir);
    });
  });

  it('uses IMAGE_WIDTH and IMAGE_HEIGHT for the upstream request', async () => {
    await service.close();
    await start({ IMAGE_WIDTH: '640', IMAGE_HEIGHT: '480' });

    const response = await request(http).get('/image').expect(200);

    const id = Number(response.headers['x-picsum-id']);
    expect(response.body).toEqual(upstream.jpeg(id, 640, 480));
  });
});
