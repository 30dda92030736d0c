import type { LoggerService } from '@nestjs/common';
import { performance } from 'node:perf_hooks';

/** How long operations must succeed without a failure before an outage counts as over. */
export const OUTAGE_RECOVERY_MS = 5000;

/**
 * Logs a failing dependency once when it starts failing and once when it works again, with how
 * many failures came in between, instead of once per failed operation. An outage is over only
 * after `OUTAGE_RECOVERY_MS` without a failure, so a dependency that fails some operations and
 * not others (a Redis that refuses writes but answers reads) is one outage, not one per
 * success: it is logged once more, as partial, the first time a success comes during it.
 */
export class OutageLog {
  private failures = 0;
  private lastFailureAt = -Infinity;
  /** Whether anything succeeded since the outage began: a failure after that makes it partial. */
  private succeededSince = false;
  private partialLogged = false;

  constructor(
    private readonly logger: LoggerService,
    /** What fails, as the log lines name it, e.g. `Writes to CACHE_DIR=/app/storage`. */
    private readonly what: string,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** From the first failure until the outage is over. */
  get failing(): boolean {
    return this.failures > 0;
  }

  failed(reason: string): void {
    this.failures += 1;
    this.lastFailureAt = this.now();
    if (this.failures === 1) {
      this.logger.error(`${this.what} fail: ${reason}`);
    } else if (this.succeededSince && !this.partialLogged) {
      this.partialLogged = true;
      this.logger.warn(
        `${this.what} partly fail: some succeed while others fail (${reason}); logged again when none has failed for ${OUTAGE_RECOVERY_MS / 1000} s`,
      );
    }
  }

  succeeded(): void {
    if (this.failures === 0) {
      return;
    }
    if (this.now() - this.lastFailureAt < OUTAGE_RECOVERY_MS) {
      this.succeededSince = true;
      return;
    }
    this.logger.log(
      `${this.what} work again, after ${this.failures} failure(s)`,
    );
    this.failures = 0;
    this.succeededSince = false;
    this.partialLogged = false;
  }
}
