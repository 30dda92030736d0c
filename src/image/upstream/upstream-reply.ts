import { printableText } from '../../common/printable-text';
import {
  CONTENT_TYPES,
  declaredImageFormat,
  detectImageFormat,
} from './image-signature';
import { isValidPicsumId } from './picsum-id';
import { UpstreamFetchException } from './upstream-fetch.exception';

/** What of an upstream's text error reply is quoted in the error: enough for Picsum's `Invalid size`. */
const MAX_QUOTED_ERROR_CHARS = 200;

/** One reply of the upstream, its body read whole (within `UPSTREAM_MAX_BYTES`). */
export interface UpstreamReply {
  readonly status: number;
  /** Header names in lower case; a header sent more than once may be an array. */
  readonly headers: Readonly<Record<string, unknown>>;
  readonly body: Buffer;
}

/** An image as the upstream sent it, already checked to be a complete image. */
export interface UpstreamImage {
  readonly body: Buffer;
  /** Derived from the detected format, never copied from the upstream's header. */
  readonly contentType: string;
  readonly picsumId?: string;
  /** The URL the body came from, after redirects. */
  readonly source: string;
}

/** An image taken from a reply, and a `Picsum-ID` it carried that was not used because it is not a plain id. */
export interface CheckedImage {
  readonly image: UpstreamImage;
  readonly refusedPicsumId?: string;
}

export function isRedirect(status: number): boolean {
  return [301, 302, 303, 307, 308].includes(status);
}

/**
 * The absolute URL the redirect `reply` of `from` leads to, if it is one to follow: http or
 * https, to a host in `allowedHosts`. Fails, naming the problem, otherwise.
 */
export function redirectTarget(
  from: string,
  reply: UpstreamReply,
  allowedHosts: ReadonlySet<string>,
): string {
  const location = headerValue(reply, 'location');
  if (location === undefined) {
    throw new UpstreamFetchException(
      'invalid',
      `Upstream ${from} answered ${reply.status} without a Location`,
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
  if (!allowedHosts.has(target.hostname)) {
    throw new UpstreamFetchException(
      'redirect_refused',
      `Upstream ${from} redirected to host ${target.hostname}, which is not the upstream's host or in UPSTREAM_ALLOWED_REDIRECT_HOSTS (${[...allowedHosts].join(', ')}); not followed`,
    );
  }
  return target.href;
}

/**
 * The image in the final `reply` from `source`: a 2xx whose body is complete, of the length
 * announced, within `maxBytes`, and an image of the format its Content-Type declares. Fails,
 * naming the problem (and quoting a text error, as Picsum explains its 400s), otherwise.
 */
export function imageFromReply(
  source: string,
  reply: UpstreamReply,
  maxBytes: number,
): CheckedImage {
  const declared = headerValue(reply, 'content-type') ?? '';
  const body = reply.body;
  if (reply.status < 200 || reply.status > 299) {
    throw new UpstreamFetchException(
      'http_error',
      `Upstream answered ${reply.status} for ${source}${quotedText(declared, body)}`,
      undefined,
      reply.status,
    );
  }
  const declaredFormat = declaredImageFormat(declared);
  if (declaredFormat === undefined) {
    throw new UpstreamFetchException(
      'invalid',
      `Upstream answered ${source} with Content-Type ${JSON.stringify(declared)}; only ${Object.values(CONTENT_TYPES).join(', ')} are accepted`,
    );
  }
  const announced = headerValue(reply, 'content-length');
  if (announced !== undefined && Number(announced) !== body.length) {
    throw new UpstreamFetchException(
      'invalid',
      `Upstream body from ${source} is truncated: Content-Length ${announced}, received ${body.length} bytes`,
    );
  }
  if (body.length > maxBytes) {
    throw tooLarge(source, maxBytes);
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
  const picsumId = headerValue(reply, 'picsum-id');
  const validId = picsumId !== undefined && isValidPicsumId(picsumId);
  return {
    image: {
      body,
      contentType: CONTENT_TYPES[format],
      source,
      ...(validId ? { picsumId } : {}),
    },
    ...(picsumId !== undefined && !validId
      ? { refusedPicsumId: picsumId }
      : {}),
  };
}

/** The failure of a body larger than `UPSTREAM_MAX_BYTES`. */
export function tooLarge(
  url: string,
  maxBytes: number,
): UpstreamFetchException {
  return new UpstreamFetchException(
    'too_large',
    `Upstream body from ${url} is larger than UPSTREAM_MAX_BYTES (${maxBytes} bytes); not stored`,
  );
}

function headerValue(reply: UpstreamReply, name: string): string | undefined {
  const value = reply.headers[name];
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
