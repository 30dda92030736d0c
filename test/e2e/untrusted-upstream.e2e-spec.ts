import { readdir } from 'node:fs/promises';
import request from 'supertest';
import type { App } from 'supertest/types';
import { FakePicsum } from '../fake-picsum/fake-picsum.server';
import { freePort } from '../support/free-port';
import { startTestApp, type TestApp } from '../support/test-app';

const TTL_SECONDS = 600;
const IMAGE_CSP = "default-src 'none'; sandbox";

/**
 * The upstream is not trusted: whatever it sends, what the service serves from its origin is
 * a complete image of a known type, with headers that stop a browser from running anything.
 */
describe('an untrusted upstream (AppModule against a local fake Picsum)', () => {
  const upstream = new FakePicsum();
  let service: TestApp;
  let http: App;

  async function start(
    env: Record<string, string> = {},
    cacheDir?: string,
  ): Promise<void> {
    service = await startTestApp(
      {
        PICSUM_BASE_URL: upstream.baseUrl,
        CACHE_TTL_SECONDS: String(TTL_SECONDS),
        UPSTREAM_RETRY_AFTER_SECONDS: '0',
        UPSTREAM_TIMEOUT_MS: '5000',
        ...env,
      },
      cacheDir,
    );
    http = service.app.getHttpServer();
  }

  async function storedFiles(): Promise<string[]> {
    return readdir(service.cacheDir);
  }

  beforeAll(() => upstream.start());
  afterAll(() => upstream.stop());
  beforeEach(async () => {
    upstream.reset();
    await start();
  });
  afterEach(() => service.close());

  it('refuses an SVG with a script whose bytes 4-11 spell ftypavif: 502, nothing stored', async () => {
    upstream.mode = 'svg';

    const response = await request(http).get('/image').expect(502);

    expect(response.headers['content-type']).toMatch(/^application\/json/);
    expect(response.headers['x-content-type-options']).toBe('nosniff');
    expect((response.body as { message: string }).message).toContain(
      'Content-Type "image/svg+xml"; only image/jpeg, image/png, image/gif, image/webp, image/avif are accepted',
    );
    expect(await storedFiles()).toEqual([]);
    await request(http).get('/image/info').expect(404);
  });

  it('keeps serving the last good image, as a JPEG, when the upstream turns to sending an SVG', async () => {
    const first = await request(http).get('/image').expect(200);
    service.clock.advanceSeconds(TTL_SECONDS);
    upstream.mode = 'svg';

    const stale = await request(http).get('/image').expect(200);

    expect(stale.headers['x-cache']).toBe('STALE');
    expect(stale.headers['content-type']).toBe('image/jpeg');
    expect(stale.headers.etag).toBe(first.headers.etag);
  });

  it.each([
    ['wrong-type', 'is image/jpeg although labelled image/png'],
    ['mislabeled', 'is not a complete JPEG, PNG, WebP, GIF or AVIF image'],
  ] as const)(
    'refuses a body whose format disagrees with its label (%s)',
    async (mode, message) => {
      upstream.mode = mode;

      const response = await request(http).get('/image').expect(502);

      expect((response.body as { message: string }).message).toContain(message);
      expect(await storedFiles()).toEqual([]);
    },
  );

  it('sends nosniff and a sandboxing CSP with every image reply, 304s included', async () => {
    const image = await request(http).get('/image').expect(200);
    const notModified = await request(http)
      .get('/image')
      .set('If-None-Match', image.headers.etag)
      .expect(304);
    const badRequest = await request(http).get('/image?width=0').expect(400);

    for (const reply of [image, notModified]) {
      expect(reply.headers['x-content-type-options']).toBe('nosniff');
      expect(reply.headers['content-security-policy']).toBe(IMAGE_CSP);
    }
    expect(badRequest.headers['x-content-type-options']).toBe('nosniff');
  });

  it('does not follow a redirect to a host that is not allowed, and names the host', async () => {
    upstream.mode = 'foreign-redirect';

    const response = await request(http).get('/image').expect(502);

    expect((response.body as { message: string }).message).toMatch(
      /redirected to host 127\.0\.0\.2, which is not the upstream's host or in UPSTREAM_ALLOWED_REDIRECT_HOSTS/,
    );
    expect(upstream.imageRequests).toBe(0);
  });

  it('passes a Picsum-ID on only when it is a plain id', async () => {
    upstream.mode = 'bad-id';

    const response = await request(http).get('/image').expect(200);

    expect(response.headers['x-picsum-id']).toBeUndefined();
  });

  it('names the upstream URL in an error reply, never the address it resolved to', async () => {
    const port = await freePort();
    await service.close();
    await start({ PICSUM_BASE_URL: `http://127.0.0.1:${port}` });

    const response = await request(http).get('/image').expect(502);

    expect((response.body as { message: string }).message).toBe(
      `Upstream http://127.0.0.1:${port}/1200/1200 failed: ECONNREFUSED`,
    );
  });

  it('never stores a body cut short by a connection closed without a Content-Length, even across a restart', async () => {
    upstream.mode = 'truncated-close';

    const response = await request(http).get('/image').expect(502);
    const cacheDir = service.cacheDir;
    await service.app.close();
    upstream.mode = 'ok';
    await start({}, cacheDir);
    const afterRestart = await request(http).get('/image').expect(200);

    expect((response.body as { message: string }).message).toContain(
      'is not a complete JPEG, PNG, WebP, GIF or AVIF image',
    );
    expect(afterRestart.headers['x-cache']).toBe('MISS');
    expect(upstream.fetches).toBe(2);
  });
});
