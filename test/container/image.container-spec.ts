import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { FakePicsum } from '../fake-picsum/fake-picsum.server';
import { HardenedContainer, podman } from './podman';

const { version } = JSON.parse(
  readFileSync(join(__dirname, '..', '..', 'package.json'), 'utf8'),
) as { version: string };
/** The tag scripts/build-image.sh gives by default; IMAGE names another. */
const IMAGE = process.env.IMAGE ?? `localhost/image-cache:${version}`;
/** What a pod gets by default (terminationGracePeriodSeconds), and podman's `--time`. */
const GRACE_SECONDS = 30;

/**
 * The production image (built by `npm run test:container`), run as a hardened pod runs it:
 * scenarios 4 (the container crashes and restarts on the same emptyDir) and 5 (a new pod
 * starts with a new, empty emptyDir), SIGTERM handling, and the user it runs as.
 */
describe(`the container image ${IMAGE}`, () => {
  const upstream = new FakePicsum();
  const run = randomBytes(4).toString('hex');
  const containers: HardenedContainer[] = [];
  const volumes: string[] = [];

  async function runContainer(volume: string): Promise<HardenedContainer> {
    if (!volumes.includes(volume)) {
      await podman('volume', 'create', volume);
      volumes.push(volume);
    }
    const container = await HardenedContainer.run(
      IMAGE,
      `image-cache-test-${run}-${containers.length}`,
      volume,
      { PICSUM_BASE_URL: upstream.baseUrl },
    );
    containers.push(container);
    return container;
  }

  beforeAll(async () => {
    await podman('image', 'exists', IMAGE).catch(() => {
      throw new Error(`${IMAGE} is not built: run npm run test:container`);
    });
    await upstream.start();
  });

  afterAll(async () => {
    for (const container of containers) {
      await container.remove();
    }
    for (const volume of volumes) {
      await podman('volume', 'rm', '--force', volume).catch(() => {});
    }
    await upstream.stop();
  });

  it('runs as uid 1000 under tini, on a read-only root filesystem', async () => {
    const container = await runContainer(`image-cache-test-${run}-a`);
    await container.url();

    const processes = await container.processes('pid', 'user', 'args');
    expect(processes[0]).toEqual(
      expect.arrayContaining(['1', 'node', '/usr/bin/tini']),
    );
    for (const [, user] of processes) {
      expect(user).toBe('node');
    }
    expect(await container.exec('id', '-u')).toBe('1000');
    await expect(container.exec('touch', '/app/dist/written')).rejects.toThrow(
      /Read-only file system/,
    );
    await container.remove();
  });

  it('keeps the cached image when the container is killed and started again', async () => {
    upstream.reset();
    const container = await runContainer(`image-cache-test-${run}-b`);
    let url = await container.url();
    expect((await fetch(`${url}/health/ready`)).status).toBe(200);

    const first = await fetch(`${url}/image`);
    const firstBody = Buffer.from(await first.arrayBuffer());
    expect(first.status).toBe(200);
    expect(first.headers.get('x-cache')).toBe('MISS');
    expect(upstream.fetches).toBe(1);

    await container.kill();
    expect(await container.inspect('{{.State.ExitCode}}')).toBe('137');
    await container.start();
    url = await container.url();

    const again = await fetch(`${url}/image`);
    expect(again.status).toBe(200);
    expect(again.headers.get('x-cache')).toBe('HIT');
    expect(again.headers.get('etag')).toBe(first.headers.get('etag'));
    expect(Buffer.from(await again.arrayBuffer()).equals(firstBody)).toBe(true);
    expect(upstream.fetches).toBe(1);
  });

  it('starts empty on a new volume, as a new pod does', async () => {
    upstream.reset();
    const container = await runContainer(`image-cache-test-${run}-c`);
    const url = await container.url();

    expect((await fetch(`${url}/image/info`)).status).toBe(404);
    const response = await fetch(`${url}/image`);
    expect(response.headers.get('x-cache')).toBe('MISS');
    expect(upstream.fetches).toBe(1);
  });

  it('exits 0 on SIGTERM (podman stop), well inside the grace period', async () => {
    const container = await runContainer(`image-cache-test-${run}-d`);
    const url = await container.url();
    expect((await fetch(`${url}/image`)).status).toBe(200);

    const { exitCode, elapsedMs } = await container.stop(GRACE_SECONDS);

    expect(exitCode).toBe(0);
    // SHUTDOWN_DRAIN_MS (5 s by default) plus closing; podman would SIGKILL at 30 s (exit 137).
    expect(elapsedMs).toBeLessThan((GRACE_SECONDS * 1000) / 2);
    process.stdout.write(
      `podman stop took ${elapsedMs} ms (grace ${GRACE_SECONDS} s)\n`,
    );
  });
});
