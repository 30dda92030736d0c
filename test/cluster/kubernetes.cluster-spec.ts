import { spawn } from 'node:child_process';
import { FakePicsum } from '../fake-picsum/fake-picsum.server';
import { parseExposition } from '../support/prometheus-text';
import { RedisServer } from '../support/redis-server';
import {
  CHART_DIR,
  cluster,
  containerId,
  ctr,
  getImage,
  helm,
  type ImageReply,
  isReady,
  kubectl,
  kubectlJson,
  onlyReadyPod,
  type Pod,
  podsOf,
  restartCount,
  run,
  valuesFile,
  waitFor,
} from './cluster';

/**
 * The chart installed with `helm install` into a real single-node Kubernetes (scripts/cluster,
 * started by `npm run test:cluster`): a real kubelet probes the pod, restarts its container,
 * replaces the pod, enforces the emptyDir's sizeLimit; kube-proxy routes the Service and CoreDNS
 * resolves its name. The fake Picsum and Redis run on the host, on the node's bridge address,
 * which the pods reach. The tests run in order and share one release, as an operator's actions
 * would follow one another.
 */
const RELEASE = 'image-cache';
const SERVICE = 'image-cache';
const CONTAINER_PORT = 3000;
const GRACE_SECONDS = 20;
const PRE_STOP_SECONDS = 2;
const DRAIN_MS = 3000;
const [IMAGE_REPOSITORY, IMAGE_TAG] = splitImage(cluster.image);

const fake = new FakePicsum();
let serviceUrl = '';

function splitImage(image: string): [string, string] {
  const colon = image.lastIndexOf(':');
  return [image.slice(0, colon), image.slice(colon + 1)];
}

/** Prints what a test saw, for the run's log (and the closing note of a change). */
function evidence(line: string): void {
  process.stdout.write(`[cluster evidence] ${line}\n`);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The values every release of these tests uses; each test adds its own on top. */
function baseValues(): object {
  return {
    image: {
      repository: IMAGE_REPOSITORY,
      tag: IMAGE_TAG,
      // The node pulls nothing: test.sh imported the image into its containerd.
      pullPolicy: 'Never',
    },
    upstream: { baseUrl: fake.baseUrl, retryAfterSeconds: 2 },
    terminationGracePeriodSeconds: GRACE_SECONDS,
    preStopSleepSeconds: PRE_STOP_SECONDS,
    extraEnv: [{ name: 'SHUTDOWN_DRAIN_MS', value: String(DRAIN_MS) }],
    // Probes tighter than the defaults, so that a hung process is restarted within seconds;
    // the startup probe holds that liveness probe back while Node starts on a busy machine.
    startupProbe: { enabled: true, periodSeconds: 1, failureThreshold: 60 },
    livenessProbe: { periodSeconds: 2, timeoutSeconds: 1, failureThreshold: 2 },
    readinessProbe: {
      periodSeconds: 1,
      timeoutSeconds: 1,
      failureThreshold: 1,
    },
    // The cluster has no monitoring.coreos.com CRDs: the chart must leave these out.
    metrics: {
      serviceMonitor: { enabled: true },
      prometheusRule: { enabled: true },
    },
  };
}

/** `helm upgrade --install --wait` with the base values and `overrides` on top. */
async function deploy(name: string, overrides: object = {}): Promise<void> {
  await helm(
    'upgrade',
    '--install',
    RELEASE,
    CHART_DIR,
    '--values',
    valuesFile('base', baseValues()),
    '--values',
    valuesFile(name, overrides),
    '--wait',
    '--timeout',
    '180s',
  );
}

/** Waits for a release of one pod whose uid differs from `oldUid`, ready. */
function replacementOf(oldUid: string): Promise<Pod> {
  return waitFor(`a ready pod replacing ${oldUid}`, async () => {
    const pods = await podsOf(RELEASE);
    return pods.length === 1 &&
      pods[0].metadata.uid !== oldUid &&
      isReady(pods[0])
      ? pods[0]
      : undefined;
  });
}

/** The pod's own address, bypassing the Service. */
function podUrl(pod: Pod): string {
  return `http://${pod.status.podIP}:${CONTAINER_PORT}`;
}

async function reloadPod(pod: Pod): Promise<Pod> {
  return kubectlJson<Pod>('get', 'pod', pod.metadata.name);
}

/** Waits for the pod's container to have restarted once more, in the same pod, and be ready. */
async function restartedInPlace(pod: Pod): Promise<Pod> {
  const restarted = await waitFor(
    'the container restarted and ready',
    async () => {
      const current = await reloadPod(pod);
      return restartCount(current) === restartCount(pod) + 1 && isReady(current)
        ? current
        : undefined;
    },
  );
  await untilServiceRoutesTo([restarted]);
  return restarted;
}

/**
 * Waits until kube-proxy's own rules send the Service to `pods` alone. kube-proxy follows the
 * EndpointSlice a moment later; until then a request to the ClusterIP matches no rule and
 * leaves the node by the default route, where this machine's network answers port 80 with a
 * 404 of its own (CI saw it after the SIGKILL restart, twice).
 */
async function untilServiceRoutesTo(pods: Pod[]): Promise<void> {
  const podIps = pods.map((pod) => pod.status.podIP).sort();
  await waitFor(
    `kube-proxy to route the Service to ${podIps.join(', ')}`,
    async () =>
      (await kubeProxyBackends()).join() === podIps.join() ? true : undefined,
  );
}

/** The next request through the Service is a HIT of `cached`, and the upstream was not asked. */
async function expectSameImageWithoutFetch(
  cached: ImageReply,
  fetchesBefore: number,
): Promise<ImageReply> {
  const after = await getImage(serviceUrl);
  expect(after).toMatchObject({ status: 200, cache: 'HIT', etag: cached.etag });
  expect(fake.fetches).toBe(fetchesBefore);
  return after;
}

/** Two requests: a MISS that makes the one upstream fetch since `fetchesBefore`, then a HIT of it. */
async function missThenHit(
  baseUrl: string,
  fetchesBefore: number,
): Promise<[ImageReply, ImageReply]> {
  const first = await getImage(baseUrl);
  const second = await getImage(baseUrl);
  expect(first).toMatchObject({ status: 200, cache: 'MISS' });
  expect(second).toMatchObject({ status: 200, cache: 'HIT', etag: first.etag });
  expect(fake.fetches - fetchesBefore).toBe(1);
  return [first, second];
}

/** The addresses of the Service's ready endpoints, sorted. */
async function serviceEndpoints(): Promise<string[]> {
  const { items } = await kubectlJson<{
    items: {
      endpoints?: { addresses: string[]; conditions?: { ready?: boolean } }[];
    }[];
  }>('get', 'endpointslices', '-l', `kubernetes.io/service-name=${SERVICE}`);
  return items
    .flatMap((slice) => slice.endpoints ?? [])
    .filter((endpoint) => endpoint.conditions?.ready === true)
    .flatMap((endpoint) => endpoint.addresses)
    .sort();
}

/** The pod addresses kube-proxy's iptables rules send the Service's port to, sorted. */
async function kubeProxyBackends(): Promise<string[]> {
  const rules = await run('iptables-save', ['-t', 'nat']);
  return rules
    .split('\n')
    .filter(
      (rule) =>
        rule.includes(`"default/${SERVICE}:http"`) && rule.includes('-j DNAT'),
    )
    .map((rule) => /--to-destination ([\d.]+):/.exec(rule)?.[1] ?? '')
    .sort();
}

/** The kubelet's own count of readiness probes of a pod with `result`, from its /metrics/probes. */
async function readinessProbes(
  pod: Pod,
  result: 'successful' | 'failed',
): Promise<number> {
  const samples = parseExposition(
    await kubectl(
      'get',
      '--raw',
      `/api/v1/nodes/${pod.spec.nodeName}/proxy/metrics/probes`,
    ),
  );
  return samples
    .filter(
      ({ name, labels }) =>
        name === 'prober_probe_total' &&
        labels.pod === pod.metadata.name &&
        labels.probe_type === 'Readiness' &&
        labels.result === result,
    )
    .reduce((total, sample) => total + sample.value, 0);
}

interface Event {
  reason: string;
  message: string;
}

async function eventsOf(pod: Pod): Promise<Event[]> {
  const { items } = await kubectlJson<{ items: Event[] }>(
    'get',
    'events',
    '--field-selector',
    `involvedObject.uid=${pod.metadata.uid}`,
  );
  return items;
}

/** The kubelet's last measurement of the pod's `cache` volume, from its stats summary. */
async function cacheVolumeStats(
  pod: Pod,
): Promise<{ usedBytes: number; time: string } | undefined> {
  const summary = JSON.parse(
    await kubectl(
      'get',
      '--raw',
      `/api/v1/nodes/${pod.spec.nodeName}/proxy/stats/summary`,
    ),
  ) as {
    pods: {
      podRef: { uid: string };
      volume?: { name: string; usedBytes: number; time: string }[];
    }[];
  };
  return summary.pods
    .find((entry) => entry.podRef.uid === pod.metadata.uid)
    ?.volume?.find((volume) => volume.name === 'cache');
}

/** Counter of packets the egress rule (up.sh) dropped. */
async function droppedByEgressRule(): Promise<number> {
  const listing = await run('iptables', [
    '-t',
    'mangle',
    '-L',
    cluster.egressChain,
    '-v',
    '-x',
    '-n',
  ]);
  const rule = listing.split('\n').find((line) => line.includes('DROP'));
  if (!rule) {
    throw new Error(`no DROP rule in ${cluster.egressChain}:\n${listing}`);
  }
  return Number(rule.trim().split(/\s+/)[0]);
}

/**
 * Requests `count` distinct image variants of the pod, one after another, each a 512 KiB JPEG
 * (the fake pads them, like real photos).
 */
async function requestLargeDistinctVariants(
  pod: Pod,
  count: number,
  offset: number,
): Promise<void> {
  fake.jpegBytes = 512 * 1024;
  try {
    for (let i = 0; i < count; i += 1) {
      const reply = await getImage(
        podUrl(pod),
        `/image?width=${200 + offset + i}&height=150`,
      );
      expect(reply.status).toBe(200);
    }
  } finally {
    fake.jpegBytes = 0;
  }
}

describe(`the chart on a single-node Kubernetes ${cluster.kubernetesVersion}`, () => {
  beforeAll(async () => {
    await fake.start(0, cluster.nodeIp);
  });

  afterAll(async () => {
    await helm('uninstall', RELEASE, '--wait', '--timeout', '60s').catch(
      () => undefined,
    );
    await fake.stop();
  });

  it('keeps pod traffic on this machine: a drop rule for anything leaving the pod bridge, and no masquerading', async () => {
    const forward = await run('iptables', ['-t', 'mangle', '-S', 'FORWARD']);
    expect(forward.split('\n')[1]).toBe(`-A FORWARD -j ${cluster.egressChain}`);
    const chain = await run('iptables', [
      '-t',
      'mangle',
      '-S',
      cluster.egressChain,
    ]);
    const drop = chain
      .split('\n')
      .find((rule) => rule.startsWith(`-A ${cluster.egressChain} `));
    expect(drop).toContain(`! -d ${cluster.podCidr}`);
    expect(drop).toContain(`-i ${cluster.bridge}`);
    expect(drop).toMatch(/-j DROP$/);
    // The CNI bridge plugin would add CNI-* chains to masquerade pod traffic; ipMasq is off.
    expect(await run('iptables-save', ['-t', 'nat'])).not.toContain(':CNI-');
  });

  it('rejects, before any traffic, what is still addressed to the Service CIDR after DNAT: a ClusterIP without a kube-proxy rule never leaves by the default route', async () => {
    for (const hook of ['OUTPUT', 'FORWARD']) {
      const rules = await run('iptables', ['-t', 'filter', '-S', hook]);
      expect(rules.split('\n')).toContain(
        `-A ${hook} -j ${cluster.serviceGuardChain}`,
      );
    }
    const chain = await run('iptables', [
      '-t',
      'filter',
      '-S',
      cluster.serviceGuardChain,
    ]);
    const reject = chain
      .split('\n')
      .find((rule) => rule.startsWith(`-A ${cluster.serviceGuardChain} `));
    expect(reject).toContain(`-d ${cluster.serviceCidr}`);
    expect(reject).toMatch(/-j REJECT --reject-with icmp-net-unreachable$/);
  });

  it("installs with helm install --wait, without the monitoring CRDs, and turns Ready by the kubelet's readiness probe", async () => {
    const started = Date.now();
    await deploy('install');
    evidence(`helm install --wait took ${Date.now() - started} ms`);
    const pod = await onlyReadyPod(RELEASE);
    expect(restartCount(pod)).toBe(0);
    const readiness = await readinessProbes(pod, 'successful');
    expect(readiness).toBeGreaterThan(0);
    evidence(
      `pod ${pod.metadata.name} Ready; the kubelet counted ${readiness} successful readiness probes`,
    );

    const crds = await kubectl(
      'get',
      'customresourcedefinitions',
      '-o',
      'name',
    );
    expect(crds).not.toContain('monitoring.coreos.com');
    const manifest = await helm('get', 'manifest', RELEASE);
    expect(manifest).not.toMatch(/^kind: (ServiceMonitor|PrometheusRule)$/m);
    expect(manifest).toMatch(/^kind: Deployment$/m);

    const { spec } = await kubectlJson<{ spec: { clusterIP: string } }>(
      'get',
      'service',
      SERVICE,
    );
    serviceUrl = `http://${spec.clusterIP}:80`;
  });

  it('the first request through the Service is a MISS, the next a HIT with the same ETag, and one upstream fetch', async () => {
    const fetchesBefore = fake.fetches;
    const [first, second] = await missThenHit(serviceUrl, fetchesBefore);
    evidence(
      `through the Service: ${first.cache} ${first.etag}, then ${second.cache} ${second.etag}; upstream fetches: ${fake.fetches - fetchesBefore}`,
    );
  });

  it('passes helm test: a pod reaches the Service by its DNS name, through CoreDNS and kube-proxy', async () => {
    const output = await helm('test', RELEASE, '--logs', '--timeout', '120s');
    expect(output).toMatch(/Phase:\s+Succeeded/);
    expect(output).toContain('GET /image: 200 image/jpeg');
    evidence(`helm test: ${output.match(/GET \/image: .*/)?.[0]}`);
  });

  it("drops a pod's packet to an address outside the pod network", async () => {
    const pod = await onlyReadyPod(RELEASE);
    const before = await droppedByEgressRule();
    // 192.0.2.1 is TEST-NET-1: the connection attempt must die at the egress rule.
    const attempt = await kubectl(
      'exec',
      pod.metadata.name,
      '--',
      'node',
      '--eval',
      `const s = require('node:net').connect(80, '192.0.2.1');
       s.on('connect', () => { console.log('connected'); process.exit(0); });
       s.on('error', (e) => { console.log('error ' + e.code); process.exit(0); });
       setTimeout(() => { console.log('no answer'); process.exit(0); }, 1500);`,
    );
    expect(attempt.trim()).toBe('no answer');
    const after = await droppedByEgressRule();
    expect(after).toBeGreaterThan(before);
    evidence(
      `egress rule dropped ${after - before} packet(s) of a pod's connection to 192.0.2.1`,
    );
  });

  it('container crash: after a SIGKILL the kubelet restarts the container, the emptyDir is intact and the next request is a HIT with the same ETag', async () => {
    const pod = await onlyReadyPod(RELEASE);
    const cached = await getImage(serviceUrl);
    expect(cached.cache).toBe('HIT');
    const fetchesBefore = fake.fetches;

    await ctr('tasks', 'kill', '--signal', 'SIGKILL', containerId(pod));
    const restarted = await restartedInPlace(pod);
    expect(restarted.metadata.uid).toBe(pod.metadata.uid);
    expect(
      restarted.status.containerStatuses?.[0].lastState.terminated?.exitCode,
    ).toBe(137);

    const after = await expectSameImageWithoutFetch(cached, fetchesBefore);
    evidence(
      `SIGKILL: same pod ${restarted.metadata.uid}, restartCount ${restartCount(pod)} -> ${restartCount(restarted)}, exit code 137; then ${after.cache} ${after.etag} (before: ${cached.etag}); upstream fetches: 0`,
    );
  });

  it('liveness: a hung process (SIGSTOP) goes unready, the kubelet restarts the container, and the cache survives', async () => {
    const pod = await onlyReadyPod(RELEASE);
    const cached = await getImage(serviceUrl);
    const fetchesBefore = fake.fetches;

    // Every process of the container, tini and Node alike, stops answering.
    await ctr(
      'tasks',
      'kill',
      '--all',
      '--signal',
      'SIGSTOP',
      containerId(pod),
    );
    await waitFor('the pod to turn unready', async () =>
      isReady(await reloadPod(pod)) ? undefined : true,
    );
    const restarted = await restartedInPlace(pod);
    expect(restarted.metadata.uid).toBe(pod.metadata.uid);
    // The kubelet's events say why it restarted the container.
    const events = await eventsOf(pod);
    const failedProbes = events.filter(
      (event) =>
        event.reason === 'Unhealthy' &&
        event.message.startsWith('Liveness probe failed'),
    );
    expect(failedProbes.length).toBeGreaterThan(0);
    expect(events).toContainEqual(
      expect.objectContaining({
        reason: 'Killing',
        message: expect.stringContaining(
          'failed liveness probe, will be restarted',
        ) as string,
      }),
    );

    const after = await expectSameImageWithoutFetch(cached, fetchesBefore);
    evidence(
      `SIGSTOP: unready, then "${failedProbes[0].message}" and the kubelet's Killing event, restartCount ${restartCount(pod)} -> ${restartCount(restarted)} in the same pod; then ${after.cache} ${after.etag} (before: ${cached.etag}); upstream fetches: 0`,
    );
  });

  it('an update: helm upgrade to a new image tag rolls out a new pod, whose emptyDir starts empty', async () => {
    const pod = await onlyReadyPod(RELEASE);
    const newTag = `${IMAGE_TAG}-rollout`;
    await ctr(
      'images',
      'tag',
      '--force',
      cluster.image,
      `${IMAGE_REPOSITORY}:${newTag}`,
    );
    const fetchesBefore = fake.fetches;

    await deploy('new-tag', { image: { tag: newTag } });
    const replacement = await replacementOf(pod.metadata.uid);
    const { spec } = await kubectlJson<{
      spec: { containers: { image: string }[] };
    }>('get', 'pod', replacement.metadata.name);
    expect(spec.containers[0].image).toBe(`${IMAGE_REPOSITORY}:${newTag}`);
    expect(restartCount(replacement)).toBe(0);

    // Asked directly: until kube-proxy has synced, the Service may still route to the old
    // pod, which serves through its preStop pause (that is what the pause is for).
    const first = await getImage(podUrl(replacement));
    expect(first).toMatchObject({ status: 200, cache: 'MISS' });
    expect(fake.fetches - fetchesBefore).toBe(1);
    evidence(
      `helm upgrade to tag ${newTag}: pod ${pod.metadata.name} replaced by ${replacement.metadata.name} (new uid), first request ${first.cache} ${first.etag}, upstream fetches: 1`,
    );
  });

  it('a new pod: after kubectl delete pod, the replacement starts with an empty emptyDir: MISS and one fetch', async () => {
    const pod = await onlyReadyPod(RELEASE);
    await untilServiceRoutesTo([pod]);
    const cached = await getImage(serviceUrl);
    expect(cached.cache).toBe('HIT');
    const fetchesBefore = fake.fetches;

    await kubectl('delete', 'pod', pod.metadata.name, '--wait=false');
    const replacement = await replacementOf(pod.metadata.uid);
    const [first, second] = await missThenHit(
      podUrl(replacement),
      fetchesBefore,
    );
    expect(first.etag).not.toBe(cached.etag);
    evidence(
      `kubectl delete pod: ${pod.metadata.name} -> ${replacement.metadata.name}; ${first.cache} ${first.etag} (was ${cached.etag}), then ${second.cache}; upstream fetches: 1`,
    );
  });

  it('shuts down gracefully under the kubelet: the endpoint leaves the EndpointSlice before the process exits, the in-flight request completes, exit code 0 within the grace period', async () => {
    const pod = await onlyReadyPod(RELEASE);
    const podIp = pod.status.podIP;
    // Every pod event until the pod is gone, as one line each.
    const watch = spawn(process.env.KUBECTL as string, [
      'get',
      'pod',
      pod.metadata.name,
      '--watch',
      '--output-watch-events',
      '-o',
      'jsonpath={.type} {.object.status.containerStatuses[0].state.terminated.exitCode} {.object.status.containerStatuses[0].state.terminated.finishedAt}{"\\n"}',
    ]);
    let watched = '';
    watch.stdout.on('data', (chunk: Buffer) => (watched += chunk.toString()));
    const watchEnded = new Promise((resolve) => watch.once('exit', resolve));

    // A MISS whose upstream takes 4 s: in flight while the pod is deleted.
    fake.delayMs = 4000;
    const inFlightStarted = Date.now();
    const inFlight = getImage(serviceUrl, '/image?width=400&height=300');
    await sleep(500);
    const deletedAt = Date.now();
    await kubectl('delete', 'pod', pod.metadata.name, '--wait=false');

    const endpointGoneAt = await waitFor(
      "the pod to leave the Service's ready endpoints",
      async () =>
        (await serviceEndpoints()).includes(podIp as string)
          ? undefined
          : Date.now(),
      30_000,
      100,
    );
    const reply = await inFlight;
    const repliedAt = Date.now();
    fake.delayMs = 0;
    // `kubectl get --watch` of one pod goes on after the pod is gone: stop at DELETED.
    await waitFor(
      'the pod to be deleted',
      () => Promise.resolve(/^DELETED/m.test(watched) ? true : undefined),
      GRACE_SECONDS * 1000 + 15_000,
    );
    watch.kill();
    await watchEnded;

    expect(reply).toMatchObject({ status: 200, cache: 'MISS' });
    expect(reply.bytes).toBeGreaterThan(0);
    const terminated = watched
      .split('\n')
      .map((line) => line.trim().split(' '))
      .find(([, exitCode, finishedAt]) => exitCode !== undefined && finishedAt);
    expect(terminated).toBeDefined();
    const [, exitCode, finishedAt] = terminated as string[];
    expect(exitCode).toBe('0');
    // finishedAt has whole seconds: the exit came at or after it.
    const exitedBy = Date.parse(finishedAt) + 1000;
    expect(endpointGoneAt).toBeLessThan(Date.parse(finishedAt));
    expect(exitedBy - deletedAt).toBeLessThan(GRACE_SECONDS * 1000);
    evidence(
      `delete with a request in flight: endpoint unready ${endpointGoneAt - deletedAt} ms after the delete; the request (started ${deletedAt - inFlightStarted} ms before) answered ${reply.status} ${reply.cache} ${repliedAt - deletedAt} ms after; the container exited ${exitCode} at ${finishedAt} (within ${Math.round((exitedBy - deletedAt) / 1000)} s of the delete; grace ${GRACE_SECONDS} s)`,
    );
  });

  it('keeps the pod ready and unrestarted while the upstream is down, serving the stale image', async () => {
    await deploy('short-ttl', { cache: { ttlSeconds: 2 } });
    const pod = await onlyReadyPod(RELEASE);
    const fresh = await getImage(podUrl(pod));
    expect(fresh.status).toBe(200);
    const readinessBefore = await readinessProbes(pod, 'successful');

    fake.mode = 'server-error';
    try {
      await sleep(2500);
      const replies = [];
      for (let second = 0; second < 12; second += 1) {
        replies.push(await getImage(podUrl(pod)));
        const current = await reloadPod(pod);
        expect(isReady(current)).toBe(true);
        expect(restartCount(current)).toBe(0);
        await sleep(1000);
      }
      expect(
        replies.every(
          (reply) => reply.status === 200 && reply.cache === 'STALE',
        ),
      ).toBe(true);
      expect(new Set(replies.map((reply) => reply.etag))).toEqual(
        new Set([fresh.etag]),
      );
      const readiness =
        (await readinessProbes(pod, 'successful')) - readinessBefore;
      expect(readiness).toBeGreaterThanOrEqual(10);
      expect(await readinessProbes(pod, 'failed')).toBe(0);
      evidence(
        `upstream answering 500 for ${replies.length + 2} s: ${replies.length} replies 200 STALE ${fresh.etag}; ${readiness} successful readiness probes and none failed; restartCount 0`,
      );
    } finally {
      fake.mode = 'ok';
    }
  });

  it('holds the disk budget derived from cache.emptyDir.sizeLimit: the kubelet measures the volume under its limit and never evicts the pod', async () => {
    await deploy('size-limit', { cache: { emptyDir: { sizeLimit: '8Mi' } } });
    const pod = await onlyReadyPod(RELEASE);
    // 32 variants of 512 KiB: twice the sizeLimit.
    await requestLargeDistinctVariants(pod, 32, 0);
    const streamEnded = Date.now();
    // The kubelet measures emptyDirs every volumeStatsAggPeriod (10 s here, up.sh) and checks
    // them against their sizeLimit on each eviction pass: wait for a measurement after the stream.
    const measured = await waitFor(
      'the kubelet to measure the cache volume after the stream',
      async () => {
        const stats = await cacheVolumeStats(pod);
        return stats && Date.parse(stats.time) > streamEnded + 1000
          ? stats
          : undefined;
      },
      60_000,
      1000,
    );
    await sleep(12_000);
    const current = await reloadPod(pod);
    expect(current.status.phase).toBe('Running');
    expect(current.status.reason).toBeUndefined();
    expect(restartCount(current)).toBe(0);
    expect(measured.usedBytes).toBeLessThanOrEqual(8 * 1024 * 1024);
    const reasons = (await eventsOf(pod)).map((event) => event.reason);
    expect(reasons).not.toContain('Evicted');
    evidence(
      `sizeLimit 8Mi, 32 variants of 512 KiB: the kubelet measured the cache volume at ${measured.usedBytes} bytes; phase ${current.status.phase}, restartCount 0, events: ${[...new Set(reasons)].join(', ')}`,
    );
  });

  it('(control) a disk budget above the sizeLimit gets the pod evicted by the kubelet, so the test above can fail', async () => {
    await deploy('size-limit-exceeded', {
      cache: { emptyDir: { sizeLimit: '8Mi' } },
      extraEnv: [
        { name: 'SHUTDOWN_DRAIN_MS', value: String(DRAIN_MS) },
        { name: 'CACHE_DISK_MAX_SIZE', value: '64Mi' },
      ],
    });
    const pod = await onlyReadyPod(RELEASE);
    await requestLargeDistinctVariants(pod, 32, 100);
    // The kubelet records an Evicted event; the pod's phase may end up Succeeded rather
    // than Failed, since the service exits 0 on the SIGTERM the eviction sends.
    const message = await waitFor(
      'the kubelet to evict the pod',
      async () =>
        (await eventsOf(pod)).find((event) => event.reason === 'Evicted')
          ?.message,
      90_000,
      1000,
    );
    expect(message).toContain('exceeds the limit');
    const evicted = await reloadPod(pod);
    evidence(
      `control: with CACHE_DISK_MAX_SIZE=64Mi the kubelet evicted ${evicted.metadata.name} (phase ${evicted.status.phase}): ${message}`,
    );
    await kubectl('delete', 'pod', pod.metadata.name, '--wait=false');
  });

  it("three replicas on one Redis: requests spread over the pods' IPs see one ETag and cause one upstream fetch", async () => {
    const redis = await RedisServer.start([], cluster.nodeIp);
    try {
      await deploy('replicas', {
        replicaCount: 3,
        sharedCache: { redis: { url: redis.url } },
      });
      const pods = await waitFor('three ready pods', async () => {
        const current = await podsOf(RELEASE);
        return current.length === 3 && current.every(isReady)
          ? current
          : undefined;
      });
      // The old revision's pod serves through its preStop pause, without Redis, and kube-proxy
      // routes to it until its next sync after the EndpointSlice drops it: wait until
      // kube-proxy's own rules send the Service to the three new pods alone.
      const podIps = pods.map((pod) => pod.status.podIP).sort();
      await untilServiceRoutesTo(pods);
      const fetchesBefore = fake.fetches;
      const replies = await Promise.all(
        [...pods, ...pods].map((pod) =>
          getImage(podUrl(pod), '/image?width=640&height=480'),
        ),
      );
      const fetchesByPods = fake.fetches - fetchesBefore;
      const throughService = await Promise.all(
        [1, 2, 3, 4, 5, 6].map(() =>
          getImage(serviceUrl, '/image?width=640&height=480'),
        ),
      );
      const all = [...replies, ...throughService];
      evidence(
        `3 replicas (${podIps.join(', ')}) on Redis ${redis.url}: ${all.length} requests, results ${all.map((reply) => `${reply.status} ${reply.cache} ${reply.etag}`).join(', ')}; upstream fetches: ${fetchesByPods} for the requests to the pods, ${fake.fetches - fetchesBefore} in all`,
      );
      expect(all.every((reply) => reply.status === 200)).toBe(true);
      expect(new Set(all.map((reply) => reply.etag)).size).toBe(1);
      expect(fake.fetches - fetchesBefore).toBe(1);
    } finally {
      await helm('uninstall', RELEASE, '--wait', '--timeout', '60s').catch(
        () => undefined,
      );
      await redis.stop();
    }
  });
});
