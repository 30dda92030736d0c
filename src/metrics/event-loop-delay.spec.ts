import {
  parseExposition,
  sampleValue,
} from '../../test/support/prometheus-text';
import { CacheMetrics } from './cache-metrics';
import { EventLoopDelay } from './event-loop-delay';

/** Keeps the event loop busy for `ms`, as a long garbage collection or synchronous write would. */
function block(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until) {
    // busy
  }
}

/** The summary's sample `suffix` (`_count`, `_sum`, or '' for a quantile) with `labels`. */
function sample(
  metrics: string,
  suffix: string,
  labels: Record<string, string> = {},
): number {
  const value = sampleValue(
    parseExposition(metrics),
    `image_cache_event_loop_delay_seconds${suffix}`,
    labels,
  );
  if (value === undefined) {
    throw new Error(
      `no sample ${suffix} ${JSON.stringify(labels)} in:\n${metrics}`,
    );
  }
  return value;
}

describe(EventLoopDelay.name, () => {
  let metrics: CacheMetrics;
  let delay: EventLoopDelay;

  beforeEach(() => {
    metrics = new CacheMetrics();
    delay = new EventLoopDelay(metrics);
    delay.onModuleInit();
  });

  afterEach(() => delay.onApplicationShutdown());

  it('exports how late the event loop ran as a summary, its maximum as quantile 1', async () => {
    await new Promise((resolve) => setTimeout(resolve, 50));
    block(120);
    await new Promise((resolve) => setTimeout(resolve, 50));

    const text = await metrics.registry.metrics();

    expect(text).toContain(
      '# TYPE image_cache_event_loop_delay_seconds summary',
    );
    expect(sample(text, '', { quantile: '1' })).toBeGreaterThanOrEqual(0.1);
    // An idle loop is not late: Node's timer interval itself is not counted.
    expect(sample(text, '', { quantile: '0.5' })).toBeLessThan(0.01);
    expect(sample(text, '_count')).toBeGreaterThan(0);
    expect(sample(text, '_sum')).toBeGreaterThanOrEqual(0.1);
  });

  it('reports the quantiles of the last complete window, while the next one fills', async () => {
    await new Promise((resolve) => setTimeout(resolve, 50));
    block(120);
    await new Promise((resolve) => setTimeout(resolve, 30));
    delay.closeWindow();
    const countAtClose = sample(await metrics.registry.metrics(), '_count');
    await new Promise((resolve) => setTimeout(resolve, 50));

    const text = await metrics.registry.metrics();

    // The pause was in the window that ended; the calm since does not hide it.
    expect(sample(text, '', { quantile: '1' })).toBeGreaterThanOrEqual(0.1);
    // The count goes on with the samples of the window that is filling.
    expect(sample(text, '_count')).toBeGreaterThan(countAtClose);
  });
});
