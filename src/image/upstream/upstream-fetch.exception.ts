import { BadGatewayException } from '@nestjs/common';
import type { UpstreamFailureOutcome } from './upstream-outcome';

/**
 * A fetch from the upstream that failed (502), with what went wrong in the terms of
 * `image_cache_upstream_fetches_total`. `cause` is for the log, never for the reply.
 */
export class UpstreamFetchException extends BadGatewayException {
  constructor(
    readonly outcome: Exclude<UpstreamFailureOutcome, 'timeout'>,
    message: string,
    cause?: string,
  ) {
    super(message, { description: 'Bad Gateway', cause });
  }
}
