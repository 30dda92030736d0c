import { HttpModule, HttpService } from '@nestjs/axios';
import { BadGatewayException, GatewayTimeoutException } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { type AddressInfo, createServer, type Server } from 'node:net';
import {
  AxiosHeaders,
  type AxiosRequestConfig,
  type AxiosResponse,
} from 'axios';
import { type Observable, of } from 'rxjs';
import { completeJpeg } from '../../../test/support/cached-image-of';
import { FakePicsum } from '../../../test/fake-picsum/fake-picsum.server';
import { freePort } from '../../../test/support/free-port';
import { upstreamConfig } from '../../config/upstream.config';
import type { ImageVariant } from '../image-variant';
import { CacheMetrics } from '../../metrics/cache-metrics';
import { PicsumClient, upstreamPath } from './picsum.client';
import { UpstreamAgents } from './upstream-agents';
import { upstreamHttpOptions } from './upstream-http.options';

/** The deadline of the timeout tests: short, so they run fast. */
const SHORT_TIMEOUT_MS = 300;

/** A variant of the size the fake renders quickly. */
const VARIANT: ImageVariant = {
  width: 300,
  height: 200,
  grayscale: false,
  blur: 0,
  format: 'jpg',
};

/** The connections of every client of this file, closed at its end. */
const agents = new UpstreamAgents();

async function createClient(
  baseUrl: string,
  // Generous by default, so that a slow shared machine never turns another failure into a 504.
  timeoutMs = 10_000,
  extraRedirectHosts: string[] = [],
): Promise<PicsumClient> {
  const moduleRef = await Test.createTestingModule({
    imports: [
      HttpModule.register(
        upstreamHttpOptions({ timeoutMs, maxBytes: 256 * 1024 }, agents),
      ),
    ],
    providers: [
      PicsumClient,
      CacheMetrics,
      {
        provide: upstreamConfig.KEY,
        useValue: {
          baseUrl,
          imageWidth: 1200,
          imageHeight: 1200,
          timeoutMs,
          maxBytes: 256 * 1024,
          retryAfterSeconds: 10,
          allowedRedirectHosts: new Set([
            new URL(baseUrl).hostname,
            ...extraRedirectHosts,
          ]),
        },
      },
    ],
  }).compile();
  return moduleRef.get(PicsumClient);
}

describe(PicsumClient.name, () => {
  const upstream = new FakePicsum();
  const size: ImageVariant = {
    width: 300,
    height: 200,
    grayscale: false,
    blur: 0,
    format: 'jpg',
  };
  let client: PicsumClient;
  let impatientClient: PicsumClient;

  beforeAll(async () => {
    const baseUrl = await upstream.start();
    client = await createClient(baseUrl);
    impatientClient = await createClient(baseUrl, SHORT_TIMEOUT_MS);
  });

  afterEach(() => upstream.reset());
  afterAll(async () => {
    agents.onApplicationShutdown();
    await upstream.stop();
  });

  it.each([
    [{}, '/300/200'],
    [{ grayscale: true }, '/300/200?grayscale'],
    [{ blur: 3 }, '/300/200?blur=3'],
    [
      { format: 'webp' as const, grayscale: true, blur: 10 },
      '/300/200.webp?grayscale&blur=10',
    ],
  ])('asks Picsum for variant %j at %s', (options, path) => {
    expect(upstreamPath({ ...size, ...options })).toBe(path);
  });

  it('fetches a WebP variant with its options through the redirect', async () => {
    const variant = {
      ...size,
      format: 'webp' as const,
      grayscale: true,
      blur: 2,
    };

    const image = await client.fetchImage(variant);

    expect(image.contentType).toBe('image/webp');
    expect(image.source).toMatch(
      `${upstream.imageBaseUrl}/id/${image.picsumId}/300/200.webp?grayscale&blur=2&hmac=`,
    );
    expect(
      image.body.equals(
        upstream.image(Number(image.picsumId), 300, 200, variant),
      ),
    ).toBe(true);
  });

  it('follows the redirect and returns the image with its Picsum id and final URL', async () => {
    const image = await client.fetchImage(size);

    expect(image.contentType).toBe('image/jpeg');
    expect(image.picsumId).toMatch(/^\d+$/);
    expect(image.source).toMatch(
      new RegExp(
        `^${upstream.imageBaseUrl}/id/${image.picsumId}/300/200\\.jpg\\?hmac=[\\w-]{43}$`,
      ),
    );
    expect(
      image.body.equals(upstream.jpeg(Number(image.picsumId), 300, 200)),
    ).toBe(true);
    expect(upstream.fetches).toBe(1);
    expect(upstream.imageRequests).toBe(1);
  });

  it('keeps one connection to each upstream host alive across fetches', async () => {
    const other = await createClient(upstream.baseUrl);

    for (let fetch = 0; fetch < 3; fetch++) {
      await other.fetchImage({ ...size, width: 300 + fetch });
    }

    expect(upstream.fetches).toBe(3);
    expect(upstream.imageRequests).toBe(3);
    // The API host and the image host: one connection each, for all three fetches.
    expect(upstream.connections).toBeLessThanOrEqual(2);
  });

  it('stores a small body in memory of its own, not in a view of a larger buffer', async () => {
    const image = await client.fetchImage(size);

    expect(image.body.byteOffset).toBe(0);
    expect(image.body.buffer.byteLength).toBe(image.body.length);
  });

  it('turns a deadline that passes into a 504 naming UPSTREAM_TIMEOUT_MS', async () => {
    upstream.mode = 'hang';

    const fetching = impatientClient.fetchImage(size);

    await expect(fetching).rejects.toThrow(GatewayTimeoutException);
    await expect(fetching).rejects.toThrow('UPSTREAM_TIMEOUT_MS (300 ms)');
  });

  it('counts the deadline over the whole fetch, redirect included', async () => {
    // Each hop answers within the deadline on its own; the two together do not.
    upstream.delayMs = 200;

    await expect(impatientClient.fetchImage(size)).rejects.toThrow(
      GatewayTimeoutException,
    );
  });

  it.each([
    ['server-error', 'Upstream answered 500 for', ': "Something went wrong"'],
    ['html', 'Content-Type "text/html"; only image/jpeg, image/png'],
    ['mislabeled', 'is not a complete JPEG, PNG, WebP, GIF or AVIF image'],
    ['svg', 'Content-Type "image/svg+xml"; only image/jpeg'],
    ['wrong-type', 'is image/jpeg although labelled image/png; not stored'],
    ['truncated', 'closed the connection before the body was complete'],
    ['truncated-close', 'is not a complete JPEG, PNG, WebP, GIF or AVIF image'],
    ['oversized', 'larger than UPSTREAM_MAX_BYTES (262144 bytes)'],
    ['reset', 'closed the connection without a reply'],
    ['foreign-redirect', 'redirected to host 127.0.0.2, which is not'],
  ] as const)(
    'refuses a %s reply with a 502 that names the cause',
    async (mode, ...messages) => {
      upstream.mode = mode;

      const fetching = client.fetchImage(size);

      await expect(fetching).rejects.toThrow(BadGatewayException);
      for (const message of messages) {
        await expect(fetching).rejects.toThrow(message);
      }
    },
  );

  it('quotes an error body without its control and bidi characters (a right-to-left override cannot turn the text around)', async () => {
    upstream.mode = 'server-error';
    upstream.errorText =
      'Bad\u202egnp.exe\u2066 \u200b\u061c\u001b[31mred\u0085\u2028end';

    const fetching = client.fetchImage(size);

    await expect(fetching).rejects.toThrow(': "Bad gnp.exe   [31mred end"');
    expect(client.state.lastError).toMatch(/: "Bad gnp\.exe {3}\[31mred end"$/);
  });

  it('follows a redirect to a host in UPSTREAM_ALLOWED_REDIRECT_HOSTS', async () => {
    upstream.mode = 'foreign-redirect';
    // 127.0.0.2 is allowed, and is loopback too; nothing listens there, so the fetch fails
    // after the redirect was followed, naming the image URL.
    const trusting = await createClient(upstream.baseUrl, 10_000, [
      '127.0.0.2',
    ]);

    const fetching = trusting.fetchImage(size);

    await expect(fetching).rejects.toThrow(
      /^Upstream http:\/\/127\.0\.0\.2:\d+\/id\/\d+\/300\/200\.jpg\?hmac=[\w-]+ failed: ECONNREFUSED$/,
    );
  });

  it('names the URL that failed: the image host, when only it is down', async () => {
    upstream.mode = 'image-host-reset';

    const fetching = client.fetchImage(size);

    await expect(fetching).rejects.toThrow(
      new RegExp(
        `^Upstream ${upstream.imageBaseUrl}/id/\\d+/300/200\\.jpg\\?hmac=[\\w-]+ closed the connection without a reply$`,
      ),
    );
  });

  it("quotes Picsum's text when it refuses a request", async () => {
    const fetching = client.fetchImage({ ...size, width: 6000 });

    await expect(fetching).rejects.toThrow(
      `Upstream answered 400 for ${upstream.baseUrl}/6000/200: "Invalid size"`,
    );
  });

  it('passes a Picsum-ID on only when it is a plain id', async () => {
    upstream.mode = 'bad-id';

    const image = await client.fetchImage(size);

    expect(image.picsumId).toBeUndefined();
    expect(image.contentType).toBe('image/jpeg');
  });

  it('serves the type of the detected format, not the spelling the upstream used', async () => {
    // The fake labels JPEGs image/jpeg; a body is stored with the canonical type either way.
    const image = await client.fetchImage(size);

    expect(image.contentType).toBe('image/jpeg');
    expect(image.body.subarray(0, 3)).toEqual(Buffer.from([0xff, 0xd8, 0xff]));
  });

  it('refuses an unreachable upstream with a 502', async () => {
    const unreachable = await createClient(
      `http://127.0.0.1:${await freePort()}`,
    );

    const fetching = unreachable.fetchImage(size);

    await expect(fetching).rejects.toThrow(BadGatewayException);
    // The URL and the code for the client; the address it resolved to only in the cause, for the log.
    await expect(fetching).rejects.toThrow(
      /^Upstream http:\S+ failed: ECONNREFUSED$/,
    );
    await expect(fetching).rejects.toMatchObject({
      cause: expect.stringMatching(/ECONNREFUSED 127\.0\.0\.1:\d+/) as unknown,
    });
  });
});

describe(`${PicsumClient.name} on a kept-alive connection the upstream closes`, () => {
  const image = completeJpeg('pixels');
  const served: number[] = [];
  let server: Server;

  beforeAll(async () => {
    // Answers the first request of each connection, keeping it open; closes a connection
    // unanswered when a second request comes on it, as a server whose idle timeout has just
    // run out does.
    server = createServer((socket) => {
      let requests = 0;
      socket.on('data', (chunk) => {
        if (!chunk.includes('\r\n\r\n')) {
          return;
        }
        requests += 1;
        served.push(requests);
        if (requests > 1) {
          socket.destroy();
          return;
        }
        socket.write(
          `HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: ${image.length}\r\nConnection: keep-alive\r\n\r\n`,
        );
        socket.write(image);
      });
    });
    await new Promise<void>((resolve) =>
      server.listen(0, '127.0.0.1', resolve),
    );
  });

  afterAll(async () => {
    agents.onApplicationShutdown();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it('sends the request once more on a new connection, and gets the image', async () => {
    const { port } = server.address() as AddressInfo;
    const client = await createClient(`http://127.0.0.1:${port}`);

    await client.fetchImage(VARIANT);
    const second = await client.fetchImage(VARIANT);

    expect(second.body.equals(image)).toBe(true);
    // The first fetch; the second, refused on the reused connection; its retry on a new one.
    expect(served).toEqual([1, 2, 1]);
  });
});

describe(`${PicsumClient.name} with HttpService replaced`, () => {
  const variant = VARIANT;

  type Get = jest.Mock<
    Observable<AxiosResponse<Buffer>>,
    [string, AxiosRequestConfig?]
  >;

  async function clientOver(get: Get): Promise<PicsumClient> {
    const moduleRef = await Test.createTestingModule({
      providers: [
        PicsumClient,
        CacheMetrics,
        { provide: HttpService, useValue: { get } },
        {
          provide: upstreamConfig.KEY,
          useValue: {
            baseUrl: 'http://upstream.test',
            timeoutMs: 1000,
            maxBytes: 1024,
            allowedRedirectHosts: new Set(['upstream.test']),
          },
        },
      ],
    }).compile();
    return moduleRef.get(PicsumClient);
  }

  function redirectTo(location: string): Observable<AxiosResponse<Buffer>> {
    return of({
      status: 302,
      statusText: 'Found',
      headers: { location },
      data: Buffer.alloc(0),
      config: { headers: new AxiosHeaders() },
    });
  }

  it('follows at most 5 redirects, each under the deadline of the whole fetch', async () => {
    const get: Get = jest.fn((url: string) => redirectTo(`${url}/again`));
    const client = await clientOver(get);

    await expect(client.fetchImage(variant)).rejects.toThrow(
      /redirected more than 5 times$/,
    );
    expect(get).toHaveBeenCalledTimes(6);
    const signals = get.mock.calls.map(([, config]) => config?.signal);
    expect(signals[0]).toBeInstanceOf(AbortSignal);
    expect(new Set(signals).size).toBe(1);
  });

  it('asks for the variant’s path on the upstream, then where it redirects', async () => {
    const get: Get = jest
      .fn<Observable<AxiosResponse<Buffer>>, [string, AxiosRequestConfig?]>()
      .mockReturnValueOnce(redirectTo('/id/7/300/200.jpg'))
      .mockReturnValueOnce(
        of({
          status: 200,
          statusText: 'OK',
          headers: { 'content-type': 'image/jpeg', 'picsum-id': '7' },
          data: completeJpeg('pixels'),
          config: { headers: new AxiosHeaders() },
        }),
      );
    const client = await clientOver(get);

    const image = await client.fetchImage(variant);

    expect(get.mock.calls.map(([url]) => url)).toEqual([
      'http://upstream.test/300/200',
      'http://upstream.test/id/7/300/200.jpg',
    ]);
    expect(image).toMatchObject({
      picsumId: '7',
      source: 'http://upstream.test/id/7/300/200.jpg',
    });
  });
});
