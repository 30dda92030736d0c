import { get as httpGet } from 'node:http';
import request from 'supertest';
import type { App } from 'supertest/types';
import { FakePicsum } from '../fake-picsum/fake-picsum.server';
import { waitFor } from '../support/http-get';
import { startTestApp, type TestApp } from '../support/test-app';

const TOKEN = 'test-admin-token-0123456789abcdef0123456789';
const BEARER = `Bearer ${TOKEN}`;

describe('the admin API (AppModule against a local fake Picsum)', () => {
  const upstream = new FakePicsum();
  let service: TestApp | undefined;
  let http: App;

  async function start(env: Record<string, string> = {}): Promise<void> {
    service = await startTestApp({
      PICSUM_BASE_URL: upstream.baseUrl,
      ADMIN_TOKEN: TOKEN,
      ...env,
    });
    http = service.app.getHttpServer();
  }

  beforeAll(() => upstream.start());
  afterAll(() => upstream.stop());
  beforeEach(() => upstream.reset());
  afterEach(async () => {
    await service?.close();
    service = undefined;
  });

  it('does not exist without ADMIN_TOKEN: every route answers 404', async () => {
    await start({ ADMIN_TOKEN: '' });

    await request(http)
      .post('/admin/refresh')
      .set('authorization', BEARER)
      .expect(404);
    await request(http).delete('/admin/cache').expect(404);
    await request(http).get('/admin/entries').expect(404);
  });

  it('answers 401 with WWW-Authenticate: Bearer to a missing or wrong token, and 429 after 10 failures from one address to anything but the right token', async () => {
    await start();

    const missing = await request(http).get('/admin/entries').expect(401);
    const wrong = await request(http)
      .get('/admin/entries')
      .set('authorization', `Bearer ${TOKEN.slice(0, -1)}x`)
      .expect(401);
    const basic = await request(http)
      .get('/admin/entries')
      .set(
        'authorization',
        `Basic ${Buffer.from(`admin:${TOKEN}`).toString('base64')}`,
      )
      .expect(401);

    expect(missing.headers['www-authenticate']).toBe(
      'Bearer realm="image-cache admin"',
    );
    expect(wrong.headers['www-authenticate']).toBe(
      'Bearer realm="image-cache admin", error="invalid_token"',
    );
    expect(basic.headers['www-authenticate']).toBe(
      'Bearer realm="image-cache admin"',
    );
    expect((missing.body as { message: string }).message).toBe(
      'GET /admin/entries needs Authorization: Bearer <ADMIN_TOKEN>; the request had no bearer token',
    );
    expect(JSON.stringify(wrong.body)).not.toContain(TOKEN.slice(0, 20));

    for (let attempt = 4; attempt <= 10; attempt += 1) {
      await request(http)
        .get('/admin/entries')
        .set('authorization', 'Bearer guess')
        .expect(401);
    }
    const limited = await request(http)
      .get('/admin/entries')
      .set('authorization', 'Bearer guess')
      .expect(429);
    const anonymous = await request(http).get('/admin/entries').expect(429);
    // An operator behind the same address (a NAT, an ingress, a port-forward) is still served.
    await request(http)
      .get('/admin/entries')
      .set('authorization', BEARER)
      .expect(200);

    expect(Number(limited.headers['retry-after'])).toBeGreaterThan(0);
    expect(Number(limited.headers['retry-after'])).toBeLessThanOrEqual(60);
    expect(anonymous.headers['retry-after']).toBeDefined();
  });

  it('bounds the guesses of all addresses together: 100 a minute, then 429 for a new address too, never for the right token', async () => {
    await start();
    const port = Number(new URL(await service!.app.getUrl()).port);
    // 11 loopback addresses of this machine, 10 wrong guesses each: under each address's
    // bound, over the bound of all together.
    const statuses: number[] = [];
    for (let host = 2; host <= 12; host += 1) {
      for (let guess = 0; guess < 10; guess += 1) {
        statuses.push(
          await statusFrom(`127.0.0.${host}`, port, 'Bearer guess'),
        );
      }
    }
    const newcomer = await statusFrom('127.0.0.13', port, 'Bearer guess');
    const operator = await statusFrom('127.0.0.13', port, BEARER);

    expect(statuses.slice(0, 100).every((status) => status === 401)).toBe(true);
    expect(statuses.slice(100)).toEqual(Array(10).fill(429));
    expect(newcomer).toBe(429);
    expect(operator).toBe(200);
  });

  it('POST /admin/refresh fetches a new image now, makes it current and returns its info', async () => {
    await start();
    const before = await request(http).get('/image').expect(200);

    const refreshed = await request(http)
      .post('/admin/refresh')
      .set('authorization', BEARER)
      .expect(200);
    const after = await request(http).get('/image').expect(200);

    const info = refreshed.body as {
      etag: string;
      key: string;
      stale: boolean;
    };
    expect(info).toMatchObject({ key: '1200x1200', stale: false });
    expect(info.etag).not.toBe(before.headers.etag);
    expect(after.headers).toMatchObject({
      etag: info.etag,
      'x-cache': 'HIT',
      age: '0',
    });
    expect(refreshed.headers['cache-control']).toBe('no-store');
    expect(upstream.fetches).toBe(2);
  });

  it('POST /admin/refresh takes the variant parameters of /image and refuses bad ones', async () => {
    await start();

    const refreshed = await request(http)
      .post('/admin/refresh?width=300&height=200&grayscale')
      .set('authorization', BEARER)
      .expect(200);
    const bad = await request(http)
      .post('/admin/refresh?width=0')
      .set('authorization', BEARER)
      .expect(400);

    expect((refreshed.body as { key: string }).key).toBe('300x200-grayscale');
    expect(JSON.stringify(bad.body)).toContain('width');
  });

  it('GET /admin/entries lists every cached variant with its tiers; DELETE /admin/cache purges one, or all with all=true, and returns the count', async () => {
    await start();
    const first = await request(http).get('/image').expect(200);
    await request(http).get('/image?width=300&height=200').expect(200);

    const listed = await request(http)
      .get('/admin/entries')
      .set('authorization', BEARER)
      .expect(200);
    const one = await request(http)
      .delete('/admin/cache?width=300&height=200')
      .set('authorization', BEARER)
      .expect(200);
    const again = await request(http)
      .delete('/admin/cache?width=300&height=200')
      .set('authorization', BEARER)
      .expect(404);
    const all = await request(http)
      .delete('/admin/cache?all=true')
      .set('authorization', BEARER)
      .expect(200);
    const empty = await request(http)
      .get('/admin/entries')
      .set('authorization', BEARER)
      .expect(200);
    const refetched = await request(http).get('/image').expect(200);

    expect(listed.body).toEqual({
      entries: [
        {
          key: '1200x1200',
          bytes: Number(first.headers['content-length']),
          fetchedAt: new Date(service!.clock.now()).toISOString(),
          expiresAt: new Date(service!.clock.now() + 600_000).toISOString(),
          stale: false,
          tiers: ['memory', 'disk'],
        },
        expect.objectContaining({ key: '300x200', tiers: ['memory', 'disk'] }),
      ],
      nextCursor: null,
    });
    expect(one.body).toEqual({ removed: 1, key: '300x200' });
    expect(JSON.stringify(again.body)).toContain(
      'No image is cached for 300x200',
    );
    expect(all.body).toEqual({ removed: 1, key: null });
    expect(empty.body).toEqual({ entries: [], nextCursor: null });
    expect(refetched.headers['x-cache']).toBe('MISS');
    expect(upstream.fetches).toBe(3);
  });

  it('counts admin actions in image_cache_admin_actions_total{action}', async () => {
    await start();
    await request(http)
      .get('/admin/entries')
      .set('authorization', BEARER)
      .expect(200);
    await request(http).get('/admin/entries').expect(401);
    await request(http)
      .post('/admin/refresh')
      .set('authorization', BEARER)
      .expect(200);

    const metrics = (await request(http).get('/metrics').expect(200)).text;

    expect(metrics).toContain(
      'image_cache_admin_actions_total{action="entries"} 1',
    );
    expect(metrics).toContain(
      'image_cache_admin_actions_total{action="denied"} 1',
    );
    expect(metrics).toContain(
      'image_cache_admin_actions_total{action="refresh"} 1',
    );
    expect(metrics).toContain(
      'image_cache_admin_actions_total{action="purge"} 0',
    );
  });

  it('refuses DELETE /admin/cache without a variant or all=true (?& included), and all=true with a variant, purging nothing', async () => {
    await start();
    await request(http).get('/image').expect(200);

    const replies = await Promise.all(
      [
        '/admin/cache',
        '/admin/cache?&',
        '/admin/cache?all=yes',
        '/admin/cache?all=true&width=300',
      ].map((path) =>
        request(http).delete(path).set('authorization', BEARER).expect(400),
      ),
    );
    const still = await request(http).get('/image').expect(200);

    expect((replies[0].body as { message: string }).message).toBe(
      'DELETE /admin/cache needs the variant to purge, as the query of GET /image (e.g. width=300&height=200), or all=true to purge every variant',
    );
    expect((replies[1].body as { message: string }).message).toBe(
      (replies[0].body as { message: string }).message,
    );
    expect(JSON.stringify(replies[2].body)).toContain('all=\\"yes\\"');
    expect(JSON.stringify(replies[3].body)).toContain(
      'takes no variant parameters',
    );
    expect(still.headers['x-cache']).toBe('HIT');
  });

  it('GET /admin/entries marks the prefetched image held aside as next, with when it becomes current', async () => {
    await start({ CACHE_PREFETCH_SECONDS: '60' });
    await request(http).get('/image').expect(200);
    service!.clock.advanceSeconds(600 - 30);
    await request(http).get('/image').expect(200); // starts the prefetch
    await waitFor(() => upstream.fetches === 2, 5000);

    const listed = await waitForEntries(
      (entries) => entries[0]?.next !== undefined,
    );

    expect(listed[0]).toMatchObject({
      key: '1200x1200',
      tiers: ['memory', 'disk'],
      next: {
        fetchedAt: new Date(service!.clock.now() + 30_000).toISOString(),
        tiers: ['memory'],
      },
    });
  });

  /** The entries, once `ready` holds for them (a prefetch finishes in the background). */
  async function waitForEntries(
    ready: (entries: { next?: unknown }[]) => boolean,
  ): Promise<{ next?: unknown }[]> {
    for (let attempt = 0; attempt < 100; attempt += 1) {
      const reply = await request(http)
        .get('/admin/entries')
        .set('authorization', BEARER)
        .expect(200);
      const entries = (reply.body as { entries: { next?: unknown }[] }).entries;
      if (ready(entries)) {
        return entries;
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    throw new Error('the entries never became as expected');
  }
});

/** The status of `GET /admin/entries` sent from `localAddress`, a loopback address of this machine. */
function statusFrom(
  localAddress: string,
  port: number,
  authorization: string,
): Promise<number> {
  return new Promise((resolve, reject) => {
    httpGet(
      {
        host: '127.0.0.1',
        port,
        path: '/admin/entries',
        localAddress,
        headers: { authorization },
      },
      (response) => {
        response.resume();
        response.on('end', () => resolve(response.statusCode ?? 0));
      },
    ).on('error', reject);
  });
}
