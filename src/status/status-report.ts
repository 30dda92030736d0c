import type { HeldVariant } from '../image/cache/cache-usage';
import type { ImageInfo } from '../image/image-info';
import type { RequestResult } from '../metrics/metric-labels';

/** The body of `GET /status`: what the status page shows, and nothing secret. */
export interface StatusReport {
  /** The service's clock (ISO 8601), so the page counts down against it, not the browser's. */
  readonly now: string;
  readonly startedAt: string;
  readonly ttlSeconds: number;
  /** The default variant's current image (what `GET /image` serves), or null before the first fetch. */
  readonly image: ImageInfo | null;
  /** `/image` requests since start, by result, and the share of hits (null before any). */
  readonly requests: Readonly<Record<RequestResult, number>> & {
    readonly hitRatio: number | null;
  };
  readonly memory: ReportedTierUse;
  readonly disk: ReportedTierUse;
  readonly upstream: {
    readonly state: 'ok' | 'failing';
    readonly failingSince: string | null;
    readonly lastError: string | null;
    /** Whether an expired image is being served because the upstream fails. */
    readonly servingStale: boolean;
  };
  readonly sharedTier: {
    readonly state: 'off' | 'connected' | 'unavailable';
    readonly problem: string | null;
  };
  /** How many variants this replica holds in memory or on disk. */
  readonly variantCount: number;
  /** The most recently used of them (at most 20): in memory first, then on disk. */
  readonly variants: readonly HeldVariant[];
}

/** A tier's use as the status page shows it (its evictions are in the metrics). */
export interface ReportedTierUse {
  readonly bytes: number;
  readonly maxBytes: number;
  readonly entries: number;
}
