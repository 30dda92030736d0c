import { ServiceUnavailableException } from '@nestjs/common';

/** A 503 for a miss that waited its turn for an upstream fetch too long; the reply says when to retry. */
export class UpstreamBusyException extends ServiceUnavailableException {
  constructor(
    readonly retryAfterSeconds: number,
    maxConcurrency: number,
    waitedMs: number,
  ) {
    super(
      `The upstream is busy: ${maxConcurrency} fetches are already running (UPSTREAM_MAX_CONCURRENCY) and none finished within ${waitedMs} ms; retry in ${retryAfterSeconds} s`,
    );
  }
}
