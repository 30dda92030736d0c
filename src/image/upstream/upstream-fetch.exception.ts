import { printableText } from '../../common/printable-text';
import { BadGatewayException } from '@nestjs/common';
import type { UpstreamFailureOutcome } from './upstream-outcome';

/**
 * A fetch from the upstream that failed (502), with what went wrong in the terms of
 * `image_cache_upstream_fetches_total`. `cause` is for the log, never for the reply;
 * `forwardStatus` is the status the upstream answered, when it answered with an error.
 * The message may quote the upstream: it is made printable here, whoever builds it.
 */
export class UpstreamFetchException extends BadGatewayException {
  constructor(
    readonly outcome: Exclude<UpstreamFailureOutcome, 'timeout'>,
    message: string,
    cause?: string,
    readonly forwardStatus?: number,
  ) {
    super(printableText(message), { description: 'Bad Gateway', cause });
  }
}
