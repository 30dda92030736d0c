import {
  Injectable,
  type OnApplicationShutdown,
  type OnModuleInit,
} from '@nestjs/common';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { Metric } from 'prom-client';
import { CacheMetrics } from './cache-metrics';

const NAME = 'image_cache_event_loop_delay_seconds';
/** How often Node samples the event loop's delay. */
const RESOLUTION_MS = 10;
/**
 * Node records the time between two of its timer's turns, which is the resolution on an idle
 * loop: what is late is what lies beyond it.
 */
const RESOLUTION_NS = RESOLUTION_MS * 1e6;
/** The quantiles are of the last complete window of this length. */
export const WINDOW_MS = 60_000;
const QUANTILES = [0.5, 0.9, 0.99, 0.999, 1] as const;

/** A summary as prom-client's registry prints it. */
interface SummaryValues {
  readonly name: string;
  readonly help: string;
  readonly type: 'summary';
  readonly aggregator: 'sum';
  readonly values: ReadonlyArray<{
    readonly metricName?: string;
    readonly labels: Readonly<Record<string, number>>;
    readonly value: number;
  }>;
}

/**
 * `image_cache_event_loop_delay_seconds`: how late the event loop ran, from Node's
 * `monitorEventLoopDelay`, as a Prometheus summary. A request waits at least as long as the
 * loop is late, whatever the cache does, so a tail in the request latency shows here first when
 * its cause is a pause (a garbage collection, a synchronous write) rather than the work of that
 * request. The quantiles (0.5 to 0.999, and 1 for the maximum) are those of the last complete
 * minute, so they do not depend on how often or by how many the metrics are read; `_count` and
 * `_sum` count every sample since start.
 */
@Injectable()
export class EventLoopDelay implements OnModuleInit, OnApplicationShutdown {
  private readonly histogram = monitorEventLoopDelay({
    resolution: RESOLUTION_MS,
  });
  /** The quantiles of the last complete window, in seconds; none before the first ends. */
  private lastQuantiles: Array<[number, number]> | undefined;
  /** Samples and their sum, in seconds, of the windows already closed. */
  private closedCount = 0;
  private closedSumSeconds = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly metrics: CacheMetrics) {}

  onModuleInit(): void {
    this.histogram.enable();
    this.timer = setInterval(() => this.closeWindow(), WINDOW_MS);
    this.timer.unref();
    // A metric of prom-client's registry is anything with a name and a `get`.
    this.metrics.registry.registerMetric({
      name: NAME,
      get: () => Promise.resolve(this.collect()),
    } as unknown as Metric);
  }

  onApplicationShutdown(): void {
    clearInterval(this.timer);
    this.histogram.disable();
  }

  /** Ends the current window: its quantiles become the ones reported, its samples join the totals. */
  closeWindow(): void {
    if (this.histogram.count > 0) {
      this.closedCount += this.histogram.count;
      this.closedSumSeconds += this.currentSumSeconds();
      this.lastQuantiles = this.quantilesNow();
    }
    this.histogram.reset();
  }

  /** The sum, in seconds, of the current window's samples. */
  private currentSumSeconds(): number {
    const samples = this.histogram.count;
    return samples > 0 ? lateSeconds(this.histogram.mean) * samples : 0;
  }

  private quantilesNow(): Array<[number, number]> {
    return QUANTILES.map((quantile) => [
      quantile,
      lateSeconds(
        quantile === 1
          ? this.histogram.max
          : this.histogram.percentile(quantile * 100),
      ),
    ]);
  }

  /** The summary's values now. */
  collect(): SummaryValues {
    // Before the first minute ends, the quantiles of the minute so far.
    const quantiles =
      this.lastQuantiles ??
      (this.histogram.count > 0 ? this.quantilesNow() : []);
    const sum = this.closedSumSeconds + this.currentSumSeconds();
    const count = this.closedCount + this.histogram.count;
    return {
      name: NAME,
      help: `How late the event loop ran, sampled every ${RESOLUTION_MS} ms: quantiles of the last complete minute (1 is the maximum), count and sum since start`,
      type: 'summary',
      aggregator: 'sum',
      values: [
        ...quantiles.map(([quantile, value]) => ({
          labels: { quantile },
          value,
        })),
        {
          metricName: `${NAME}_sum`,
          labels: {},
          value: sum,
        },
        {
          metricName: `${NAME}_count`,
          labels: {},
          value: count,
        },
      ],
    };
  }
}

/** How late a turn that took `nanoseconds` was, in seconds. */
function lateSeconds(nanoseconds: number): number {
  return Math.max(0, nanoseconds - RESOLUTION_NS) / 1e9;
}
