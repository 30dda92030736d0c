import { HttpException, Inject, Injectable, Logger } from '@nestjs/common';
import type { ConfigType } from '@nestjs/config';
import { request } from 'undici';
import type { IncomingHttpHeaders } from 'undici/types/header';
import { errorMessage } from '../../common/error-message';
import { printableText } from '../../common/printable-text';
import { upstreamConfig } from '../../config/upstream.config';
import {
  CONTENT_TYPES,
  declaredImageFormat,
  detectImageFormat,
} from './image-signature';
import { type ImageVariant, variantKey } from '../image-variant';
import { CacheMetrics } from '../../metrics/cache-metrics';
import { isValidPicsumId } from './picsum-id';
import { upstreamOutcomeOf } from './upstream-outcome';
import { UpstreamFetchException } from './upstream-fetch.exception';
import { UpstreamTimeoutException } from './upstream-timeout.exception';

const MAX_REDIRECTS = 5;
/** What of an upstream's text error reply is quoted in the error: enough for Picsum's `Invalid size`. */
const MAX_QUOTED_ERROR_CHARS = 200;

/** An image as the upstream sent it, already checked to be a complete image. */
/** The upstream as the last fetches found it: `failingSince` (epoch ms) is null while the last one worked. */
export interface UpstreamState {
  readonly failingSince: number | null;
  readonly lastError: string | null;
}

export interface UpstreamImage {
  readonly body: Buffer;
  /** Derived from the detected format, never copied from the upstream's header. */
  readonly contentType: string;
  readonly picsumId?: string;
  /** The URL the body came from, after redirects. */
  readonly source: string;
}

/** One reply of the upstream, its body read whole (within `UPSTREAM_MAX_BYTES`). */
interface UpstreamResponse {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: Buffer;
}

/** The codes of undici's errors that mean the upstream took too long. */
const TIMEOUT_CODES = new Set([
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
]);

/**
 * Talks to Lorem Picsum or any server with the same API: `GET /{width}/{height}` answers with a
 * redirect to `/id/{id}/{width}/{height}.jpg`. Every failure becomes a 502, or a 504 when the
 * whole fetch, redirects included, takes longer than `UPSTREAM_TIMEOUT_MS`.
 *
 * The upstream is not trusted: redirects are followed by hand, only to http(s) URLs on the
 * upstream's own host or one in `UPSTREAM_ALLOWED_REDIRECT_HOSTS`; a body is accepted only when
 * it is a complete image of the format its Content-Type declares; and the messages sent to
 * clients name URLs, never the addresses they resolved to (those go to the log, as the cause).
 */
@Injectable()
export class PicsumClient {
  private readonly logger = new Logger(PicsumClient.name);
  private lastState: UpstreamState = { failingSince: null, lastError: null };

  constructor(
    @Inject(upstreamConfig.KEY)
    private readonly config: ConfigType<typeof upstreamConfig>,
    private readonly metrics: CacheMetrics,
  ) {}

  /**
   * Fetches one image of `variant`. Each fetch is counted and timed in the metrics by outcome,
   * and logged on one line: variant, URL, outcome, bytes and duration, and the id of the request
   * that started it.
   */
  async fetchImage(
    variant: ImageVariant,
    requestId?: string,
  ): Promise<UpstreamImage> {
    const startedAt = performance.now();
    const key = variantKey(variant);
    let url = `${this.config.baseUrl}${upstreamPath(variant)}`;
    try {
      const image = await this.follow(url, (next) => (url = next));
      const ms = performance.now() - startedAt;
      this.metrics.upstreamFetched('success', ms / 1000);
      this.lastState = { failingSince: null, lastError: null };
      this.logger.log({
        requestId,
        message: `Upstream fetch of ${key} from ${image.source}: success, ${image.body.length} bytes of ${image.contentType} in ${Math.round(ms)} ms`,
      });
      return image;
    } catch (error) {
      const ms = performance.now() - startedAt;
      const outcome = upstreamOutcomeOf(error);
      this.metrics.upstreamFetched(outcome, ms / 1000);
      this.lastState = {
        failingSince: this.lastState.failingSince ?? Date.now(),
        lastError: printableText(`${key}: ${errorMessage(error)}`),
      };
      // The cause (e.g. `connect ECONNREFUSED 10.0.0.7:443`) is kept out of replies, not out of the log.
      const cause =
        error instanceof HttpException && error.cause !== undefined
          ? `; ${errorMessage(error.cause)}`
          : '';
      this.logger.warn({
        requestId,
        message: `Upstream fetch of ${key} from ${url}: ${outcome} in ${Math.round(ms)} ms (${errorMessage(error)}${cause})`,
      });
      throw error;
    }
  }

  /** Whether the last fetch failed, since when the fetches fail, and why the last one did. */
  get state(): UpstreamState {
    return this.lastState;
  }

  /** Asks the upstream for `firstUrl`, following its redirects; `visiting` is told each next URL. */
  private async follow(
    firstUrl: string,
    visiting: (url: string) => void,
  ): Promise<UpstreamImage> {
    // One deadline for the whole exchange; undici's own timeouts only bound each wait on the socket.
    const deadline = AbortSignal.timeout(this.config.timeoutMs);
    let url = firstUrl;
    for (let redirects = 0; ; redirects++) {
      const response = await this.get(url, deadline);
      if (!isRedirect(response.status)) {
        return this.validate(url, response);
      }
      if (redirects === MAX_REDIRECTS) {
        throw new UpstreamFetchException(
          'redirect_refused',
          `Upstream ${url} redirected more than ${MAX_REDIRECTS} times`,
        );
      }
      url = this.redirectTarget(url, response);
      visiting(url);
    }
  }

  /**
   * One GET through undici (Node's own HTTP client, and its cheapest way to make a request):
   * no redirect followed, nothing decompressed, the body read only up to `UPSTREAM_MAX_BYTES`.
   */
  private async get(
    url: string,
    deadline: AbortSignal,
  ): Promise<UpstreamResponse> {
    try {
      const response = await request(url, {
        method: 'GET',
        signal: deadline,
        // The deadline bounds the whole fetch; these bound each wait on the socket.
        headersTimeout: this.config.timeoutMs,
        bodyTimeout: this.config.timeoutMs,
        // The checks below must see the exact bytes that will be stored and served.
        headers: { accept: 'image/*', 'accept-encoding': 'identity' },
      });
      const announced = Number(response.headers['content-length']);
      if (announced > this.config.maxBytes) {
        response.body.destroy();
        throw this.tooLarge(url);
      }
      return {
        status: response.statusCode,
        headers: response.headers,
        body: await this.readBody(url, response.body, deadline),
      };
    } catch (error) {
      throw error instanceof HttpException
        ? error
        : this.describeFailure(url, error, deadline);
    }
  }

  /** The whole body, or the reason it could not be had: too large, cut short, too slow. */
  private async readBody(
    url: string,
    body: AsyncIterable<Buffer> & { destroy(): void },
    deadline: AbortSignal,
  ): Promise<Buffer> {
    const chunks: Buffer[] = [];
    let bytes = 0;
    try {
      for await (const chunk of body) {
        bytes += chunk.length;
        if (bytes > this.config.maxBytes) {
          body.destroy();
          throw this.tooLarge(url);
        }
        chunks.push(chunk);
      }
    } catch (error) {
      if (error instanceof HttpException) {
        throw error;
      }
      const failure = this.describeFailure(url, error, deadline);
      if (failure instanceof UpstreamTimeoutException) {
        throw failure;
      }
      throw new UpstreamFetchException(
        'network_error',
        `Upstream ${url} closed the connection before the body was complete`,
        errorMessage(error),
      );
    }
    return Buffer.concat(chunks, bytes);
  }

  /** The absolute URL a redirect leads to, if it is one we may follow. */
  private redirectTarget(from: string, response: UpstreamResponse): string {
    const location = headerValue(response, 'location');
    if (location === undefined) {
      throw new UpstreamFetchException(
        'invalid',
        `Upstream ${from} answered ${response.status} without a Location`,
      );
    }
    let target: URL;
    try {
      target = new URL(location, from);
    } catch {
      throw new UpstreamFetchException(
        'invalid',
        `Upstream ${from} redirected to an invalid URL ${JSON.stringify(location)}`,
      );
    }
    if (target.protocol !== 'http:' && target.protocol !== 'https:') {
      throw new UpstreamFetchException(
        'redirect_refused',
        `Upstream ${from} redirected to a ${target.protocol} URL; only http and https are followed`,
      );
    }
    if (!this.config.allowedRedirectHosts.has(target.hostname)) {
      throw new UpstreamFetchException(
        'redirect_refused',
        `Upstream ${from} redirected to host ${target.hostname}, which is not the upstream's host or in UPSTREAM_ALLOWED_REDIRECT_HOSTS (${[...this.config.allowedRedirectHosts].join(', ')}); not followed`,
      );
    }
    return target.href;
  }

  private describeFailure(
    url: string,
    error: unknown,
    deadline: AbortSignal,
  ): HttpException {
    // The cause (with the resolved address, e.g. `connect ECONNREFUSED 10.0.0.7:443`) is for
    // the log only; clients see the URL and the error code. Only its message is kept: the
    // error is remembered for UPSTREAM_RETRY_AFTER_SECONDS.
    const cause = errorMessage(error);
    const code = (error as { code?: unknown } | undefined)?.code;
    if (
      deadline.aborted ||
      (typeof code === 'string' && TIMEOUT_CODES.has(code))
    ) {
      return new UpstreamTimeoutException(
        `Upstream ${url} did not answer within UPSTREAM_TIMEOUT_MS (${this.config.timeoutMs} ms)`,
        cause,
      );
    }
    if (code === 'UND_ERR_SOCKET') {
      // undici's name for a connection the upstream closed before it sent a reply.
      return new UpstreamFetchException(
        'network_error',
        `Upstream ${url} closed the connection without a reply`,
        cause,
      );
    }
    return new UpstreamFetchException(
      'network_error',
      `Upstream ${url} failed: ${typeof code === 'string' ? code : 'network error'}`,
      cause,
    );
  }

  private validate(source: string, response: UpstreamResponse): UpstreamImage {
    const declared = headerValue(response, 'content-type') ?? '';
    const body = response.body;
    if (response.status < 200 || response.status > 299) {
      throw new UpstreamFetchException(
        'http_error',
        `Upstream answered ${response.status} for ${source}${quotedText(declared, body)}`,
        undefined,
        response.status,
      );
    }
    const declaredFormat = declaredImageFormat(declared);
    if (declaredFormat === undefined) {
      throw new UpstreamFetchException(
        'invalid',
        `Upstream answered ${source} with Content-Type ${JSON.stringify(declared)}; only ${Object.values(CONTENT_TYPES).join(', ')} are accepted`,
      );
    }
    const announced = headerValue(response, 'content-length');
    if (announced !== undefined && Number(announced) !== body.length) {
      throw new UpstreamFetchException(
        'invalid',
        `Upstream body from ${source} is truncated: Content-Length ${announced}, received ${body.length} bytes`,
      );
    }
    if (body.length > this.config.maxBytes) {
      throw this.tooLarge(source);
    }
    const format = detectImageFormat(body);
    if (format === undefined) {
      throw new UpstreamFetchException(
        'invalid',
        `Upstream body from ${source} (${body.length} bytes) is not a complete JPEG, PNG, WebP, GIF or AVIF image although labelled ${declared}`,
      );
    }
    if (format !== declaredFormat) {
      throw new UpstreamFetchException(
        'invalid',
        `Upstream body from ${source} is ${CONTENT_TYPES[format]} although labelled ${declared}; not stored`,
      );
    }
    const picsumId = headerValue(response, 'picsum-id');
    const validId = picsumId !== undefined && isValidPicsumId(picsumId);
    if (picsumId !== undefined && !validId) {
      this.logger.warn(
        `Ignoring the Picsum-ID ${JSON.stringify(picsumId.slice(0, 64))} from ${source}: not 1-32 characters of A-Z, a-z, 0-9, _ and -`,
      );
    }
    return {
      body,
      contentType: CONTENT_TYPES[format],
      source,
      ...(validId ? { picsumId } : {}),
    };
  }

  private tooLarge(url: string): HttpException {
    return new UpstreamFetchException(
      'too_large',
      `Upstream body from ${url} is larger than UPSTREAM_MAX_BYTES (${this.config.maxBytes} bytes); not stored`,
    );
  }
}

function isRedirect(status: number): boolean {
  return [301, 302, 303, 307, 308].includes(status);
}

function headerValue(
  response: UpstreamResponse,
  name: string,
): string | undefined {
  const value: unknown = response.headers[name];
  return typeof value === 'string' && value !== '' ? value : undefined;
}

/**
 * `: "Invalid size"` for a `text/plain` error reply (Picsum explains its 400s that way), its
 * first 200 characters with control and bidi characters replaced; nothing for any other reply.
 */
function quotedText(contentType: string, body: Buffer): string {
  if (!/^text\/plain\b/i.test(contentType) || body.length === 0) {
    return '';
  }
  const text = printableText(
    body
      .toString('utf8', 0, MAX_QUOTED_ERROR_CHARS * 4)
      .slice(0, MAX_QUOTED_ERROR_CHARS),
  );
  return text === '' ? '' : `: ${JSON.stringify(text)}`;
}

/**
 * Picsum's URL for a variant: `/{width}/{height}`, `.webp` for WebP (JPEG needs no extension),
 * `grayscale` and `blur` as query parameters.
 */
export function upstreamPath(variant: ImageVariant): string {
  const extension = variant.format === 'webp' ? '.webp' : '';
  const query = [
    ...(variant.grayscale ? ['grayscale'] : []),
    ...(variant.blur > 0 ? [`blur=${variant.blur}`] : []),
  ];
  return `/${variant.width}/${variant.height}${extension}${query.length > 0 ? `?${query.join('&')}` : ''}`;
}
