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

const IMAGE_PATH = /^\/id\/(\d+)\/(\d+)\/(\d+)\.jpg$/;
const SIZE_PATH = /^\/(\d+)(?:\/(\d+))?\/?$/;
/** The fake draws the JPEG no larger than this, whatever size was asked for, to stay fast. */
const MAX_DRAWN_SIDE = 64;

/** A local stand-in for picsum.photos, listening on 127.0.0.1 only. */
export class FakePicsum {
  mode: FakePicsumMode = 'ok';
  /** Delay before any answer, in milliseconds. */
  delayMs = 0;
  oversizedBytes = 1024 * 1024;
  /** Requests for `/{w}/{h}`: one per upstream fetch the service makes. */
  fetches = 0;
  /** Requests for the image itself, after the redirect. */
  imageRequests = 0;
  private nextId = 10;
  private readonly jpegs = new Map<string, Buffer>();
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

  /** The exact bytes the fake serves for an image id and size. */
  jpeg(id: number, width: number, height: number): Buffer {
    const key = `${id}/${width}/${height}`;
    let jpeg = this.jpegs.get(key);
    if (!jpeg) {
      jpeg = drawJpeg(
        id,
        Math.min(width, MAX_DRAWN_SIDE),
        Math.min(height, MAX_DRAWN_SIDE),
      );
      this.jpegs.set(key, jpeg);
    }
    return jpeg;
  }

  private async handle(
    request: IncomingMessage,
    response: ServerResponse,
  ): Promise<void> {
    const path = new URL(request.url ?? '/', 'http://fake').pathname;
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
      );
    } else if (imageMatch) {
      this.answerImage(
        response,
        Number(imageMatch[1]),
        Number(imageMatch[2]),
        Number(imageMatch[3]),
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
            Location: `/id/${id}/${width}/${height}.jpg`,
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
  ): void {
    const jpeg = this.jpeg(id, width, height);
    const headers = {
      'Content-Type': 'image/jpeg',
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

/** A real baseline JPEG, one flat colour per id with a gradient, so different ids give different bytes. */
function drawJpeg(id: number, width: number, height: number): Buffer {
  const data = Buffer.alloc(width * height * 4);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const offset = (y * width + x) * 4;
      data[offset] = (id * 67 + x * 3) % 256;
      data[offset + 1] = (id * 131 + y * 3) % 256;
      data[offset + 2] = (id * 29) % 256;
      data[offset + 3] = 255;
    }
  }
  return encode({ data, width, height }, 80).data;
}
