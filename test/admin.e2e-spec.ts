import request from 'supertest';
import type { App } from 'supertest/types';
import { FakePicsum } from './fake-picsum/fake-picsum.server';
import { startTestApp, type TestApp } from './support/test-app';

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

  it('answers 401 with WWW-Authenticate: Bearer to a missing or wrong token, and 429 after 10 failures from one address, whatever it sends', async () => {
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
      .set('authorization', BEARER)
      .expect(429);
    expect(Number(limited.headers['retry-after'])).toBeGreaterThan(0);
    expect(Number(limited.headers['retry-after'])).toBeLessThanOrEqual(60);
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

  it('GET /admin/entries lists every cached variant with its tiers; DELETE /admin/cache purges one or all and returns the count', async () => {
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
      .delete('/admin/cache')
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
    });
    expect(one.body).toEqual({ removed: 1, key: '300x200' });
    expect(JSON.stringify(again.body)).toContain(
      'No image is cached for 300x200',
    );
    expect(all.body).toEqual({ removed: 1, key: null });
    expect(empty.body).toEqual({ entries: [] });
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
});
