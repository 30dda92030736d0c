import { Injectable } from '@nestjs/common';
import {
  collectDefaultMetrics,
  Counter,
  Gauge,
  Histogram,
  Registry,
} from 'prom-client';
import {
  ADMIN_ACTIONS,
  type AdminAction,
  type AnsweredRequest,
  type BudgetedTier,
  type HitTier,
  type RequestResult,
  SHARED_REJECTED_KINDS,
  type SharedRejectedKind,
  type TierUsage,
} from './metric-labels';
import { UPSTREAM_OUTCOMES, type UpstreamOutcome } from './upstream-outcomes';

type CounterChild = ReturnType<Counter<string>['labels']>;
type HistogramChild = ReturnType<Histogram<string>['labels']>;

const MISNAMED_DEFAULT_METRICS = [
  'nodejs_active_handles_total',
  'nodejs_active_requests_total',
  'nodejs_active_resources_total',
];
const RESULTS: readonly RequestResult[] = ['hit', 'miss', 'stale', 'error'];
/** Upstream fetches take from milliseconds to `UPSTREAM_TIMEOUT_MS` (5 s by default). */
const FETCH_BUCKETS = [0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** Hits take well under a millisecond; misses as long as a fetch. */
const REQUEST_BUCKETS = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
  10,
];

/**
 * The service's Prometheus metrics (the names and labels are a contract, listed in docs/observability.md),
 * in a registry of their own with Node's default process metrics. Counting a request costs a
 * few counter increments on children looked up once: no label is resolved on the hit path.
 */
@Injectable()
export class CacheMetrics {
  readonly registry = new Registry();
  private readonly requests: Record<RequestResult, CounterChild>;
  private readonly hits: Record<HitTier, CounterChild>;
  private readonly collapsed: Counter;
  private readonly upstreamFetches: Record<UpstreamOutcome, CounterChild>;
  private readonly upstreamDuration: Record<UpstreamOutcome, HistogramChild>;
  private readonly upstreamBusy: Counter;
  private readonly adminActions: Record<AdminAction, CounterChild>;
  private readonly sharedRejections: Record<SharedRejectedKind, CounterChild>;
  /** The same counts as `image_cache_requests_total`, readable at once for the status page. */
  private readonly answeredCounts: Record<RequestResult, number> = {
    hit: 0,
    miss: 0,
    stale: 0,
    error: 0,
  };
  private readonly httpDuration: Histogram<'method' | 'route' | 'code'>;
  private lastStaleOnError: number | null = null;
  private readonly httpDurationChildren = new Map<string, HistogramChild>();

  constructor() {
    collectDefaultMetrics({ register: this.registry });
    // Gauges named like counters, which `promtool check metrics` rejects; the same counts stay
    // in nodejs_active_handles, nodejs_active_requests and nodejs_active_resources, by type.
    for (const name of MISNAMED_DEFAULT_METRICS) {
      this.registry.removeSingleMetric(name);
    }
    const requests = new Counter({
      name: 'image_cache_requests_total',
      help: 'GET and HEAD /image requests answered, by what the cache answered with (a 304 counts under its cache result)',
      labelNames: ['result'],
      registers: [this.registry],
    });
    this.requests = childrenOf(RESULTS, (result) => requests.labels(result));
    const hits = new Counter({
      name: 'image_cache_hits_total',
      help: 'Fresh hits, by the tier that held the image',
      labelNames: ['tier'],
      registers: [this.registry],
    });
    this.hits = childrenOf(['memory', 'disk', 'shared'] as const, (tier) =>
      hits.labels(tier),
    );
    this.collapsed = new Counter({
      name: 'image_cache_collapsed_requests_total',
      help: 'Requests that waited for a fetch another request (or another replica) started',
      registers: [this.registry],
    });
    const fetches = new Counter({
      name: 'image_cache_upstream_fetches_total',
      help: 'Upstream fetches this pod started, by outcome',
      labelNames: ['outcome'],
      registers: [this.registry],
    });
    this.upstreamFetches = childrenOf(UPSTREAM_OUTCOMES, (outcome) =>
      fetches.labels(outcome),
    );
    const duration = new Histogram({
      name: 'image_cache_upstream_fetch_duration_seconds',
      help: 'Duration of the upstream fetches this pod started, redirects included, by outcome',
      labelNames: ['outcome'],
      buckets: FETCH_BUCKETS,
      registers: [this.registry],
    });
    this.upstreamDuration = childrenOf(UPSTREAM_OUTCOMES, (outcome) =>
      duration.labels(outcome),
    );
    this.upstreamBusy = new Counter({
      name: 'image_cache_upstream_busy_total',
      help: 'Misses refused with 503 because UPSTREAM_MAX_CONCURRENCY fetches were running and none finished in time',
      registers: [this.registry],
    });
    const adminActions = new Counter({
      name: 'image_cache_admin_actions_total',
      help: 'Admin API calls, by action: refresh, purge and entries done, denied refused for a missing or wrong token or too many failures',
      labelNames: ['action'],
      registers: [this.registry],
    });
    this.adminActions = childrenOf(ADMIN_ACTIONS, (action) =>
      adminActions.labels(action),
    );
    const sharedRejected = new Counter({
      name: 'image_cache_shared_rejected_total',
      help: 'Values read from the shared Redis that failed validation and were discarded, by kind: entry, next (a prefetched image), notice, failure (a recorded upstream failure), lock (one without an expiry, or longer than the lock TTL, taken over)',
      labelNames: ['kind'],
      registers: [this.registry],
    });
    this.sharedRejections = childrenOf(SHARED_REJECTED_KINDS, (kind) =>
      sharedRejected.labels(kind),
    );
    this.httpDuration = new Histogram({
      name: 'http_request_duration_seconds',
      help: 'Duration of every HTTP request, by method, route template and status code',
      labelNames: ['method', 'route', 'code'],
      buckets: REQUEST_BUCKETS,
      registers: [this.registry],
    });
  }

  /** Counts an `/image` request that was answered with an image (200 or 304). */
  answered({
    result,
    hitTier,
    collapsed,
    staleOnError,
  }: AnsweredRequest): void {
    this.requests[result].inc();
    this.answeredCounts[result] += 1;
    if (hitTier !== undefined) {
      this.hits[hitTier].inc();
    } else if (collapsed) {
      this.collapsed.inc();
    } else if (staleOnError) {
      this.lastStaleOnError = Date.now();
    }
  }

  /** When an expired image was last served because the upstream failed (epoch ms), or `null`. */
  get lastStaleOnErrorAt(): number | null {
    return this.lastStaleOnError;
  }

  /** Counts an `/image` lookup that ended in an error; `busy` when the fetch cap refused it. */
  failed(busy: boolean): void {
    this.requests.error.inc();
    this.answeredCounts.error += 1;
    if (busy) {
      this.upstreamBusy.inc();
    }
  }

  /** `/image` requests answered since start, by result. */
  get requestCounts(): Readonly<Record<RequestResult, number>> {
    return this.answeredCounts;
  }

  adminAction(action: AdminAction): void {
    this.adminActions[action].inc();
  }

  sharedRejected(kind: SharedRejectedKind): void {
    this.sharedRejections[kind].inc();
  }

  upstreamFetched(outcome: UpstreamOutcome, seconds: number): void {
    this.upstreamFetches[outcome].inc();
    this.upstreamDuration[outcome].observe(seconds);
  }

  /** Observes one HTTP request; `route` is the route template, never the raw URL. */
  httpRequest(
    method: string,
    route: string,
    code: number,
    seconds: number,
  ): void {
    const key = `${method} ${route} ${code}`;
    let child = this.httpDurationChildren.get(key);
    if (!child) {
      child = this.httpDuration.labels(method, route, String(code));
      this.httpDurationChildren.set(key, child);
    }
    child.observe(seconds);
  }

  /**
   * Reports the byte-budgeted tiers at each scrape: their use, budget and entries, and the
   * evictions they counted themselves.
   */
  trackTiers(usage: Record<BudgetedTier, () => TierUsage>): void {
    const tiers = Object.keys(usage) as BudgetedTier[];
    const gauge = (
      name: string,
      help: string,
      read: (u: TierUsage) => number,
    ) =>
      new Gauge({
        name,
        help,
        labelNames: ['tier'],
        registers: [this.registry],
        collect() {
          for (const tier of tiers) {
            this.labels(tier).set(read(usage[tier]()));
          }
        },
      });
    gauge(
      'image_cache_tier_bytes',
      'Bytes a tier holds, as its budget counts them',
      (u) => u.bytes,
    );
    gauge(
      'image_cache_tier_max_bytes',
      "A tier's byte budget (0: the tier is off)",
      (u) => u.maxBytes,
    );
    gauge('image_cache_tier_entries', 'Images a tier holds', (u) => u.entries);
    new Counter({
      name: 'image_cache_evictions_total',
      help: 'Entries a tier evicted to make room',
      labelNames: ['tier'],
      registers: [this.registry],
      collect() {
        // The tiers count their evictions themselves; the counter takes their totals.
        this.reset();
        for (const tier of tiers) {
          this.labels(tier).inc(usage[tier]().evictions);
        }
      },
    });
  }

  /** Reports whether the shared tier can be used, at each scrape; only when one is configured. */
  trackSharedTier(isUp: () => boolean): void {
    new Gauge({
      name: 'image_cache_shared_tier_up',
      help: '1 while the shared tier (Redis) can be used, 0 while it cannot',
      registers: [this.registry],
      collect() {
        this.set(isUp() ? 1 : 0);
      },
    });
  }

  /** The exposition of every metric, in the Prometheus text format. */
  scrape(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

/**
 * One child per label value, looked up once. A counter's children start at 0, so every series
 * exists from the first scrape and `rate()` sees the first increment.
 */
function childrenOf<K extends string, C extends CounterChild | HistogramChild>(
  keys: readonly K[],
  child: (key: K) => C,
): Record<K, C> {
  return Object.fromEntries(
    keys.map((key) => {
      const made = child(key);
      if ('inc' in made) {
        made.inc(0);
      }
      return [key, made];
    }),
  ) as Record<K, C>;
}
