import { z } from 'zod';
import { isPrintableText, printableText } from '../../../common/printable-text';
import { restoreCachedImage } from '../cached-image';
import type { CachedImage } from '../cache-model';

/** How far ahead of this replica's clock another replica's may be: a `fetchedAt` past it is refused. */
export const MAX_CLOCK_SKEW_MS = 60_000;
/** The longest `source` URL an entry may carry. */
export const MAX_SOURCE_CHARS = 2048;
/** The longest failure message a replica records; longer ones are cut to this when recorded. */
export const MAX_FAILURE_MESSAGE_CHARS = 200;
/** The longest header an entry may have (length prefix included); a longer one is refused unread. */
export const MAX_HEADER_BYTES = 4096;
/** Variant keys are short (`800x600-grayscale-blur2.webp`); anything longer is not ours. */
const MAX_KEY_CHARS = 256;
/** Bytes before the header that give its length. */
const HEADER_LENGTH_BYTES = 4;

/** The bounds what is read from Redis must keep, taken from the service's own configuration. */
export interface SharedLimits {
  /** `UPSTREAM_MAX_BYTES`: no image the client accepts is larger. */
  readonly maxBodyBytes: number;
  /** `UPSTREAM_RETRY_AFTER_SECONDS` in ms: no failure is remembered longer. */
  readonly maxRetryAfterMs: number;
}

/** What failed validation: a kind for the metric, and a reason for the log. */
export interface Rejected {
  readonly invalid: string;
}

const key = z.string().min(1).max(MAX_KEY_CHARS);
/** Epoch ms after the epoch; the upper bound depends on the clock and is checked apart. */
const epochMs = z.number().int().positive();

const headerSchema = z.object({
  version: z.literal(1),
  key,
  bytes: z.number().int().positive(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  fetchedAt: epochMs,
  source: z.string().max(MAX_SOURCE_CHARS).refine(isHttpUrl, {
    message: 'not an http(s) URL',
  }),
  picsumId: z.string().max(32).optional(),
});

const failedSchema = z.object({
  type: z.literal('failed'),
  from: z.string().max(64),
  key,
  /** What a failed fetch is answered with: 502 (the upstream failed) or 504 (it timed out). */
  status: z.union([z.literal(502), z.literal(504)]),
  /** The status the upstream itself answered, for `Cache-Status: fwd-status`; none for a network failure or timeout. */
  forwardStatus: z.number().int().min(100).max(599).optional(),
  message: z
    .string()
    .max(MAX_FAILURE_MESSAGE_CHARS)
    .refine(isClientWording, { message: "not the upstream client's wording" }),
  retryAfterMs: z.number().nonnegative(),
});

/**
 * What a replica publishes: it stored a new image (the others drop their older copy, or every
 * copy with `replaces`, as after an admin refresh), purged a variant or all (`key: null`), or
 * the upstream failed (the others do not ask it again before `retryAfterMs`).
 */
const noticeSchema = z.discriminatedUnion('type', [
  z.object({
    type: z.literal('stored'),
    from: z.string().max(64),
    key,
    etag: z.string().regex(/^"[0-9a-f]{32}"$/),
    fetchedAt: epochMs,
    replaces: z.boolean().optional(),
  }),
  z.object({
    type: z.literal('purged'),
    from: z.string().max(64),
    key: key.nullable(),
  }),
  failedSchema,
]);

export type Notice = z.infer<typeof noticeSchema>;
export type StoredNotice = Extract<Notice, { type: 'stored' }>;
export type FailedNotice = z.infer<typeof failedSchema>;
export type PurgedNotice = Extract<Notice, { type: 'purged' }>;

/** An entry's header, with where the body starts. */
export type EntryHeader = z.infer<typeof headerSchema> & {
  readonly headerEnd: number;
};

/**
 * Encodes what the shared tier stores and decodes what it reads back. Redis is shared with
 * whoever can write to it, so everything read is validated as strictly as an upstream reply:
 * an entry's header and body, a notice, a failure record. Pure: no I/O, the clock passed in.
 */
export class SharedCodec {
  constructor(
    private readonly limits: SharedLimits,
    private readonly now: () => number,
  ) {}

  /** One value: the header's length (4 bytes, big-endian), the JSON header, then the body. */
  encodeEntry(image: CachedImage): Buffer {
    const header = Buffer.from(
      JSON.stringify({
        version: 1,
        key: image.key,
        bytes: image.body.length,
        sha256: image.sha256,
        fetchedAt: image.fetchedAt,
        source: image.source,
        ...(image.picsumId ? { picsumId: image.picsumId } : {}),
      } satisfies z.input<typeof headerSchema>),
    );
    const length = Buffer.alloc(HEADER_LENGTH_BYTES);
    length.writeUInt32BE(header.length);
    return Buffer.concat([length, header, image.body]);
  }

  /** The image `value` holds for `key`, verified, or why it must be discarded. */
  decodeEntry(key: string, value: Buffer): CachedImage | Rejected {
    const header = this.decodeHeader(key, value);
    if ('invalid' in header) {
      return header;
    }
    if (value.length - header.headerEnd !== header.bytes) {
      return {
        invalid: `body of ${value.length - header.headerEnd} bytes where ${header.bytes} were stored`,
      };
    }
    return restoreCachedImage({
      key,
      // A copy: the reply's buffer may be a slice of a larger one the client keeps.
      body: Buffer.from(value.subarray(header.headerEnd)),
      sha256: header.sha256,
      fetchedAt: header.fetchedAt,
      source: header.source,
      ...(header.picsumId ? { picsumId: header.picsumId } : {}),
    });
  }

  /**
   * The header at the start of `value` (which may hold the header alone), checked against the
   * limits and `key`, or why it must be discarded.
   */
  decodeHeader(key: string, value: Buffer): EntryHeader | Rejected {
    if (value.length < HEADER_LENGTH_BYTES) {
      return { invalid: 'too short to hold a header' };
    }
    const headerEnd = HEADER_LENGTH_BYTES + value.readUInt32BE(0);
    if (headerEnd > MAX_HEADER_BYTES) {
      return {
        invalid: `header of ${headerEnd} bytes, more than ${MAX_HEADER_BYTES}`,
      };
    }
    if (headerEnd > value.length) {
      return { invalid: 'header longer than the value' };
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(
        value.subarray(HEADER_LENGTH_BYTES, headerEnd).toString(),
      );
    } catch {
      return { invalid: 'header is not JSON' };
    }
    const header = headerSchema.safeParse(parsed);
    if (!header.success) {
      return { invalid: `malformed header (${describe(header.error)})` };
    }
    if (header.data.key !== key) {
      return { invalid: `stored for ${JSON.stringify(header.data.key)}` };
    }
    const problem =
      this.fetchedAtProblem(header.data.fetchedAt) ??
      (header.data.bytes > this.limits.maxBodyBytes
        ? `body of ${header.data.bytes} bytes, more than UPSTREAM_MAX_BYTES (${this.limits.maxBodyBytes})`
        : undefined);
    return problem === undefined
      ? { ...header.data, headerEnd }
      : { invalid: problem };
  }

  encodeNotice(notice: Notice): string {
    return JSON.stringify(notice);
  }

  /** The notice `message` holds, or why it is ignored (with its key when it names one). */
  decodeNotice(message: string): Notice | (Rejected & { key?: string }) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(message);
    } catch {
      return { invalid: 'not JSON' };
    }
    const notice = noticeSchema.safeParse(parsed);
    const named = (parsed as { key?: unknown } | null)?.key;
    const namedKey =
      typeof named === 'string' ? { key: named.slice(0, MAX_KEY_CHARS) } : {};
    if (!notice.success) {
      return { invalid: describe(notice.error), ...namedKey };
    }
    const problem =
      notice.data.type === 'stored'
        ? this.fetchedAtProblem(notice.data.fetchedAt)
        : notice.data.type === 'failed'
          ? this.retryProblem(notice.data.retryAfterMs)
          : undefined;
    return problem === undefined
      ? notice.data
      : { invalid: problem, ...namedKey };
  }

  /**
   * The failure recorded for `key` in `value`, whose Redis key expires in `remainingMs` (-1 when
   * it never does), with that as its retry time; or why it must be discarded.
   */
  decodeFailure(
    key: string,
    value: string,
    remainingMs: number,
  ): FailedNotice | Rejected {
    if (remainingMs === -1) {
      return { invalid: 'a failure record without an expiry' };
    }
    const notice = this.decodeNotice(value);
    if ('invalid' in notice) {
      return notice;
    }
    if (notice.type !== 'failed' || notice.key !== key) {
      return { invalid: `a ${notice.type} notice for ${notice.key}` };
    }
    const problem = this.retryProblem(remainingMs);
    return problem === undefined
      ? { ...notice, retryAfterMs: remainingMs }
      : { invalid: problem };
  }

  private fetchedAtProblem(fetchedAt: number): string | undefined {
    const latest = this.now() + MAX_CLOCK_SKEW_MS;
    return fetchedAt > latest
      ? `fetched at ${fetchedAt} (epoch ms), more than ${MAX_CLOCK_SKEW_MS / 1000} s ahead of this replica's clock`
      : undefined;
  }

  private retryProblem(retryAfterMs: number): string | undefined {
    return retryAfterMs > this.limits.maxRetryAfterMs
      ? `retry after ${retryAfterMs} ms, longer than UPSTREAM_RETRY_AFTER_SECONDS (${this.limits.maxRetryAfterMs} ms)`
      : undefined;
  }
}

/**
 * `message` cut to what a failure record may hold, so that another replica's codec accepts
 * what this one recorded.
 */
export function recordableMessage(message: string): string {
  const printable = printableText(message);
  return printable.length <= MAX_FAILURE_MESSAGE_CHARS
    ? printable
    : `${printable.slice(0, MAX_FAILURE_MESSAGE_CHARS - 1)}…`;
}

/** The upstream client's own messages start this way, and hold nothing unprintable. */
function isClientWording(message: string): boolean {
  return (
    /^(Upstream |Fetching from the upstream failed)/.test(message) &&
    isPrintableText(message)
  );
}

function isHttpUrl(text: string): boolean {
  try {
    const { protocol } = new URL(text);
    return protocol === 'http:' || protocol === 'https:';
  } catch {
    return false;
  }
}

/** The first problem zod found, as `path: message`. */
function describe(error: z.ZodError): string {
  const issue = error.issues[0];
  const path = issue.path.join('.');
  return path === '' ? issue.message : `${path}: ${issue.message}`;
}
