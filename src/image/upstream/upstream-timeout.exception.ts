import { GatewayTimeoutException } from '@nestjs/common';

/** A fetch the upstream did not finish within `UPSTREAM_TIMEOUT_MS` (504). */
export class UpstreamTimeoutException extends GatewayTimeoutException {
  readonly outcome = 'timeout';

  constructor(message: string, cause?: string) {
    super(message, { description: 'Gateway Timeout', cause });
  }
}
