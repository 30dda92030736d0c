import type { Logger } from '@nestjs/common';
import { errorMessage } from '../../../common/error-message';
import { OutageLog } from '../../../common/outage-log';
import type { Clock } from '../clock';
import type { DiskFiles } from './disk-files';

/** What readiness reports of the disk tier. */
export interface DiskStatus {
  /** Stored images can be read: the tier can serve hits. */
  readonly readable: boolean;
  /** New images can be stored; when false, they are served from memory only. */
  readonly writable: boolean;
  /** Why the tier is not writable (or not readable). */
  readonly reason?: string;
}

/**
 * Whether the cache directory takes writes and can be read. The directory is probed with a
 * small write at most once per `checkIntervalMs`; in between, the last result is answered,
 * updated at once by any write of the tier's own that fails or succeeds. A directory that
 * stops taking writes is logged once per outage, and once when it recovers.
 */
export class DiskHealth {
  private current: DiskStatus = { readable: true, writable: true };
  private checkedAt = -Infinity;
  private checking?: Promise<DiskStatus>;
  private readonly writeOutage: OutageLog;

  constructor(
    private readonly files: DiskFiles,
    private readonly clock: Clock,
    private readonly checkIntervalMs: number,
    logger: Logger,
  ) {
    this.writeOutage = new OutageLog(
      logger,
      `Writes to CACHE_DIR=${files.directory}`,
    );
  }

  /** The state for readiness: the last one known, or a new probe when one is due. */
  status(): Promise<DiskStatus> {
    if (!this.checkIsDue()) {
      return Promise.resolve(this.current);
    }
    this.checking ??= this.check().finally(() => (this.checking = undefined));
    return this.checking;
  }

  /** Whether a write is worth trying: the directory took the last one, or it is time to try again. */
  acceptsWrites(): boolean {
    return this.current.writable || this.checkIsDue();
  }

  /** Probes writes with a small file (create, fsync, remove); if they fail, whether reads still work. */
  async check(): Promise<DiskStatus> {
    try {
      await this.files.probeWrite();
      return this.record({ readable: true, writable: true });
    } catch (error) {
      return this.record({
        readable: await this.files.isReadable(),
        writable: false,
        reason: errorMessage(error),
      });
    }
  }

  /** One of the tier's own writes failed: the tier is not writable until a write or probe succeeds. */
  writeFailed(error: unknown): void {
    this.record({
      readable: this.current.readable,
      writable: false,
      reason: errorMessage(error),
    });
  }

  /** A successful write only changes what readiness answers when the tier was failing. */
  writeSucceeded(): void {
    if (!this.current.writable || !this.current.readable) {
      this.record({ readable: true, writable: true });
    }
  }

  private checkIsDue(): boolean {
    return this.clock.now() - this.checkedAt >= this.checkIntervalMs;
  }

  /** What a probe or one of the tier's own writes found: readiness answers it until the next check is due. */
  private record(status: DiskStatus): DiskStatus {
    this.current = status;
    this.checkedAt = this.clock.now();
    if (status.writable) {
      this.writeOutage.succeeded();
    } else {
      this.writeOutage.failed(status.reason ?? 'not writable');
    }
    return status;
  }
}
