import { readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import {
  CHART_DIR,
  ciValuesFiles,
  findObject,
  helm,
  type Manifest,
  parseManifests,
  render,
  run,
  template,
} from './helm';

const VALIDATOR = join(__dirname, 'validate-manifests.mjs');

interface Probe {
  httpGet: { path: string; port: string };
  failureThreshold?: number;
}
interface Container {
  name: string;
  ports: { name: string; containerPort: number }[];
  envFrom: { configMapRef: { name: string } }[];
  env?: { name: string; value?: string; valueFrom?: unknown }[];
  volumeMounts: { name: string; mountPath: string }[];
  livenessProbe: Probe;
  readinessProbe: Probe;
  startupProbe?: Probe;
  lifecycle?: { preStop: { exec: { command: string[] } } };
  securityContext: Record<string, unknown>;
}
interface PodSpec {
  containers: Container[];
  volumes: {
    name: string;
    emptyDir?: { sizeLimit?: string; medium?: string };
  }[];
  securityContext: Record<string, unknown>;
  automountServiceAccountToken: boolean;
  terminationGracePeriodSeconds: number;
}
interface Deployment extends Manifest {
  spec: {
    replicas?: number;
    template: {
      metadata: { annotations: Record<string, string> };
      spec: PodSpec;
    };
  };
}

interface SchemaNode {
  properties?: Record<string, SchemaNode>;
}

/** The dotted names of the values the schema defines, down to the leaves (open objects included). */
function leafValues(node: SchemaNode, prefix = ''): string[] {
  return Object.entries(node.properties ?? {}).flatMap(([key, child]) =>
    child.properties
      ? leafValues(child, `${prefix}${key}.`)
      : [`${prefix}${key}`],
  );
}

function deploymentOf(objects: Manifest[]): Deployment {
  return findObject(objects, 'Deployment') as Deployment;
}

function configOf(objects: Manifest[]): Record<string, string> {
  return (
    findObject(objects, 'ConfigMap') as Manifest & {
      data: Record<string, string>;
    }
  ).data;
}

function containerOf(objects: Manifest[]): Container {
  return deploymentOf(objects).spec.template.spec.containers[0];
}

/** Validates rendered YAML with kubernetes-models, through the standalone script. */
function validate(yaml: string) {
  return run(process.execPath, [VALIDATOR], yaml);
}

describe('the Helm chart helm/image-cache', () => {
  describe.each(ciValuesFiles().map((file) => [basename(file), file]))(
    'with ci/%s',
    (_name, valuesFile) => {
      it('passes helm lint --strict', async () => {
        const result = await helm(
          'lint',
          '--strict',
          CHART_DIR,
          '--values',
          valuesFile,
        );
        expect(result.stderr + result.stdout).toMatch(/0 chart\(s\) failed/);
        expect(result.code).toBe(0);
      });

      it('renders objects that the Kubernetes API schemas accept', async () => {
        const yaml = await template({}, '--values', valuesFile);
        const objects = parseManifests(yaml);
        expect(objects.map((object) => object.kind)).toEqual(
          expect.arrayContaining(['ConfigMap', 'Deployment', 'Service']),
        );

        const result = await validate(yaml);

        expect(result.stderr).toBe('');
        expect(result.code).toBe(0);
        expect(result.stdout.trim().split('\n')).toHaveLength(objects.length);
      });
    },
  );

  it('the manifest check fails a wrong field type, so the check above can fail', async () => {
    const yaml = (await template()).replace(
      /replicas: 1\n/,
      'replicas: "one"\n',
    );

    const result = await validate(yaml);

    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/Deployment .*replicas must be integer/);
  });

  it('mounts the cache emptyDir, with its sizeLimit, at the path CACHE_DIR names', async () => {
    for (const values of [{}, { cache: { mountPath: '/var/cache/images' } }]) {
      const objects = await render(values);
      const pod = deploymentOf(objects).spec.template.spec;
      const mount = pod.containers[0].volumeMounts.find(
        (m) => m.mountPath === configOf(objects).CACHE_DIR,
      );

      expect(mount).toBeDefined();
      const volume = pod.volumes.find((v) => v.name === mount?.name);
      expect(volume?.emptyDir?.sizeLimit).toBe('1Gi');
      expect(volume?.emptyDir?.medium).toBeUndefined();
    }
    expect(configOf(await render()).CACHE_DIR).toBe('/app/storage');
  });

  it('puts the cache on a tmpfs when cache.emptyDir.medium is Memory', async () => {
    const objects = await render({
      cache: { emptyDir: { medium: 'Memory', sizeLimit: '256Mi' } },
      resources: { limits: { memory: '640Mi' } },
    });

    const cache = deploymentOf(objects).spec.template.spec.volumes.find(
      (v) => v.name === 'cache',
    );
    expect(cache?.emptyDir).toEqual({ medium: 'Memory', sizeLimit: '256Mi' });
  });

  it('sets CACHE_TTL_SECONDS from cache.ttlSeconds, in plain digits', async () => {
    expect(configOf(await render()).CACHE_TTL_SECONDS).toBe('600');
    expect(
      configOf(await render({ cache: { ttlSeconds: 300 } })).CACHE_TTL_SECONDS,
    ).toBe('300');
    // Helm reads numbers as floats; a year must not become "3.1536e+07".
    expect(
      configOf(await render({ cache: { ttlSeconds: 31_536_000 } }))
        .CACHE_TTL_SECONDS,
    ).toBe('31536000');
  });

  it('sets CACHE_DISK_MAX_SIZE to 90% of the emptyDir sizeLimit unless cache.diskMaxSize is set', async () => {
    const diskMaxSize = async (values: object) =>
      configOf(await render(values)).CACHE_DISK_MAX_SIZE;

    expect(await diskMaxSize({})).toBe(String(Math.floor(0.9 * 2 ** 30)));
    expect(
      await diskMaxSize({ cache: { emptyDir: { sizeLimit: '500M' } } }),
    ).toBe('450000000');
    expect(
      await diskMaxSize({ cache: { emptyDir: { sizeLimit: '256Mi' } } }),
    ).toBe(String(Math.floor(0.9 * 256 * 2 ** 20)));
    expect(await diskMaxSize({ cache: { diskMaxSize: '100Mi' } })).toBe(
      '100Mi',
    );
    expect(configOf(await render()).CACHE_MEMORY_MAX_SIZE).toBe('64Mi');
    expect(
      configOf(
        await render({
          cache: { memoryMaxSize: '128Mi' },
          resources: { limits: { memory: '512Mi' } },
        }),
      ).CACHE_MEMORY_MAX_SIZE,
    ).toBe('128Mi');
  });

  it('passes the other settings through the ConfigMap the container reads', async () => {
    const objects = await render({
      cache: {
        staleIfErrorSeconds: 0,
        prefetchSeconds: 60,
        staleWhileRevalidateSeconds: 30,
      },
      upstream: {
        baseUrl: 'http://mirror.internal',
        timeoutMs: 2500,
        allowedRedirectHosts: ['images.mirror.internal', 'cdn.example.com'],
      },
      server: { maxConnections: 200, clientIdleTimeoutMs: 10000 },
      imageSize: { width: 800, height: 600 },
    });
    const config = configOf(objects);

    expect(config).toMatchObject({
      HOST: '0.0.0.0',
      PORT: '3000',
      CACHE_STALE_IF_ERROR_SECONDS: '0',
      CACHE_PREFETCH_SECONDS: '60',
      CACHE_STALE_WHILE_REVALIDATE_SECONDS: '30',
      PICSUM_BASE_URL: 'http://mirror.internal',
      UPSTREAM_TIMEOUT_MS: '2500',
      UPSTREAM_MAX_BYTES: '20971520',
      UPSTREAM_MAX_CONCURRENCY: '8',
      UPSTREAM_ALLOWED_REDIRECT_HOSTS: 'images.mirror.internal,cdn.example.com',
      MAX_CONNECTIONS: '200',
      CLIENT_IDLE_TIMEOUT_MS: '10000',
      CACHE_CLEANUP_INTERVAL_SECONDS: '600',
      READINESS_DISK_CHECK_INTERVAL_MS: '5000',
      IMAGE_WIDTH: '800',
      IMAGE_HEIGHT: '600',
    });
    expect(containerOf(objects).envFrom).toEqual([
      {
        configMapRef: { name: findObject(objects, 'ConfigMap').metadata.name },
      },
    ]);
    const defaults = configOf(await render());
    expect(defaults).not.toHaveProperty('CACHE_STALE_IF_ERROR_SECONDS');
    expect(defaults).not.toHaveProperty('IMAGE_HEIGHT');
    // The service's own default (the base URL's host plus Picsum's image host) applies.
    expect(defaults).not.toHaveProperty('UPSTREAM_ALLOWED_REDIRECT_HOSTS');
    expect(defaults).toMatchObject({
      UPSTREAM_TIMEOUT_MS: '30000',
      MAX_CONNECTIONS: '1024',
      CLIENT_IDLE_TIMEOUT_MS: '30000',
    });
  });

  it('probes /health/live and /health/ready on the http port the service listens on', async () => {
    const objects = await render();
    const container = containerOf(objects);

    expect(container.ports).toEqual([
      { name: 'http', containerPort: 3000, protocol: 'TCP' },
    ]);
    expect(configOf(objects).PORT).toBe('3000');
    expect(container.livenessProbe.httpGet).toEqual({
      path: '/health/live',
      port: 'http',
    });
    expect(container.readinessProbe.httpGet).toEqual({
      path: '/health/ready',
      port: 'http',
    });
    expect(container.livenessProbe.failureThreshold).toBe(3);
    expect(container.readinessProbe.failureThreshold).toBe(2);
    expect(container.startupProbe).toBeUndefined();

    const started = containerOf(
      await render({ startupProbe: { enabled: true, failureThreshold: 7 } }),
    );
    expect(started.startupProbe).toEqual(
      expect.objectContaining({
        httpGet: { path: '/health/live', port: 'http' },
        failureThreshold: 7,
      }),
    );
    expect(started.startupProbe).not.toHaveProperty('enabled');
  });

  it('runs hardened by default: uid 1000, read-only root, no capabilities, no token', async () => {
    const objects = await render();
    const pod = deploymentOf(objects).spec.template.spec;
    const container = pod.containers[0];

    expect(pod.securityContext).toEqual(
      expect.objectContaining({
        runAsNonRoot: true,
        runAsUser: 1000,
        seccompProfile: { type: 'RuntimeDefault' },
      }),
    );
    expect(container.securityContext).toEqual({
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ['ALL'] },
    });
    const tmp = container.volumeMounts.find((m) => m.mountPath === '/tmp');
    expect(
      pod.volumes.find((v) => v.name === tmp?.name)?.emptyDir,
    ).toBeDefined();
    expect(pod.automountServiceAccountToken).toBe(false);
    expect(
      (
        findObject(objects, 'ServiceAccount') as Manifest & {
          automountServiceAccountToken: boolean;
        }
      ).automountServiceAccountToken,
    ).toBe(false);
  });

  it('pauses in preStop so endpoints drain, inside the grace period', async () => {
    const pod = deploymentOf(await render()).spec.template.spec;

    expect(pod.containers[0].lifecycle?.preStop.exec.command).toEqual([
      'sleep',
      '5',
    ]);
    expect(pod.terminationGracePeriodSeconds).toBe(30);
    const noPause = deploymentOf(await render({ preStopSleepSeconds: 0 }));
    expect(noPause.spec.template.spec.containers[0].lifecycle).toBeUndefined();
  });

  it('changes the checksum/config annotation when the TTL changes, and only then', async () => {
    const checksum = async (values: object) =>
      deploymentOf(await render(values)).spec.template.metadata.annotations[
        'checksum/config'
      ];

    const before = await checksum({});
    expect(before).toMatch(/^[0-9a-f]{64}$/);
    expect(await checksum({})).toBe(before);
    expect(await checksum({ replicaCount: 3 })).toBe(before);
    expect(await checksum({ cache: { ttlSeconds: 300 } })).not.toBe(before);
  });

  it('leaves replicas to the autoscaler when autoscaling is on', async () => {
    const objects = await render({
      autoscaling: { enabled: true, minReplicas: 3, maxReplicas: 6 },
    });

    expect(deploymentOf(objects).spec.replicas).toBeUndefined();
    expect(findObject(objects, 'HorizontalPodAutoscaler')).toMatchObject({
      spec: { minReplicas: 3, maxReplicas: 6 },
    });
    expect(deploymentOf(await render()).spec.replicas).toBe(1);
  });

  it('adds extraEnv after the ConfigMap, so it wins', async () => {
    const container = containerOf(
      await render({ extraEnv: [{ name: 'SHUTDOWN_DRAIN_MS', value: '100' }] }),
    );

    expect(container.env).toEqual([
      { name: 'SHUTDOWN_DRAIN_MS', value: '100' },
    ]);
  });

  it('configures the shared tier from sharedCache.redis: a URL or cluster seeds in the ConfigMap', async () => {
    const standalone = configOf(
      await render({
        sharedCache: {
          redis: { url: 'redis://redis.cache:6379/2', keyPrefix: 'blue:' },
        },
      }),
    );
    const cluster = configOf(
      await render({
        sharedCache: {
          redis: {
            clusterUrls: [
              'redis://node-0.redis:6379',
              'redis://node-1.redis:6379',
            ],
            commandTimeoutMs: 250,
          },
        },
      }),
    );

    expect(standalone).toMatchObject({
      REDIS_URL: 'redis://redis.cache:6379/2',
      REDIS_KEY_PREFIX: 'blue:',
      REDIS_COMMAND_TIMEOUT_MS: '500',
    });
    expect(standalone.REDIS_CLUSTER_URLS).toBeUndefined();
    expect(cluster).toMatchObject({
      REDIS_CLUSTER_URLS: 'redis://node-0.redis:6379,redis://node-1.redis:6379',
      REDIS_COMMAND_TIMEOUT_MS: '250',
    });
    expect(cluster.REDIS_URL).toBeUndefined();
    expect(configOf(await render()).REDIS_URL).toBeUndefined();
  });

  it('reads a Redis URL and password with credentials from an existing Secret, never from the ConfigMap', async () => {
    const objects = await render({
      sharedCache: {
        redis: {
          existingSecret: 'redis-credentials',
          urlKey: 'url',
          passwordKey: 'password',
        },
      },
      extraEnv: [{ name: 'SHUTDOWN_DRAIN_MS', value: '100' }],
    });
    const fromSecret = (key: string) => ({
      secretKeyRef: { name: 'redis-credentials', key },
    });

    expect(containerOf(objects).env).toEqual([
      { name: 'REDIS_PASSWORD', valueFrom: fromSecret('password') },
      { name: 'REDIS_URL', valueFrom: fromSecret('url') },
      { name: 'SHUTDOWN_DRAIN_MS', value: '100' },
    ]);
    expect(configOf(objects).REDIS_URL).toBeUndefined();
  });

  it('keeps the admin token in a Secret: one the chart makes from admin.token, or admin.existingSecret; never in the ConfigMap', async () => {
    const token = 'a'.repeat(40);
    const made = await render({ admin: { token } });
    const existing = await render({
      admin: { existingSecret: 'image-cache-admin', tokenKey: 'bearer' },
    });
    const off = await render();
    const secret = findObject(made, 'Secret') as Manifest & {
      data: Record<string, string>;
    };

    expect(secret.metadata.name).toMatch(/-admin$/);
    expect(Buffer.from(secret.data.token, 'base64').toString()).toBe(token);
    expect(containerOf(made).env).toEqual([
      {
        name: 'ADMIN_TOKEN',
        valueFrom: {
          secretKeyRef: { name: secret.metadata.name, key: 'token' },
        },
      },
    ]);
    expect(JSON.stringify(configOf(made))).not.toContain(token);
    expect(
      deploymentOf(made).spec.template.metadata.annotations,
    ).toHaveProperty('checksum/admin-secret');
    expect(existing.some((object) => object.kind === 'Secret')).toBe(false);
    expect(containerOf(existing).env).toEqual([
      {
        name: 'ADMIN_TOKEN',
        valueFrom: {
          secretKeyRef: { name: 'image-cache-admin', key: 'bearer' },
        },
      },
    ]);
    expect(containerOf(off).env).toBeUndefined();
  });

  it('refuses a memory limit below the memory tier plus what the service itself needs, saying what would fit', async () => {
    await expect(
      template({ resources: { limits: { memory: '150Mi' } } }),
    ).rejects.toThrow(
      "resources.limits.memory 150Mi (150 MiB) is below what the pod needs: cache.memoryMaxSize 64Mi plus the service's own 320 MiB, 384 MiB in all. Raise resources.limits.memory to at least 384Mi or lower cache.memoryMaxSize.",
    );
    await expect(
      template({
        cache: { memoryMaxSize: '1Gi' },
        resources: { limits: { memory: '1.1Gi' } },
      }),
    ).rejects.toThrow('at least 1344Mi');
    await expect(
      template({ resources: { limits: { memory: 'lots' } } }),
    ).rejects.toThrow(
      'resources.limits.memory "lots" is not a number of bytes with an optional k, M, G, T, Ki, Mi, Gi or Ti suffix',
    );
  });

  it('counts a tmpfs emptyDir against the memory limit too', async () => {
    await expect(
      template({ cache: { emptyDir: { medium: 'Memory', sizeLimit: '1Gi' } } }),
    ).rejects.toThrow("plus the tmpfs emptyDir's 1Gi, 1408 MiB in all");
    await expect(
      template({
        cache: { emptyDir: { medium: 'Memory', sizeLimit: '1Gi' } },
        resources: { limits: { memory: '1408Mi' } },
      }),
    ).resolves.toContain('kind: Deployment');
  });

  it('renders with the default memory limit, one that meets the need exactly, or none', async () => {
    await expect(template()).resolves.toContain('kind: Deployment');
    await expect(
      template({ resources: { limits: { memory: '384Mi' } } }),
    ).resolves.toContain('kind: Deployment');
    await expect(template({ resources: { limits: null } })).resolves.toContain(
      'kind: Deployment',
    );
  });

  it('refuses a prefetch window as long as the TTL', async () => {
    await expect(
      template({ cache: { ttlSeconds: 60, prefetchSeconds: 60 } }),
    ).rejects.toThrow(
      'cache.prefetchSeconds (60) must be below cache.ttlSeconds (60), or 0 to turn prefetch off',
    );
  });

  it.each([
    [
      'an admin token under 32 characters',
      { admin: { token: 'short-token' } },
      /admin\/token/,
    ],
    [
      'both admin.token and admin.existingSecret',
      { admin: { token: 'b'.repeat(32), existingSecret: 'admin' } },
      /admin.*'not' failed/s,
    ],
    ['cache.ttlSeconds 0', { cache: { ttlSeconds: 0 } }, /ttlSeconds.*minimum/],
    [
      'cache.ttlSeconds "abc"',
      { cache: { ttlSeconds: 'abc' } },
      /ttlSeconds.*want integer/,
    ],
    ['an unknown key in cache', { cache: { tll: 300 } }, /'tll' not allowed/],
    ['an unknown top-level key', { replicas: 2 }, /'replicas' not allowed/],
    [
      'a medium other than Memory',
      { cache: { emptyDir: { medium: 'Disk' } } },
      /medium/,
    ],
    [
      'a sizeLimit that is not a quantity',
      { cache: { emptyDir: { sizeLimit: 'lots' } } },
      /sizeLimit/,
    ],
    [
      'a fractional sizeLimit, which the disk budget cannot be derived from',
      { cache: { emptyDir: { sizeLimit: '1.5Gi' } } },
      /sizeLimit/,
    ],
    [
      'a memoryMaxSize in the wrong unit',
      { cache: { memoryMaxSize: '64MB' } },
      /memoryMaxSize/,
    ],
    [
      'a redirect host written as a URL',
      { upstream: { allowedRedirectHosts: ['https://cdn.example.com'] } },
      /allowedRedirectHosts/,
    ],
    [
      'both a Redis URL and Redis Cluster seeds',
      {
        sharedCache: {
          redis: {
            url: 'redis://redis:6379',
            clusterUrls: ['redis://node-0:6379'],
          },
        },
      },
      /sharedCache\/redis.*'not' failed/s,
    ],
    [
      'a Redis URL that is not redis:// or rediss://',
      { sharedCache: { redis: { url: 'http://redis:6379' } } },
      /sharedCache\/redis\/url/,
    ],
    [
      'a Secret key without the Secret',
      { sharedCache: { redis: { passwordKey: 'password' } } },
      /sharedCache\/redis\/existingSecret/,
    ],
    [
      'a client idle timeout under a second',
      { server: { clientIdleTimeoutMs: 10 } },
      /clientIdleTimeoutMs/,
    ],
  ])(
    'rejects %s through values.schema.json',
    async (_name, values, message) => {
      await expect(template(values)).rejects.toThrow(message);
    },
  );

  it('documents every value in values.yaml with a comment that begins with its name', () => {
    const schema = JSON.parse(
      readFileSync(join(CHART_DIR, 'values.schema.json'), 'utf8'),
    ) as SchemaNode;
    const valuesYaml = readFileSync(join(CHART_DIR, 'values.yaml'), 'utf8');
    const comments = new Set(
      valuesYaml
        .split('\n')
        .map((line) => /^\s*# ([A-Za-z.]+) /.exec(line)?.[1])
        .filter((name) => name !== undefined),
    );

    const values = leafValues(schema).filter((name) => name !== 'global');

    expect(values.length).toBeGreaterThan(40);
    expect(values.filter((name) => !comments.has(name))).toEqual([]);
  });
});
