import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { FakePicsum } from '../fake-picsum/fake-picsum.server';
import { PrometheusServer } from '../support/prometheus-server';
import { parseExposition } from '../support/prometheus-text';
import { describeWithRedis, RedisServer } from '../support/redis-server';
import { ServiceProcess } from '../support/service-process';
import { makeCacheDir } from '../support/test-app';
import {
  CHART_DIR,
  type Manifest,
  parseManifests,
  render,
  run,
  template,
} from './helm';

interface Rule {
  record?: string;
  alert?: string;
  expr: string;
  for?: string;
}
interface RuleGroups {
  groups: { name: string; rules: Rule[] }[];
}
interface PrometheusRule extends Manifest {
  spec: RuleGroups;
}

const MONITORING_API = ['--api-versions', 'monitoring.coreos.com/v1'];
const ALL_ON = {
  metrics: {
    serviceMonitor: { enabled: true, additionalLabels: { release: 'kps' } },
    prometheusRule: { enabled: true },
    grafanaDashboard: { enabled: true },
  },
};

function kinds(objects: Manifest[]): string[] {
  return objects.map((object) => object.kind);
}

/** The rule groups of the chart's PrometheusRule, as a rules file Prometheus and promtool read. */
async function renderedRules(values: object = ALL_ON): Promise<RuleGroups> {
  const objects = parseManifests(await template(values, ...MONITORING_API));
  const rule = objects.find(
    (object) => object.kind === 'PrometheusRule',
  ) as PrometheusRule;
  return rule.spec;
}

function promqlOf(rules: RuleGroups): string[] {
  return rules.groups.flatMap((group) => group.rules.map((rule) => rule.expr));
}

function dashboardQueries(): string[] {
  const dashboard = JSON.parse(
    readFileSync(join(CHART_DIR, 'dashboards', 'image-cache.json'), 'utf8'),
  ) as {
    panels: { targets: { expr: string }[] }[];
    templating: { list: { query?: unknown }[] };
  };
  return [
    ...dashboard.panels.flatMap((panel) =>
      panel.targets.map((target) => target.expr),
    ),
    ...dashboard.templating.list.flatMap((variable) =>
      typeof variable.query === 'string' ? [variable.query] : [],
    ),
  ];
}

/** The metric names a PromQL expression reads (recording rules' own names excluded). */
function metricNamesIn(promql: string): string[] {
  const names =
    promql.match(/\b(?:image_cache_[a-z_]+|http_request_[a-z_]+)\b/g) ?? [];
  return [...new Set(names)];
}

async function withFiles<T>(
  files: Record<string, string>,
  use: (dir: string) => Promise<T>,
) {
  const dir = mkdtempSync(join(tmpdir(), 'image-cache-rules-'));
  try {
    for (const [name, content] of Object.entries(files)) {
      writeFileSync(join(dir, name), content);
    }
    return await use(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('the chart watches the service: ServiceMonitor, PrometheusRule, dashboard, Ingress', () => {
  it('renders the ServiceMonitor and PrometheusRule only when enabled, and only with the monitoring API or force', async () => {
    const off = await render();
    const noApi = parseManifests(await template(ALL_ON));
    const withApi = parseManifests(await template(ALL_ON, ...MONITORING_API));
    const forced = await render({
      metrics: {
        serviceMonitor: { enabled: true, force: true },
        prometheusRule: { enabled: true, force: true },
      },
    });

    expect(kinds(off)).not.toContain('ServiceMonitor');
    expect(kinds(off)).not.toContain('PrometheusRule');
    expect(kinds(noApi)).not.toContain('ServiceMonitor');
    expect(kinds(noApi)).not.toContain('PrometheusRule');
    expect(kinds(withApi)).toEqual(
      expect.arrayContaining(['ServiceMonitor', 'PrometheusRule']),
    );
    expect(kinds(forced)).toEqual(
      expect.arrayContaining(['ServiceMonitor', 'PrometheusRule']),
    );
    const monitor = withApi.find(
      (object) => object.kind === 'ServiceMonitor',
    ) as Manifest & {
      spec: { endpoints: { port: string; path: string; interval: string }[] };
    };
    expect(monitor.metadata.labels).toMatchObject({ release: 'kps' });
    expect(monitor.spec.endpoints).toEqual([
      { port: 'http', path: '/metrics', interval: '30s', scrapeTimeout: '10s' },
    ]);
  });

  it('puts the dashboard in a ConfigMap labelled grafana_dashboard only when enabled', async () => {
    const off = await render();
    const on = await render({
      metrics: { grafanaDashboard: { enabled: true } },
    });

    const dashboards = (objects: Manifest[]) =>
      objects.filter(
        (object) => object.metadata.labels?.grafana_dashboard === '1',
      );
    expect(dashboards(off)).toEqual([]);
    const [configMap] = dashboards(on) as (Manifest & {
      data: Record<string, string>;
    })[];
    const dashboard = JSON.parse(configMap.data['image-cache.json']) as {
      uid: string;
    };
    expect(dashboard.uid).toBe('image-cache');
  });

  it('routes only /image (and the status page when asked) through the Ingress, never /metrics, /health or /admin, and refuses other paths', async () => {
    const objects = await render({
      ingress: {
        enabled: true,
        hosts: [{ host: 'a.example.com' }, { host: 'b.example.com' }],
      },
    });
    const ingress = objects.find(
      (object) => object.kind === 'Ingress',
    ) as Manifest & {
      spec: { rules: { host: string; http: { paths: { path: string }[] } }[] };
    };
    const paths = ingress.spec.rules.flatMap((rule) =>
      rule.http.paths.map((path) => path.path),
    );

    expect(paths).toEqual(['/image', '/image']);
    const withStatusPage = (
      await render({
        admin: { token: 'c'.repeat(32) },
        ingress: {
          enabled: true,
          statusPage: true,
          hosts: [{ host: 'a.example.com' }],
        },
      })
    ).find((object) => object.kind === 'Ingress') as Manifest & {
      spec: {
        rules: { http: { paths: { path: string; pathType: string }[] } }[];
      };
    };
    expect(
      withStatusPage.spec.rules[0].http.paths.map(
        ({ path, pathType }) => `${pathType} ${path}`,
      ),
    ).toEqual([
      'Prefix /image',
      'Exact /',
      'Exact /status',
      'Exact /favicon.ico',
    ]);
    await expect(
      template({
        ingress: {
          enabled: true,
          hosts: [{ host: 'a.example.com', paths: [{ path: '/metrics' }] }],
        },
      }),
    ).rejects.toThrow(/paths/);
  });

  it('passes promtool check rules on the rendered PrometheusRule', async () => {
    const rules = await renderedRules();

    const result = await withFiles({ 'rules.yaml': stringify(rules) }, (dir) =>
      run('promtool', ['check', 'rules', join(dir, 'rules.yaml')]),
    );

    expect(result.stderr).toBe('');
    expect(result.stdout).toMatch(/SUCCESS: 7 rules found/);
    expect(result.code).toBe(0);
  });

  it('fires each alert on a synthetic series (promtool test rules)', async () => {
    const rules = await renderedRules();
    const series = (name: string, labels: string, values: string) => ({
      series: `${name}{job="image-cache",namespace="images",pod="p1"${labels}}`,
      values,
    });
    const tests = {
      rule_files: ['rules.yaml'],
      evaluation_interval: '1m',
      tests: [
        {
          interval: '1m',
          input_series: [
            // 1 hit in 10 requests, with stale answers all along.
            series('image_cache_requests_total', ',result="hit"', '0+1x40'),
            series('image_cache_requests_total', ',result="miss"', '0+6x40'),
            series('image_cache_requests_total', ',result="stale"', '0+3x40'),
            // Half of the upstream fetches fail.
            series(
              'image_cache_upstream_fetches_total',
              ',outcome="success"',
              '0+3x40',
            ),
            series(
              'image_cache_upstream_fetches_total',
              ',outcome="timeout"',
              '0+3x40',
            ),
            series('image_cache_tier_bytes', ',tier="disk"', '990x40'),
            series('image_cache_tier_max_bytes', ',tier="disk"', '1000x40'),
            series('image_cache_shared_tier_up', '', '0x40'),
          ],
          alert_rule_test: [
            'ImageCacheHitRatioLow',
            'ImageCacheServingStale',
            'ImageCacheUpstreamErrors',
            'ImageCacheDiskNearBudget',
            'ImageCacheSharedTierDown',
          ].flatMap((alertname) => [
            // Not yet at 2 minutes: each alert waits its `for`.
            { eval_time: '2m', alertname, exp_alerts: [] },
            {
              eval_time: '30m',
              alertname,
              exp_alerts: [EXPECTED_ALERTS[alertname]],
            },
          ]),
          promql_expr_test: [
            {
              // Rounded: promtool compares floats exactly, and 1/10 by rates is 0.09999….
              expr: 'round(image_cache:hit_ratio:rate5m, 0.001)',
              eval_time: '10m',
              exp_samples: [
                {
                  labels: '{job="image-cache",namespace="images"}',
                  value: 0.1,
                },
              ],
            },
          ],
        },
      ],
    };

    const result = await withFiles(
      { 'rules.yaml': stringify(rules), 'tests.yaml': stringify(tests) },
      (dir) => run('promtool', ['test', 'rules', join(dir, 'tests.yaml')]),
    );

    expect(result.stdout + result.stderr).toMatch(/SUCCESS/);
    expect(result.code).toBe(0);
  });

  it('promtool test rules fails when an alert does not fire, so the check above can fail', async () => {
    const rules = await renderedRules();
    const tests = {
      rule_files: ['rules.yaml'],
      tests: [
        {
          interval: '1m',
          input_series: [
            {
              series:
                'image_cache_shared_tier_up{job="image-cache",namespace="images",pod="p1"}',
              values: '1x40',
            },
          ],
          alert_rule_test: [
            {
              eval_time: '30m',
              alertname: 'ImageCacheSharedTierDown',
              exp_alerts: [EXPECTED_ALERTS.ImageCacheSharedTierDown],
            },
          ],
        },
      ],
    };

    const result = await withFiles(
      { 'rules.yaml': stringify(rules), 'tests.yaml': stringify(tests) },
      (dir) => run('promtool', ['test', 'rules', join(dir, 'tests.yaml')]),
    );

    expect(result.code).not.toBe(0);
  });

  describeWithRedis()(
    'against the real service (dist/main.js) and a real Prometheus',
    () => {
      const upstream = new FakePicsum();
      let redis: RedisServer;
      const started: { service: ServiceProcess; cacheDir: string }[] = [];

      /** A fresh service process, so that every counter starts at 0. */
      async function startService(): Promise<string> {
        const cacheDir = await makeCacheDir();
        const { service, url } = await ServiceProcess.start({
          PICSUM_BASE_URL: upstream.baseUrl,
          CACHE_DIR: cacheDir,
          REDIS_URL: redis.url,
        });
        started.push({ service, cacheDir });
        return url;
      }

      beforeAll(async () => {
        await upstream.start();
        redis = await RedisServer.start();
      });

      afterEach(async () => {
        for (const { service, cacheDir } of started.splice(0)) {
          service.kill('SIGKILL');
          await service.exited;
          rmSync(cacheDir, { recursive: true, force: true });
        }
      });

      afterAll(async () => {
        await redis?.stop();
        await upstream.stop();
      });

      it('serves every metric the dashboard and the rules read (no dead panels)', async () => {
        const url = await startService();
        await fetch(`${url}/image`).then((reply) => reply.arrayBuffer());
        const scraped = new Set(
          parseExposition(await (await fetch(`${url}/metrics`)).text()).map(
            (sample) => sample.name,
          ),
        );
        const used = [
          ...dashboardQueries(),
          ...promqlOf(await renderedRules()),
        ].flatMap(metricNamesIn);

        expect(used.length).toBeGreaterThan(10);
        expect([...new Set(used)].filter((name) => !scraped.has(name))).toEqual(
          [],
        );
      });

      it('is scraped by Prometheus, which reads back the exact request counts and the hit-ratio recording rule', async () => {
        const url = await startService();
        const rules = await renderedRules();
        const prometheus = await PrometheusServer.start({
          job: 'image-cache',
          targets: [new URL(url).host],
          rules: stringify(rules),
        });
        try {
          // A first scrape before the requests, so that rate() sees them all as increases.
          await prometheus.waitFor(
            'image_cache_requests_total{result="hit"}',
            (samples) => samples.length === 1,
          );
          const before = await requestCounts(prometheus);
          await fetch(`${url}/image?width=640&height=480`).then((reply) =>
            reply.arrayBuffer(),
          );
          for (let hit = 0; hit < 5; hit++) {
            await fetch(`${url}/image?width=640&height=480`).then((reply) =>
              reply.arrayBuffer(),
            );
          }

          const after = await prometheus.waitFor(
            'sum by (result) (image_cache_requests_total{job="image-cache"})',
            (samples) =>
              countOf(samples, 'hit') - before.hit === 5 &&
              countOf(samples, 'miss') - before.miss === 1,
          );
          // Both series come from the same scrapes, so rate()'s extrapolation cancels out: every
          // increase since Prometheus started is in the 5 minutes, 5 hits of 6 requests.
          const ratio = await prometheus.waitFor(
            'image_cache:hit_ratio:rate5m{job="image-cache"}',
            (samples) =>
              samples.length === 1 && Math.abs(samples[0].value - 5 / 6) < 1e-9,
          );
          const up = await prometheus.query(
            'image_cache_shared_tier_up{job="image-cache"}',
          );

          expect(countOf(after, 'stale')).toBe(0);
          expect(countOf(after, 'error')).toBe(0);
          expect(ratio[0].value).toBeCloseTo(5 / 6, 9);
          expect(up.map((sample) => sample.value)).toEqual([1]);
          process.stdout.write(
            `Prometheus read back: ${JSON.stringify(after.map((s) => [s.metric.result, s.value]))}, hit ratio ${ratio[0].value}\n`,
          );
        } finally {
          await prometheus.stop();
        }
      });
    },
  );
});

/** What each alert carries when it fires on the synthetic series of the test above. */
const EXPECTED_ALERTS: Record<
  string,
  {
    exp_labels: Record<string, string>;
    exp_annotations: Record<string, string>;
  }
> = {
  ImageCacheHitRatioLow: {
    exp_labels: {
      severity: 'warning',
      job: 'image-cache',
      namespace: 'images',
    },
    exp_annotations: {
      summary: 'Fewer than 50% of image requests are cache hits',
      description:
        'The hit ratio of image-cache in images is 10%: most requests go to the upstream (many variants, a TTL too short, or budgets too small).',
    },
  },
  ImageCacheServingStale: {
    exp_labels: {
      severity: 'warning',
      job: 'image-cache',
      namespace: 'images',
    },
    exp_annotations: {
      summary: 'Stale images are being served because the upstream fails',
      description:
        'image-cache in images has served stale images for 5 minutes: the upstream fails or times out (see image_cache_upstream_fetches_total by outcome).',
    },
  },
  ImageCacheUpstreamErrors: {
    exp_labels: {
      severity: 'warning',
      job: 'image-cache',
      namespace: 'images',
    },
    exp_annotations: {
      summary: 'More than 10% of upstream fetches fail',
      description:
        '50% of the upstream fetches of image-cache in images failed over 5 minutes.',
    },
  },
  ImageCacheDiskNearBudget: {
    exp_labels: {
      severity: 'info',
      job: 'image-cache',
      namespace: 'images',
      pod: 'p1',
      tier: 'disk',
    },
    exp_annotations: {
      summary: 'The disk tier is above 95% of its budget',
      description:
        'p1 holds 99% of its disk budget: it evicts to make room (image_cache_evictions_total); raise cache.diskMaxSize if hits suffer.',
    },
  },
  ImageCacheSharedTierDown: {
    exp_labels: {
      severity: 'warning',
      job: 'image-cache',
      namespace: 'images',
      pod: 'p1',
    },
    exp_annotations: {
      summary: 'A replica cannot use the shared tier (Redis)',
      description:
        'p1 has not reached Redis for 5 minutes: it serves from its own tiers, and replicas may fetch and serve different images.',
    },
  },
};

function countOf(
  samples: { metric: Record<string, string>; value: number }[],
  result: string,
): number {
  return samples.find((sample) => sample.metric.result === result)?.value ?? 0;
}

async function requestCounts(
  prometheus: PrometheusServer,
): Promise<{ hit: number; miss: number }> {
  const samples = await prometheus.query(
    'sum by (result) (image_cache_requests_total{job="image-cache"})',
  );
  return { hit: countOf(samples, 'hit'), miss: countOf(samples, 'miss') };
}
