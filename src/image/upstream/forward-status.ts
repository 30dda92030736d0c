import { HttpException } from '@nestjs/common';

/** An error that knows the status the upstream itself answered with. */
interface WithForwardStatus {
  readonly forwardStatus?: number;
}

/**
 * The status the next hop returned, for `Cache-Status: fwd-status` (RFC 9211): what the
 * upstream answered (Picsum's 400, 404, 500, 503...) when it answered; where no status came
 * back (refused, reset, timed out, or a reply we refused), the one this service answers with
 * (502, or 504 for a timeout).
 */
export function forwardStatusOf(error: HttpException): number {
  return (error as WithForwardStatus).forwardStatus ?? error.getStatus();
}

/** A failed fetch another replica made, as its notice or record told it. */
export class RemoteUpstreamFailure
  extends HttpException
  implements WithForwardStatus
{
  readonly forwardStatus?: number;

  constructor(failure: {
    readonly message: string;
    readonly status: number;
    readonly forwardStatus?: number;
  }) {
    super(failure.message, failure.status);
    this.forwardStatus = failure.forwardStatus;
  }
}
