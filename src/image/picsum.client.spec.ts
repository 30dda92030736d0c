import { HttpModule } from '@nestjs/axios';
import { BadGatewayException, GatewayTimeoutException } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { FakePicsum } from '../../test/fake-picsum/fake-picsum.server';
import { freePort } from '../../test/support/free-port';
import { upstreamConfig } from '../config/upstream.config';
import type { ImageVariant } from './image-variant';
import { PicsumClient, upstreamPath } from './picsum.client';

/** The deadline of the timeout tests: short, so they run fast. */
const SHORT_TIMEOUT_MS = 300;

async function createClient(
  baseUrl: string,
  // Generous by default, so that a slow shared machine never turns another failure into a 504.
  timeoutMs = 10_000,
): Promise<PicsumClient> {
  const moduleRef = await Test.createTestingModule({
    imports: [HttpModule],
    providers: [
      PicsumClient,
      {
        provide: upstreamConfig.KEY,
        useValue: {
          baseUrl,
          imageWidth: 1200,
          imageHeight: 1200,
          timeoutMs,
          maxBytes: 64 * 1024,
          retryAfterSeconds: 10,
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
  afterAll(() => upstream.stop());

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
    expect(image.source).toBe(
      `${upstream.baseUrl}/id/${image.picsumId}/300/200.webp?grayscale&blur=2`,
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
    expect(image.picsumId).toBeDefined();
    expect(image.source).toBe(
      `${upstream.baseUrl}/id/${image.picsumId}/300/200.jpg`,
    );
    expect(
      image.body.equals(upstream.jpeg(Number(image.picsumId), 300, 200)),
    ).toBe(true);
    expect(upstream.fetches).toBe(1);
    expect(upstream.imageRequests).toBe(1);
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
    ['server-error', 'Upstream answered 503'],
    ['html', 'Content-Type "text/html", not an image'],
    ['mislabeled', 'is not a JPEG, PNG, WebP, GIF or AVIF image'],
    ['truncated', 'closed the connection before the body was complete'],
    ['oversized', 'larger than UPSTREAM_MAX_BYTES (65536 bytes)'],
    ['reset', 'ECONNRESET'],
  ] as const)(
    'refuses a %s reply with a 502 that names the cause',
    async (mode, message) => {
      upstream.mode = mode;

      const fetching = client.fetchImage(size);

      await expect(fetching).rejects.toThrow(BadGatewayException);
      await expect(fetching).rejects.toThrow(message);
    },
  );

  it('refuses an unreachable upstream with a 502', async () => {
    const unreachable = await createClient(
      `http://127.0.0.1:${await freePort()}`,
    );

    const fetching = unreachable.fetchImage(size);

    await expect(fetching).rejects.toThrow(BadGatewayException);
    await expect(fetching).rejects.toThrow(/ECONNREFUSED/);
  });
});
