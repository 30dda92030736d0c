import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { stringify } from 'yaml';

const execFileAsync = promisify(execFile);

/**
 * The single-node cluster that scripts/cluster/test.sh started for this run, as its
 * environment describes it (KUBECONFIG, KUBECTL, HELM, CLUSTER_*).
 */
export const cluster = {
  dir: requiredEnv('CLUSTER_DIR'),
  nodeIp: requiredEnv('CLUSTER_NODE_IP'),
  podCidr: requiredEnv('CLUSTER_POD_CIDR'),
  bridge: requiredEnv('CLUSTER_BRIDGE'),
  egressChain: requiredEnv('CLUSTER_EGRESS_CHAIN'),
  serviceGuardChain: requiredEnv('CLUSTER_SERVICE_GUARD_CHAIN'),
  serviceCidr: requiredEnv('CLUSTER_SERVICE_CIDR'),
  image: requiredEnv('CLUSTER_IMAGE'),
  kubernetesVersion: requiredEnv('KUBERNETES_VERSION'),
};

export const CHART_DIR = join(__dirname, '..', '..', 'helm', 'image-cache');

function requiredEnv(name: string): string {
  const value = process.env[name];
  if (!value) {
    throw new Error(
      `${name} is not set: run the cluster specs with npm run test:cluster, which starts the cluster`,
    );
  }
  return value;
}

/** Runs a command; rejects with its stderr when it fails. */
export async function run(
  command: string,
  args: string[],
  timeoutMs = 120_000,
): Promise<string> {
  try {
    const { stdout } = await execFileAsync(command, args, {
      timeout: timeoutMs,
      maxBuffer: 32 * 1024 * 1024,
    });
    return stdout;
  } catch (error) {
    const { stderr, message } = error as { stderr?: string; message: string };
    throw new Error(`${command} ${args.join(' ')}: ${stderr || message}`);
  }
}

export function kubectl(...args: string[]): Promise<string> {
  return run(requiredEnv('KUBECTL'), args);
}

export async function kubectlJson<T>(...args: string[]): Promise<T> {
  return JSON.parse(await kubectl(...args, '-o', 'json')) as T;
}

export function helm(...args: string[]): Promise<string> {
  return run(requiredEnv('HELM'), args, 300_000);
}

/** `ctr` on the node's containerd, in the kubelet's namespace. */
export function ctr(...args: string[]): Promise<string> {
  return run('ctr', [
    '--address',
    join(cluster.dir, 'containerd', 'containerd.sock'),
    '--namespace',
    'k8s.io',
    ...args,
  ]);
}

/** Writes chart values to a file under the cluster's directory and returns its path. */
export function valuesFile(name: string, values: object): string {
  const path = join(cluster.dir, `${name}-values.yaml`);
  writeFileSync(path, stringify(values));
  return path;
}

/** The parts of a Pod the specs read. */
export interface Pod {
  metadata: {
    name: string;
    uid: string;
    deletionTimestamp?: string;
  };
  spec: { nodeName?: string };
  status: {
    phase: string;
    reason?: string;
    podIP?: string;
    conditions?: { type: string; status: string; lastTransitionTime: string }[];
    containerStatuses?: {
      containerID?: string;
      ready: boolean;
      restartCount: number;
      state: {
        running?: { startedAt: string };
        terminated?: { exitCode: number; reason?: string; finishedAt: string };
      };
      lastState: {
        terminated?: { exitCode: number; reason?: string; finishedAt: string };
      };
    }[];
  };
}

export function isReady(pod: Pod): boolean {
  return (
    pod.status.conditions?.some(
      (condition) => condition.type === 'Ready' && condition.status === 'True',
    ) ?? false
  );
}

export function restartCount(pod: Pod): number {
  return pod.status.containerStatuses?.[0]?.restartCount ?? 0;
}

/** The container's id in containerd, from `containerd://<id>`. */
export function containerId(pod: Pod): string {
  const id = pod.status.containerStatuses?.[0]?.containerID;
  if (!id) {
    throw new Error(`pod ${pod.metadata.name} has no container yet`);
  }
  return id.replace(/^containerd:\/\//, '');
}

/** The release's pods that are neither being deleted nor finished (evicted, say). */
export async function podsOf(release: string): Promise<Pod[]> {
  const { items } = await kubectlJson<{ items: Pod[] }>(
    'get',
    'pods',
    '-l',
    `app.kubernetes.io/instance=${release},app.kubernetes.io/name=image-cache`,
  );
  return items.filter(
    (pod) =>
      !pod.metadata.deletionTimestamp &&
      pod.status.phase !== 'Failed' &&
      pod.status.phase !== 'Succeeded',
  );
}

/** Polls `probe` every `intervalMs` until it returns something other than undefined. */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  timeoutMs = 90_000,
  intervalMs = 250,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) {
        return value;
      }
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > deadline) {
      const cause =
        lastError instanceof Error ? `; last error: ${lastError.message}` : '';
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${cause}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/** The one ready pod of a single-replica release, once there is exactly one and it is ready. */
export function onlyReadyPod(
  release: string,
  timeoutMs?: number,
): Promise<Pod> {
  return waitFor(
    `one ready pod of ${release}`,
    async () => {
      const pods = await podsOf(release);
      return pods.length === 1 && isReady(pods[0]) ? pods[0] : undefined;
    },
    timeoutMs,
  );
}

export interface ImageReply {
  status: number;
  cache: string | null;
  etag: string | null;
  bytes: number;
  /** The body of a reply that is not an image (an error's JSON), so a failed expectation shows it. */
  error?: string;
}

/** GET `path` on `baseUrl`, with the reply's cache result, ETag and size. */
export async function getImage(
  baseUrl: string,
  path = '/image',
  timeoutMs = 30_000,
): Promise<ImageReply> {
  const response = await fetch(`${baseUrl}${path}`, {
    signal: AbortSignal.timeout(timeoutMs),
  });
  const body = await response.arrayBuffer();
  const isImage = (response.headers.get('content-type') ?? '').startsWith(
    'image/',
  );
  return {
    status: response.status,
    cache: response.headers.get('x-cache'),
    etag: response.headers.get('etag'),
    bytes: body.byteLength,
    ...(isImage
      ? {}
      : { error: Buffer.from(body).toString('utf8').slice(0, 500) }),
  };
}
