import {
  createServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { encode } from 'jpeg-js';

/**
 * How the fake upstream behaves:
 * - `ok`: like picsum.photos, a 302 to `/id/{id}/{w}/{h}.jpg`, then a JPEG
 * - `server-error`: 503 with an HTML body
 * - `html`: 200 `text/html`, like a captive portal or an error page
 * - `mislabeled`: 200 `image/jpeg` whose body is HTML
 * - `truncated`: announces the full Content-Length, sends half, closes the connection
 * - `oversized`: a valid JPEG start followed by `oversizedBytes` bytes, chunked
 * - `hang`: accepts the connection and never answers
 * - `reset`: closes the connection without answering
 */
export type FakePicsumMode =
  | 'ok'
  | 'server-error'
  | 'html'
  | 'mislabeled'
  | 'truncated'
  | 'oversized'
  | 'hang'
  | 'reset';

const IMAGE_PATH = /^\/id\/(\d+)\/(\d+)\/(\d+)\.(jpg|webp)$/;
const SIZE_PATH = /^\/(\d+)(?:\/(\d+))?(?:\.(jpg|webp))?\/?$/;
/** Modernizr's 1x1 lossless WebP: the fake's WebP bodies are real WebP images, if small ones. */
const TINY_WEBP = Buffer.from(
  'UklGRhoAAABXRUJQVlA4TA0AAAAvAAAAEAcQERGIiP4HAA==',
  'base64',
);

/** What Picsum varies an image by, besides its id and size. */
export interface FakeImageOptions {
  format?: 'jpg' | 'webp';
  grayscale?: boolean;
  blur?: number;
}
/** The fake draws the JPEG no larger than this, whatever size was asked for, to stay fast. */
const MAX_DRAWN_SIDE = 64;

/** A local stand-in for picsum.photos, listening on 127.0.0.1 only. */
export class FakePicsum {
  mode: FakePicsumMode = 'ok';
  /** Delay before any answer, in milliseconds. */
  delayMs = 0;
  oversizedBytes = 1024 * 1024;
  /** When set, JPEGs are padded with comment segments to this many bytes, like real photos. */
  jpegBytes = 0;
  /** Requests for `/{w}/{h}`: one per upstream fetch the service makes. */
  fetches = 0;
  /** Requests for the image itself, after the redirect. */
  imageRequests = 0;
  private nextId = 10;
  private readonly images = new Map<string, Buffer>();
  private readonly sockets = new Set<Socket>();
  private readonly server: Server = createServer((request, response) => {
    void this.handle(request, response);
  });

  async start(port = 0): Promise<string> {
    this.server.on('connection', (socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
    await new Promise<void>((resolve) =>
      this.server.listen(port, '127.0.0.1', resolve),
    );
    return this.baseUrl;
  }

  get baseUrl(): string {
    const { port } = this.server.address() as AddressInfo;
    return `http://127.0.0.1:${port}`;
  }

  async stop(): Promise<void> {
    for (const socket of this.sockets) {
      socket.destroy();
    }
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /** Back to healthy behaviour with the counters at zero. */
  reset(): void {
    this.mode = 'ok';
    this.delayMs = 0;
    this.fetches = 0;
    this.imageRequests = 0;
  }

  /** The exact bytes the fake serves for an image id and size (a plain JPEG). */
  jpeg(id: number, width: number, height: number): Buffer {
    return this.image(id, width, height);
  }

  /** The exact bytes the fake serves for an image id, size and options. */
  image(
    id: number,
    width: number,
    height: number,
    { format = 'jpg', grayscale = false, blur = 0 }: FakeImageOptions = {},
  ): Buffer {
    const key = `${id}/${width}/${height}/${format}/${grayscale}/${blur}/${this.jpegBytes}`;
    let image = this.images.get(key);
    if (!image) {
      image =
        format === 'webp'
          ? // The id after the RIFF data keeps bodies apart; decoders ignore trailing bytes.
            Buffer.concat([TINY_WEBP, Buffer.from(`id=${id}`)])
          : padJpeg(
              drawJpeg(
                id,
                Math.min(width, MAX_DRAWN_SIDE),
                Math.min(height, MAX_DRAWN_SIDE),
                grayscale,
                blur,
              ),
              this.jpegBytes,
            );
      this.images.set(key, image);
    }
    return image;
  }

  private async handle(
    request: IncomingMessage,
    response: ServerResponse,
  ): Promise<void> {
    const url = new URL(request.url ?? '/', 'http://fake');
    const path = url.pathname;
    const sizeMatch = SIZE_PATH.exec(path);
    const imageMatch = IMAGE_PATH.exec(path);
    if (sizeMatch) {
      this.fetches += 1;
    } else if (imageMatch) {
      this.imageRequests += 1;
    }
    if (this.mode === 'hang') {
      return;
    }
    if (this.delayMs > 0) {
      await new Promise((resolve) => setTimeout(resolve, this.delayMs));
    }
    if (this.mode === 'reset') {
      request.socket.destroy();
      return;
    }
    if (sizeMatch) {
      this.answerSize(
        response,
        Number(sizeMatch[1]),
        Number(sizeMatch[2] ?? sizeMatch[1]),
        sizeMatch[3] ?? 'jpg',
        url.search,
      );
    } else if (imageMatch) {
      this.answerImage(
        response,
        Number(imageMatch[1]),
        Number(imageMatch[2]),
        Number(imageMatch[3]),
        {
          format: imageMatch[4] as 'jpg' | 'webp',
          grayscale: url.searchParams.has('grayscale'),
          blur: Number(url.searchParams.get('blur') ?? 0),
        },
      );
    } else {
      response
        .writeHead(404, { 'Content-Type': 'text/plain' })
        .end('Not found');
    }
  }

  private answerSize(
    response: ServerResponse,
    width: number,
    height: number,
    format: string,
    query: string,
  ): void {
    switch (this.mode) {
      case 'server-error':
        response
          .writeHead(503, { 'Content-Type': 'text/html' })
          .end('<html><body>Service Unavailable</body></html>');
        return;
      case 'html':
        response
          .writeHead(200, { 'Content-Type': 'text/html' })
          .end('<html><body>Please log in</body></html>');
        return;
      default: {
        const id = this.nextId++;
        response
          .writeHead(302, {
            // Like Picsum: the extension says the format, the query carries the options.
            Location: `/id/${id}/${width}/${height}.${format}${query}`,
            'Cache-Control': 'no-cache, no-store, must-revalidate',
            'Content-Length': '0',
          })
          .end();
      }
    }
  }

  private answerImage(
    response: ServerResponse,
    id: number,
    width: number,
    height: number,
    options: FakeImageOptions,
  ): void {
    const jpeg = this.image(id, width, height, options);
    const headers = {
      'Content-Type': options.format === 'webp' ? 'image/webp' : 'image/jpeg',
      'Cache-Control': 'public, max-age=2592000, immutable',
      'Picsum-ID': String(id),
    };
    switch (this.mode) {
      case 'mislabeled': {
        const html = Buffer.from(
          '<!DOCTYPE html><html><body>Not an image</body></html>',
        );
        response
          .writeHead(200, { ...headers, 'Content-Length': String(html.length) })
          .end(html);
        return;
      }
      case 'truncated':
        response.writeHead(200, {
          ...headers,
          'Content-Length': String(jpeg.length),
        });
        response.write(jpeg.subarray(0, Math.floor(jpeg.length / 2)), () =>
          response.destroy(),
        );
        return;
      case 'oversized':
        response.writeHead(200, headers);
        response.write(jpeg.subarray(0, 3));
        response.end(Buffer.alloc(this.oversizedBytes, 0x42));
        return;
      default:
        response
          .writeHead(200, { ...headers, 'Content-Length': String(jpeg.length) })
          .end(jpeg);
    }
  }
}

/**
 * A real baseline JPEG, one flat colour per id with a gradient, so different ids give different
 * bytes. Grayscale draws equal channels; blur flattens the gradient.
 */
function drawJpeg(
  id: number,
  width: number,
  height: number,
  grayscale: boolean,
  blur: number,
): Buffer {
  const data = Buffer.alloc(width * height * 4);
  const step = 3 / (blur + 1);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const offset = (y * width + x) * 4;
      const red = Math.floor(id * 67 + x * step) % 256;
      const green = Math.floor(id * 131 + y * step) % 256;
      const blue = (id * 29) % 256;
      const gray = Math.round((red + green + blue) / 3);
      data[offset] = grayscale ? gray : red;
      data[offset + 1] = grayscale ? gray : green;
      data[offset + 2] = grayscale ? gray : blue;
      data[offset + 3] = 255;
    }
  }
  return encode({ data, width, height }, 80).data;
}

/** Grows a JPEG to `bytes` with comment (COM) segments after its start marker; decoders skip them. */
function padJpeg(jpeg: Buffer, bytes: number): Buffer {
  const segments: Buffer[] = [];
  let missing = bytes - jpeg.length;
  while (missing >= 4) {
    const payload = Math.min(missing - 4, 65_533);
    const segment = Buffer.alloc(4 + payload, 0x20);
    segment.writeUInt16BE(0xfffe, 0);
    segment.writeUInt16BE(payload + 2, 2);
    segments.push(segment);
    missing -= segment.length;
  }
  return segments.length === 0
    ? jpeg
    : Buffer.concat([jpeg.subarray(0, 2), ...segments, jpeg.subarray(2)]);
}
