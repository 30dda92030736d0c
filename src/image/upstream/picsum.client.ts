import { HttpService } from '@nestjs/axios';
import { HttpException, Inject, Injectable, Logger } from '@nestjs/common';
import type { ConfigType } from '@nestjs/config';
import { isAxiosError } from 'axios';
import { firstValueFrom } from 'rxjs';
import { errorMessage } from '../../common/error-message';
import { printableText } from '../../common/printable-text';
import { upstreamConfig } from '../../config/upstream.config';
import { CacheMetrics } from '../../metrics/cache-metrics';
import { type ImageVariant, variantKey } from '../image-variant';
import { describeFailure } from './upstream-failure';
import { UpstreamFetchException } from './upstream-fetch.exception';
import { upstreamOutcomeOf } from './upstream-outcome';
import {
  imageFromReply,
  isRedirect,
  redirectTarget,
  type UpstreamImage,
  type UpstreamReply,
} from './upstream-reply';

const MAX_REDIRECTS = 5;

/** The upstream as the last fetches found it: `failingSince` (epoch ms) is null while the last one worked. */
export interface UpstreamState {
  readonly failingSince: number | null;
  readonly lastError: string | null;
}

/**
 * Talks to Lorem Picsum or any server with the same API: `GET /{width}/{height}` answers with a
 * redirect to `/id/{id}/{width}/{height}.jpg`. Every failure becomes a 502, or a 504 when the
 * whole fetch, redirects included, takes longer than `UPSTREAM_TIMEOUT_MS`.
 *
 * Requests go through `HttpService` of `@nestjs/axios`, configured by `upstreamHttpOptions`.
 * The upstream is not trusted: redirects are followed by hand, at most 5, only to http(s) URLs
 * on the upstream's own host or one in `UPSTREAM_ALLOWED_REDIRECT_HOSTS`; a body is accepted
 * only when it is a complete image of the format its Content-Type declares (`upstream-reply.ts`);
 * and the messages sent to clients name URLs, never the addresses they resolved to (those go
 * to the log, as the cause).
 */
@Injectable()
export class PicsumClient {
  private readonly logger = new Logger(PicsumClient.name);
  private lastState: UpstreamState = { failingSince: null, lastError: null };

  constructor(
    @Inject(upstreamConfig.KEY)
    private readonly config: ConfigType<typeof upstreamConfig>,
    private readonly metrics: CacheMetrics,
    private readonly http: HttpService,
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
    // One deadline for the whole exchange; the client's own timeout only bounds each hop.
    const deadline = AbortSignal.timeout(this.config.timeoutMs);
    let url = firstUrl;
    for (let redirects = 0; ; redirects++) {
      const reply = await this.get(url, deadline);
      if (!isRedirect(reply.status)) {
        const { image, refusedPicsumId } = imageFromReply(
          url,
          reply,
          this.config.maxBytes,
        );
        if (refusedPicsumId !== undefined) {
          this.logger.warn(
            `Ignoring the Picsum-ID ${JSON.stringify(refusedPicsumId.slice(0, 64))} from ${url}: not 1-32 characters of A-Z, a-z, 0-9, _ and -`,
          );
        }
        return image;
      }
      if (redirects === MAX_REDIRECTS) {
        throw new UpstreamFetchException(
          'redirect_refused',
          `Upstream ${url} redirected more than ${MAX_REDIRECTS} times`,
        );
      }
      url = redirectTarget(url, reply, this.config.allowedRedirectHosts);
      visiting(url);
    }
  }

  /**
   * One GET, its body read whole within `UPSTREAM_MAX_BYTES` (see `upstreamHttpOptions`). A
   * request sent on a kept-alive connection that the upstream closed at the same moment fails
   * before any reply: it is sent once more, on a new connection.
   */
  private async get(
    url: string,
    deadline: AbortSignal,
  ): Promise<UpstreamReply> {
    const send = () =>
      firstValueFrom(this.http.get<Buffer>(url, { signal: deadline }));
    try {
      const response = await send().catch((error: unknown) => {
        if (!closedWhenReused(error) || deadline.aborted) {
          throw error;
        }
        return send();
      });
      return {
        status: response.status,
        headers: response.headers,
        body: ownBytes(response.data),
      };
    } catch (error) {
      throw describeFailure(url, error, {
        timeoutMs: this.config.timeoutMs,
        maxBytes: this.config.maxBytes,
        deadlinePassed: deadline.aborted,
      });
    }
  }
}

/**
 * Whether `error` is a kept-alive connection closed by the upstream before it answered: the
 * race Node's documentation describes for `request.reusedSocket`, safe to retry for a GET.
 */
function closedWhenReused(error: unknown): boolean {
  return (
    isAxiosError(error) &&
    error.response === undefined &&
    error.code === 'ECONNRESET' &&
    (error.request as { reusedSocket?: boolean } | undefined)?.reusedSocket ===
      true
  );
}

/**
 * `body` in a memory of its own and of its exact size. A body read in one chunk is a view of
 * the socket's read buffer (headers included), and a small one a slice of Node's shared 8 KiB
 * pool: kept in a tier, such a view would hold the whole buffer it points into. The bodies
 * axios joins from several chunks are already their own allocation, and are kept as they are.
 */
export function ownBytes(body: Buffer): Buffer {
  if (body.byteOffset === 0 && body.buffer.byteLength === body.length) {
    return body;
  }
  const own = Buffer.allocUnsafeSlow(body.length);
  body.copy(own);
  return own;
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
