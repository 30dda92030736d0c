import type { HttpException } from '@nestjs/common';
import { isAxiosError } from 'axios';
import { errorMessage } from '../../common/error-message';
import { tooLarge } from './upstream-reply';
import { UpstreamFetchException } from './upstream-fetch.exception';
import { UpstreamTimeoutException } from './upstream-timeout.exception';

/** What the fetch of `url` was bounded by, to name in its failure. */
export interface FetchLimits {
  readonly timeoutMs: number;
  readonly maxBytes: number;
  /** Whether the deadline of the whole fetch has passed. */
  readonly deadlinePassed: boolean;
}

/**
 * The failure to report for an error of one request to the upstream: a 504 when the deadline
 * passed or a hop took too long, else a 502 that says what happened (too large, cut short,
 * closed without a reply, or the error code). The cause (with the resolved address, e.g.
 * `connect ECONNREFUSED 10.0.0.7:443`) is for the log only; clients see the URL and the code.
 */
export function describeFailure(
  url: string,
  error: unknown,
  limits: FetchLimits,
): HttpException {
  const cause = errorMessage(error);
  const code = (error as { code?: unknown } | undefined)?.code;
  if (
    limits.deadlinePassed ||
    code === 'ETIMEDOUT' ||
    code === 'ECONNABORTED'
  ) {
    return new UpstreamTimeoutException(
      `Upstream ${url} did not answer within UPSTREAM_TIMEOUT_MS (${limits.timeoutMs} ms)`,
      cause,
    );
  }
  if (isAxiosError(error) && error.message.startsWith('maxContentLength')) {
    return tooLarge(url, limits.maxBytes);
  }
  if (isAxiosError(error) && error.response !== undefined) {
    // The reply had begun: its headers came, its body did not end.
    return new UpstreamFetchException(
      'network_error',
      `Upstream ${url} closed the connection before the body was complete`,
      cause,
    );
  }
  if (code === 'ECONNRESET') {
    // A connection the upstream closed before it sent a reply ("socket hang up").
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
