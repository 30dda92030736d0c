import { createHash } from 'node:crypto';
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
 * - `ok`: like picsum.photos, a 302 from the API host to an absolute URL on the image host
 *   (`fastly.picsum.photos` there, a second port here) with an `hmac` query, then a JPEG
 * - `server-error`: Picsum's own `500 text/plain "Something went wrong"`
 * - `html`: 200 `text/html`, like a captive portal or an error page
 * - `mislabeled`: 200 `image/jpeg` whose body is HTML
 * - `svg`: 200 `image/svg+xml` with a script, its bytes 4-11 spelling `ftypavif`
 * - `wrong-type`: a real JPEG labelled `image/png`
 * - `truncated`: announces the full Content-Length, sends half, closes the connection
 * - `truncated-close`: no Content-Length, sends half, then closes cleanly (a close-delimited body)
 * - `oversized`: a valid JPEG start followed by `oversizedBytes` bytes, chunked
 * - `foreign-redirect`: redirects to a host that is not the upstream's (127.0.0.2)
 * - `bad-id`: a `Picsum-ID` header that is not a plain id
 * - `image-host-reset`: the API host answers, the image host closes connections unanswered
 * - `hang`: accepts the connection and never answers
 * - `reset`: closes the connection without answering
 */
export type FakePicsumMode =
  | 'ok'
  | 'server-error'
  | 'html'
  | 'mislabeled'
  | 'svg'
  | 'wrong-type'
  | 'truncated'
  | 'truncated-close'
  | 'oversized'
  | 'foreign-redirect'
  | 'bad-id'
  | 'image-host-reset'
  | 'hang'
  | 'reset';

/** Picsum's limits, and the text of its replies when they are broken. */
const MAX_SIDE = 5000;
const MAX_BLUR = 10;
const IMAGE_PATH = /^\/id\/(\d+)\/(\d+)\/(\d+)\.(jpg|webp)$/;
const SIZE_PATH = /^\/(\d+)(?:\/(\d+))?(?:\.(jpg|webp))?\/?$/;
/** Modernizr's 1x1 lossless WebP: the fake's WebP bodies are real WebP images, if small ones. */
const TINY_WEBP = Buffer.from(
  'UklGRhoAAABXRUJQVlA4TA0AAAAvAAAAEAcQERGIiP4HAA==',
  'base64',
);
/** The stored XSS an earlier signature check let through. */
export const SVG_WITH_SCRIPT = Buffer.from(
  '<x  ftypavif="1" xmlns="http://www.w3.org/1999/xhtml"><script>window.pwned=location.origin</script></x>',
);
/** Drawn at the requested size up to this; larger sizes get a JPEG this big, to stay fast. */
const MAX_DRAWN_SIDE = 1200;

/** What Picsum varies an image by, besides its id and size. */
export interface FakeImageOptions {
  format?: 'jpg' | 'webp';
  grayscale?: boolean;
  blur?: number;
}

/**
 * JPEGs drawn once per size and options, shared by every fake in the process: drawing a
 * 1200x1200 JPEG takes a while, and the id only goes into a comment segment.
 */
const drawnJpegs = new Map<string, Buffer>();

/**
 * A local stand-in for picsum.photos, listening on 127.0.0.1 unless told otherwise: the API host (`baseUrl`)
 * and, on a second port, the image host (`imageBaseUrl`) its redirects point to.
 */
export class FakePicsum {
  mode: FakePicsumMode = 'ok';
  /** Delay before any answer, in milliseconds. */
  delayMs = 0;
  /**
   * Extra delay of the image host per megapixel, times (1 + blur), as Picsum's renderer takes
   * longer for larger and blurrier variants. 0 turns it off.
   */
  renderMsPerMegapixel = 0;
  oversizedBytes = 1024 * 1024;
  /** The text/plain body of a `server-error` reply. */
  errorText = 'Something went wrong';
  /** When set, JPEGs are padded with comment segments to this many bytes, like real photos. */
  jpegBytes = 0;
  /** Requests for `/{w}/{h}`: one per upstream fetch the service makes. */
  fetches = 0;
  /** Requests for the image itself, after the redirect. */
  imageRequests = 0;
  /** TCP connections accepted by either host. */
  connections = 0;
  /**
   * When set, the image host serves these bytes as every JPEG, whatever the size asked for: the
   * same photo for every variant, as the memory benchmarks measure (a 600-byte one, a 222 KB one).
   */
  everyJpeg: Buffer | undefined;
  private nextId = 10;
  private readonly images = new Map<string, Buffer>();
  private readonly sockets = new Set<Socket>();
  private readonly apiServer: Server = createServer((request, response) => {
    void this.handle(request, response, 'api');
  });
  private readonly imageServer: Server = createServer((request, response) => {
    void this.handle(request, response, 'image');
  });

  /**
   * Starts both hosts; `port` is the API host's (0: any free one). `host` is the address both
   * listen on: 127.0.0.1, or the test cluster's bridge address for pods to reach. Resolves
   * with `baseUrl`.
   */
  async start(port = 0, host = '127.0.0.1'): Promise<string> {
    for (const server of [this.apiServer, this.imageServer]) {
      server.on('connection', (socket) => {
        this.connections += 1;
        this.sockets.add(socket);
        socket.on('close', () => this.sockets.delete(socket));
      });
    }
    await listen(this.apiServer, port, host);
    await listen(this.imageServer, 0, host);
    return this.baseUrl;
  }

  get baseUrl(): string {
    return urlOf(this.apiServer);
  }

  /** The image host, where the API host's redirects lead. */
  get imageBaseUrl(): string {
    return urlOf(this.imageServer);
  }

  async stop(): Promise<void> {
    for (const socket of this.sockets) {
      socket.destroy();
    }
    await Promise.all(
      [this.apiServer, this.imageServer].map(
        (server) =>
          new Promise<void>((resolve) => server.close(() => resolve())),
      ),
    );
  }

  /** Back to healthy behaviour with the counters at zero. */
  reset(): void {
    this.mode = 'ok';
    this.delayMs = 0;
    this.renderMsPerMegapixel = 0;
    this.errorText = 'Something went wrong';
    this.fetches = 0;
    this.imageRequests = 0;
    this.connections = 0;
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
    if (this.everyJpeg !== undefined && format === 'jpg') {
      return this.everyJpeg;
    }
    const key = `${id}/${width}/${height}/${format}/${grayscale}/${blur}/${this.jpegBytes}`;
    let image = this.images.get(key);
    if (!image) {
      image =
        format === 'webp'
          ? webpWithId(id)
          : padJpeg(
              withComment(
                drawnJpeg(
                  Math.min(width, MAX_DRAWN_SIDE),
                  Math.min(height, MAX_DRAWN_SIDE),
                  grayscale,
                  blur,
                ),
                `picsum id ${id}`,
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
    host: 'api' | 'image',
  ): Promise<void> {
    const url = new URL(request.url ?? '/', 'http://fake');
    const sizeMatch = host === 'api' ? SIZE_PATH.exec(url.pathname) : null;
    const imageMatch = host === 'image' ? IMAGE_PATH.exec(url.pathname) : null;
    if (sizeMatch) {
      this.fetches += 1;
    } else if (imageMatch) {
      this.imageRequests += 1;
    }
    if (this.mode === 'hang') {
      return;
    }
    if (this.delayMs > 0) {
      await sleep(this.delayMs);
    }
    if (
      this.mode === 'reset' ||
      (this.mode === 'image-host-reset' && host === 'image')
    ) {
      request.socket.destroy();
      return;
    }
    if (request.method !== 'GET') {
      // Picsum answers HEAD (and anything but GET) with 405.
      plain(response, 405, 'Method Not Allowed');
      return;
    }
    if (sizeMatch) {
      this.answerSize(
        response,
        Number(sizeMatch[1]),
        Number(sizeMatch[2] ?? sizeMatch[1]),
        sizeMatch[3] ?? 'jpg',
        url.searchParams,
      );
    } else if (imageMatch) {
      const blur = blurOf(url.searchParams);
      const [width, height] = [Number(imageMatch[2]), Number(imageMatch[3])];
      if (this.renderMsPerMegapixel > 0) {
        await sleep(
          ((this.renderMsPerMegapixel * width * height) / 1e6) * (1 + blur),
        );
      }
      this.answerImage(response, Number(imageMatch[1]), width, height, {
        format: imageMatch[4] as 'jpg' | 'webp',
        grayscale: url.searchParams.has('grayscale'),
        blur,
      });
    } else {
      plain(response, 404, 'Not Found');
    }
  }

  private answerSize(
    response: ServerResponse,
    width: number,
    height: number,
    format: string,
    query: URLSearchParams,
  ): void {
    if (width < 1 || height < 1 || width > MAX_SIDE || height > MAX_SIDE) {
      plain(response, 400, 'Invalid size');
      return;
    }
    const blur = blurOf(query);
    if (Number.isNaN(blur) || blur < 0 || blur > MAX_BLUR) {
      plain(response, 400, 'Invalid blur amount');
      return;
    }
    switch (this.mode) {
      case 'server-error':
        plain(response, 500, this.errorText);
        return;
      case 'html':
        response
          .writeHead(200, { 'Content-Type': 'text/html' })
          .end('<html><body>Please log in</body></html>');
        return;
      default: {
        const id = this.nextId++;
        const path = `/id/${id}/${width}/${height}.${format}`;
        const options = [
          ...(query.has('grayscale') ? ['grayscale'] : []),
          ...(blur > 0 ? [`blur=${blur}`] : []),
        ];
        // Like Picsum: the extension says the format, the query carries the options and an hmac.
        const hmac = createHash('sha256')
          .update(`${path}?${options.join('&')}`)
          .digest('base64url')
          .slice(0, 43);
        const imageBase =
          this.mode === 'foreign-redirect'
            ? this.imageBaseUrl.replace('127.0.0.1', '127.0.0.2')
            : this.imageBaseUrl;
        response
          .writeHead(302, {
            Location: `${imageBase}${path}?${[...options, `hmac=${hmac}`].join('&')}`,
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
    const image = this.image(id, width, height, options);
    const headers = {
      'Content-Type': options.format === 'webp' ? 'image/webp' : 'image/jpeg',
      'Cache-Control': 'public, max-age=2592000, immutable',
      'Picsum-ID': this.mode === 'bad-id' ? `${id}<script>` : String(id),
    };
    switch (this.mode) {
      case 'mislabeled':
        send(
          response,
          headers,
          Buffer.from('<!DOCTYPE html><html><body>Not an image</body></html>'),
        );
        return;
      case 'svg':
        send(
          response,
          { ...headers, 'Content-Type': 'image/svg+xml' },
          SVG_WITH_SCRIPT,
        );
        return;
      case 'wrong-type':
        send(response, { ...headers, 'Content-Type': 'image/png' }, image);
        return;
      case 'truncated':
        response.writeHead(200, {
          ...headers,
          'Content-Length': String(image.length),
        });
        response.write(image.subarray(0, Math.floor(image.length / 2)), () =>
          response.destroy(),
        );
        return;
      case 'truncated-close': {
        // Written on the socket itself: Node would otherwise chunk a body without a length.
        const head = [
          'HTTP/1.1 200 OK',
          ...Object.entries(headers).map(
            ([name, value]) => `${name}: ${value}`,
          ),
          'Connection: close',
          '',
          '',
        ].join('\r\n');
        response.socket?.end(
          Buffer.concat([
            Buffer.from(head, 'latin1'),
            image.subarray(0, Math.floor(image.length / 2)),
          ]),
        );
        return;
      }
      case 'oversized':
        response.writeHead(200, headers);
        response.write(image.subarray(0, 3));
        response.end(Buffer.alloc(this.oversizedBytes, 0x42));
        return;
      default:
        send(response, headers, image);
    }
  }
}

function listen(server: Server, port: number, host: string): Promise<void> {
  return new Promise((resolve) => server.listen(port, host, resolve));
}

function urlOf(server: Server): string {
  const { address, port } = server.address() as AddressInfo;
  return `http://${address}:${port}`;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Picsum reads a bare `?blur` as blur 5. */
function blurOf(query: URLSearchParams): number {
  const blur = query.get('blur');
  if (blur === null) {
    return 0;
  }
  return blur === '' ? 5 : Number(blur);
}

function plain(response: ServerResponse, status: number, text: string): void {
  send(
    response,
    { 'Content-Type': 'text/plain; charset=utf-8' },
    Buffer.from(text),
    status,
  );
}

function send(
  response: ServerResponse,
  headers: Record<string, string>,
  body: Buffer,
  status = 200,
): void {
  response
    .writeHead(status, { ...headers, 'Content-Length': String(body.length) })
    .end(body);
}

/** A real 1x1 WebP with the id in a chunk of its own inside the RIFF container, so ids differ. */
function webpWithId(id: number): Buffer {
  let payload = Buffer.from(`id=${id}`);
  if (payload.length % 2 === 1) {
    payload = Buffer.concat([payload, Buffer.alloc(1)]); // RIFF chunks are padded to even sizes
  }
  const chunk = Buffer.alloc(8 + payload.length);
  chunk.write('IDNT', 0, 'latin1');
  chunk.writeUInt32LE(payload.length, 4);
  payload.copy(chunk, 8);
  const webp = Buffer.concat([TINY_WEBP, chunk]);
  webp.writeUInt32LE(webp.length - 8, 4);
  return webp;
}

/** One row of RGBA pixels of the fake's gradient: red across, the row's green, blue fixed. */
function drawnRow(
  width: number,
  step: number,
  green: number,
  grayscale: boolean,
): Uint8Array {
  const row = new Uint8Array(width * 4);
  const blue = 128;
  for (let x = 0; x < width; x++) {
    const red = Math.floor(x * step) % 256;
    const gray = Math.round((red + green + blue) / 3);
    row[x * 4] = grayscale ? gray : red;
    row[x * 4 + 1] = grayscale ? gray : green;
    row[x * 4 + 2] = grayscale ? gray : blue;
    row[x * 4 + 3] = 255;
  }
  return row;
}

/**
 * A real baseline JPEG of the requested size: a gradient, equal channels for grayscale, and a
 * flatter gradient the more it is blurred.
 */
function drawnJpeg(
  width: number,
  height: number,
  grayscale: boolean,
  blur: number,
): Buffer {
  const key = `${width}/${height}/${grayscale}/${blur}`;
  const cached = drawnJpegs.get(key);
  if (cached) {
    return cached;
  }
  // Under Jest, a loop over every pixel runs far slower than under plain Node (2 s for
  // 1200 x 1200), so each distinct row (at most 256: green depends on y alone) is drawn once
  // and copied.
  const data = new Uint8Array(width * height * 4);
  const step = 255 / Math.max(width, height) / (blur + 1);
  const rows = new Map<number, Uint8Array>();
  for (let y = 0; y < height; y++) {
    const green = Math.floor(y * step) % 256;
    let row = rows.get(green);
    if (!row) {
      row = drawnRow(width, step, green, grayscale);
      rows.set(green, row);
    }
    data.set(row, y * width * 4);
  }
  const jpeg = Buffer.from(encode({ data, width, height }, 50).data);
  drawnJpegs.set(key, jpeg);
  return jpeg;
}

/** Puts a comment (COM) segment right after the start marker; decoders skip it. */
function withComment(jpeg: Buffer, text: string): Buffer {
  const payload = Buffer.from(text, 'latin1');
  const segment = Buffer.alloc(4);
  segment.writeUInt16BE(0xfffe, 0);
  segment.writeUInt16BE(payload.length + 2, 2);
  return Buffer.concat([
    jpeg.subarray(0, 2),
    segment,
    payload,
    jpeg.subarray(2),
  ]);
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

/** A small real JPEG grown to exactly `bytes` (at least its own few hundred), for `everyJpeg`. */
export function jpegOfBytes(bytes: number): Buffer {
  const jpeg = padJpeg(drawnJpeg(1, 1, false, 0), bytes);
  if (jpeg.length !== bytes) {
    throw new Error(
      `A JPEG of ${bytes} bytes cannot be made: the smallest is ${jpeg.length}`,
    );
  }
  return jpeg;
}
