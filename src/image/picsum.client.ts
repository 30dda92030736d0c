import { HttpService } from '@nestjs/axios';
import {
  BadGatewayException,
  GatewayTimeoutException,
  HttpException,
  Inject,
  Injectable,
  Logger,
} from '@nestjs/common';
import type { ConfigType } from '@nestjs/config';
import { AxiosError, type AxiosResponse } from 'axios';
import { firstValueFrom } from 'rxjs';
import { errorMessage } from '../common/error-message';
import { upstreamConfig } from '../config/upstream.config';
import { detectImageFormat } from './image-signature';
import type { ImageVariant } from './image-variant';

const MAX_REDIRECTS = 5;

/** An image as the upstream sent it, already checked to be a complete image. */
export interface UpstreamImage {
  readonly body: Buffer;
  readonly contentType: string;
  readonly picsumId?: string;
  /** The URL the body came from, after redirects. */
  readonly source: string;
}

/**
 * Talks to Lorem Picsum or any server with the same API: `GET /{width}/{height}` answers with a
 * redirect to `/id/{id}/{width}/{height}.jpg`. Every failure becomes a 502, or a 504 when the
 * whole fetch, redirects included, takes longer than `UPSTREAM_TIMEOUT_MS`.
 */
@Injectable()
export class PicsumClient {
  private readonly logger = new Logger(PicsumClient.name);

  constructor(
    private readonly http: HttpService,
    @Inject(upstreamConfig.KEY)
    private readonly config: ConfigType<typeof upstreamConfig>,
  ) {}

  async fetchImage(variant: ImageVariant): Promise<UpstreamImage> {
    const url = `${this.config.baseUrl}${upstreamPath(variant)}`;
    const startedAt = performance.now();
    const response = await this.get(url);
    const image = this.validate(url, response);
    this.logger.log(
      `Fetched ${image.source} (${image.body.length} bytes, ${image.contentType}) in ${Math.round(performance.now() - startedAt)} ms`,
    );
    return image;
  }

  private async get(url: string): Promise<AxiosResponse<Buffer>> {
    try {
      return await firstValueFrom(
        this.http.get<Buffer>(url, {
          responseType: 'arraybuffer',
          // A deadline for the whole exchange; axios' own `timeout` only bounds each socket's idle time.
          signal: AbortSignal.timeout(this.config.timeoutMs),
          timeout: this.config.timeoutMs,
          maxRedirects: MAX_REDIRECTS,
          maxContentLength: this.config.maxBytes,
          // The checks below must see the exact bytes that will be stored and served.
          decompress: false,
          validateStatus: () => true,
          headers: { Accept: 'image/*', 'Accept-Encoding': 'identity' },
        }),
      );
    } catch (error) {
      throw this.describeFailure(url, error);
    }
  }

  private describeFailure(url: string, error: unknown): HttpException {
    if (error instanceof AxiosError) {
      if (
        error.code === AxiosError.ERR_CANCELED ||
        error.code === AxiosError.ECONNABORTED ||
        error.code === 'ETIMEDOUT'
      ) {
        return new GatewayTimeoutException(
          `Upstream ${url} did not answer within UPSTREAM_TIMEOUT_MS (${this.config.timeoutMs} ms)`,
        );
      }
      if (error.message.startsWith('maxContentLength')) {
        return this.tooLarge(url);
      }
      if (error.message === 'stream has been aborted') {
        return new BadGatewayException(
          `Upstream ${url} closed the connection before the body was complete`,
        );
      }
      if (error.code === AxiosError.ERR_FR_TOO_MANY_REDIRECTS) {
        return new BadGatewayException(
          `Upstream ${url} redirected more than ${MAX_REDIRECTS} times`,
        );
      }
      return new BadGatewayException(
        `Upstream ${url} failed: ${error.code ? `${error.code} ` : ''}${error.message}`,
      );
    }
    return new BadGatewayException(
      `Upstream ${url} failed: ${errorMessage(error)}`,
    );
  }

  private validate(
    url: string,
    response: AxiosResponse<Buffer>,
  ): UpstreamImage {
    const source = finalUrl(response) ?? url;
    if (response.status < 200 || response.status > 299) {
      throw new BadGatewayException(
        `Upstream answered ${response.status} for ${source}`,
      );
    }
    const contentType = headerValue(response, 'content-type')?.toLowerCase();
    if (!contentType?.startsWith('image/')) {
      throw new BadGatewayException(
        `Upstream answered ${source} with Content-Type ${JSON.stringify(contentType ?? '')}, not an image`,
      );
    }
    const body = Buffer.from(response.data);
    const announced = headerValue(response, 'content-length');
    if (announced !== undefined && Number(announced) !== body.length) {
      throw new BadGatewayException(
        `Upstream body from ${source} is truncated: Content-Length ${announced}, received ${body.length} bytes`,
      );
    }
    if (body.length > this.config.maxBytes) {
      throw this.tooLarge(source);
    }
    if (detectImageFormat(body) === undefined) {
      throw new BadGatewayException(
        `Upstream body from ${source} is not a JPEG, PNG, WebP, GIF or AVIF image although labelled ${contentType}`,
      );
    }
    const picsumId = headerValue(response, 'picsum-id');
    return { body, contentType, source, ...(picsumId ? { picsumId } : {}) };
  }

  private tooLarge(url: string): HttpException {
    return new BadGatewayException(
      `Upstream body from ${url} is larger than UPSTREAM_MAX_BYTES (${this.config.maxBytes} bytes); not stored`,
    );
  }
}

function headerValue(
  response: AxiosResponse,
  name: string,
): string | undefined {
  const value: unknown = response.headers[name];
  return typeof value === 'string' && value !== '' ? value : undefined;
}

/** follow-redirects records where the chain ended on the Node response it hands to axios. */
function finalUrl(response: AxiosResponse): string | undefined {
  const request = response.request as
    { res?: { responseUrl?: unknown } } | undefined;
  const url = request?.res?.responseUrl;
  return typeof url === 'string' ? url : undefined;
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
