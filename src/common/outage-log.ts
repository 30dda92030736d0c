import type { LoggerService } from '@nestjs/common';

/**
 * Logs a failing dependency once when it starts failing and once when it works again, with how
 * many failures came in between, instead of once per failed operation.
 */
export class OutageLog {
  private failures = 0;

  constructor(
    private readonly logger: LoggerService,
    /** What fails, as the log lines name it, e.g. `Writes to CACHE_DIR=/app/storage`. */
    private readonly what: string,
  ) {}

  get failing(): boolean {
    return this.failures > 0;
  }

  failed(reason: string): void {
    this.failures += 1;
    if (this.failures === 1) {
      this.logger.error(`${this.what} fail: ${reason}`);
    }
  }

  succeeded(): void {
    if (this.failures > 0) {
      this.logger.log(
        `${this.what} work again, after ${this.failures} failure(s)`,
      );
      this.failures = 0;
    }
  }
}
