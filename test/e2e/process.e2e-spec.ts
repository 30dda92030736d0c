import { createHash } from 'node:crypto';
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { Agent, get as httpGet } from 'node:http';
import { join } from 'node:path';
import { FakePicsum } from '../fake-picsum/fake-picsum.server';
import { ServiceProcess } from '../support/service-process';
import { makeCacheDir } from '../support/test-app';

/**
 * The built service in a real child process: killed with SIGKILL, restarted on the same
 * CACHE_DIR, stopped with SIGTERM, and started with bad configuration.
 */
/** The status of one `GET /image` through `agent`, its body read and dropped. */
function getStatus(agent: Agent, url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const request = httpGet(`${url}/image`, { agent }, (response) => {
      response.resume();
      response.on('end', () => resolve(response.statusCode ?? 0));
      response.on('error', reject);
    });
    request.on('error', (error: NodeJS.ErrnoException) => {
      error.code = `${error.code}${request.reusedSocket ? ' on a reused connection' : ''}`;
      reject(error);
    });
  });
}

describe('the service process (dist/main.js)', () => {
  const upstream = new FakePicsum();
  const running = new Set<ServiceProcess>();
  let cacheDir: string;

  async function start(env: Record<string, string> = {}): Promise<string> {
    const { service, url } = await ServiceProcess.start({
      PICSUM_BASE_URL: upstream.baseUrl,
      CACHE_DIR: cacheDir,
      ...env,
    });
    running.add(service);
    return url;
  }

  /** Signals the running service now and resolves when it has exited. */
  function kill(
    signal: NodeJS.Signals,
  ): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    const [service] = running;
    service.kill(signal);
    // It stays in `running` until it has exited, so afterEach still reaps it if a test fails first.
    return service.exited.finally(() => running.delete(service));
  }

  function waitFor(condition: () => boolean, timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    return new Promise((resolve, reject) => {
      const check = () => {
        if (condition()) {
          resolve();
        } else if (Date.now() > deadline) {
          reject(new Error('condition not met in time'));
        } else {
          setTimeout(check, 10);
        }
      };
      check();
    });
  }

  /** Asserts the reply is an image the upstream really sent, byte for byte, and returns its id. */
  async function expectIntactImage(response: Response): Promise<string> {
    const body = Buffer.from(await response.arrayBuffer());
    const id = response.headers.get('x-picsum-id') ?? '';
    expect(body.equals(upstream.jpeg(Number(id), 1200, 1200))).toBe(true);
    expect(response.headers.get('etag')).toBe(
      `"${createHash('sha256').update(body).digest('hex').slice(0, 32)}"`,
    );
    return id;
  }

  beforeAll(() => upstream.start());
  afterAll(() => upstream.stop());
  beforeEach(async () => {
    upstream.reset();
    cacheDir = await makeCacheDir();
  });
  afterEach(async () => {
    for (const service of running) {
      service.kill('SIGKILL');
      await service.exited;
    }
    running.clear();
    await rm(cacheDir, { recursive: true, force: true });
  });

  it('container crash: after SIGKILL a new process on the same CACHE_DIR serves the cached image without calling the upstream', async () => {
    const first = await fetch(`${await start()}/image`);
    const id = await expectIntactImage(first);
    const crashed = await kill('SIGKILL');

    const url = await start();
    const again = await fetch(`${url}/image`);
    const info = (await (await fetch(`${url}/image/info`)).json()) as {
      fetchedAt: string;
    };

    expect(crashed.signal).toBe('SIGKILL');
    expect(again.headers.get('x-cache')).toBe('HIT');
    expect(again.headers.get('etag')).toBe(first.headers.get('etag'));
    expect(again.headers.get('last-modified')).toBe(
      first.headers.get('last-modified'),
    );
    expect(new Date(info.fetchedAt).toUTCString()).toBe(
      first.headers.get('last-modified'),
    );
    expect(await expectIntactImage(again)).toBe(id);
    expect(upstream.fetches).toBe(1);
  });

  it('crash mid-download: a SIGKILL while the upstream is still sending leaves nothing to serve later', async () => {
    const url = await start();
    upstream.delayMs = 5000;
    void fetch(`${url}/image`).catch(() => undefined);
    await waitFor(() => upstream.fetches === 1);
    await kill('SIGKILL');
    upstream.delayMs = 0;

    const restarted = await start();
    const info = await fetch(`${restarted}/image/info`);
    const image = await fetch(`${restarted}/image`);

    expect(info.status).toBe(404);
    expect(image.headers.get('x-cache')).toBe('MISS');
    await expectIntactImage(image);
  });

  it('crash mid-write: leftovers of an interrupted write are swept and the last complete image is served', async () => {
    const first = await fetch(`${await start()}/image`);
    await expectIntactImage(first);
    await kill('SIGKILL');
    // What a crash between the steps of the next write would leave: a half-written temporary
    // file, and a body renamed into place whose metadata never was.
    await writeFile(
      join(cacheDir, '.3f1c0a6e-0000-4000-8000-000000000000.tmp'),
      Buffer.from([0xff, 0xd8, 0xff]),
    );
    await writeFile(
      join(cacheDir, 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.bbbbbbbbbbbbbbbb.img'),
      Buffer.from([0xff, 0xd8]),
    );

    const again = await fetch(`${await start()}/image`);

    expect(again.headers.get('x-cache')).toBe('HIT');
    expect(again.headers.get('etag')).toBe(first.headers.get('etag'));
    await expectIntactImage(again);
    const names = await readdir(cacheDir);
    expect(
      names.filter((name) => name.endsWith('.tmp') || name.startsWith('aaaa')),
    ).toEqual([]);
    expect(upstream.fetches).toBe(1);
  });

  it('corrupt entry: a stored body that fails its checksum is never served and is fetched again', async () => {
    await fetch(`${await start()}/image`).then((response) =>
      response.arrayBuffer(),
    );
    await kill('SIGKILL');
    const [bodyFile] = (await readdir(cacheDir)).filter((name) =>
      name.endsWith('.img'),
    );
    const body = await readFile(join(cacheDir, bodyFile));
    await writeFile(
      join(cacheDir, bodyFile),
      body.subarray(0, body.length - 10),
    );

    const again = await fetch(`${await start()}/image`);

    expect(again.headers.get('x-cache')).toBe('MISS');
    await expectIntactImage(again);
    expect(upstream.fetches).toBe(2);
  });

  it('SIGKILL at random moments of fetching and storing never leaves a corrupt image to serve', async () => {
    // TTL 1 s, so that nearly every round replaces the stored image while being killed.
    const env = { CACHE_TTL_SECONDS: '1' };
    const rounds = 6;
    for (let round = 0; round < rounds; round++) {
      const url = await start(env);
      void fetch(`${url}/image`).catch(() => undefined);
      await new Promise((resolve) =>
        setTimeout(resolve, Math.floor(Math.random() * 40)),
      );
      await kill('SIGKILL');
      await new Promise((resolve) => setTimeout(resolve, 300));
    }

    const url = await start({ ...env, CACHE_TTL_SECONDS: '600' });
    const info = await fetch(`${url}/image/info`);
    const image = await fetch(`${url}/image`);

    expect([200, 404]).toContain(info.status);
    expect(image.status).toBe(200);
    await expectIntactImage(image);
  });

  it('graceful shutdown: SIGTERM turns readiness to 503, lets the in-flight request finish, and exits 0', async () => {
    const url = await start({ SHUTDOWN_DRAIN_MS: '1000' });
    // Per hop: the API host and the image host, 600 ms in all, well within the drain.
    upstream.delayMs = 300;
    const inFlight = fetch(`${url}/image`);
    await waitFor(() => upstream.fetches === 1);
    const signalledAt = Date.now();
    const exiting = kill('SIGTERM');
    await new Promise((resolve) => setTimeout(resolve, 100));

    const ready = await fetch(`${url}/health/ready`);
    const readyBody = (await ready.json()) as {
      error?: Record<string, unknown>;
    };
    const response = await inFlight;
    // Read as a client does, at once: the server is gone once the drain is over.
    await expectIntactImage(response);
    const exit = await exiting;

    expect(ready.status).toBe(503);
    expect(readyBody.error).toMatchObject({ shutdown: { status: 'down' } });
    expect(response.status).toBe(200);
    expect(exit).toEqual({ code: 0, signal: null });
    expect(Date.now() - signalledAt).toBeLessThan(5000);
  });

  it('serves every request on a connection it accepted, through the drain and the close: 50 keep-alive clients get no 503', async () => {
    const url = await start({ SHUTDOWN_DRAIN_MS: '1500' });
    const agent = new Agent({ keepAlive: true, maxSockets: 50 });
    await getStatus(agent, url); // cached: every request below is a hit
    const statuses: number[] = [];
    const errors: string[] = [];
    let signalledAt = Infinity;
    let afterSignal = 0;
    const client = async () => {
      const stopAt = Date.now() + 15_000;
      while (Date.now() < stopAt) {
        try {
          statuses.push(await getStatus(agent, url));
          afterSignal += Date.now() > signalledAt ? 1 : 0;
        } catch (error) {
          errors.push((error as NodeJS.ErrnoException).code ?? String(error));
          return; // the listener is closed: this client is done
        }
      }
    };

    const clients = Array.from({ length: 50 }, client);
    await waitFor(() => statuses.length >= 500, 10_000);
    signalledAt = Date.now();
    const exit = await kill('SIGTERM');
    await Promise.all(clients);
    agent.destroy();

    process.stdout.write(
      `drain: ${statuses.length} replies (${afterSignal} after SIGTERM), connection errors: ${JSON.stringify(errors)}\n`,
    );
    expect(statuses.filter((status) => status !== 200)).toEqual([]);
    expect(afterSignal).toBeGreaterThan(50);
    // Refused or reset before the server read a request: connections the listener never
    // accepted (reset when it closed with them in the kernel's accept queue), never one it served.
    expect(
      errors.filter((code) => !['ECONNREFUSED', 'ECONNRESET'].includes(code)),
    ).toEqual([]);
    expect(exit).toEqual({ code: 0, signal: null });
  });

  it.each([
    ['CACHE_TTL_SECONDS', 'abc'],
    ['CACHE_TTL_SECONDS', '0'],
    ['CACHE_TTL_SECONDS', '-5'],
    ['PICSUM_BASE_URL', 'not a url'],
  ])(
    'refuses to start with %s=%s, naming the variable and what is allowed',
    async (name, value) => {
      const service = ServiceProcess.spawn({
        CACHE_DIR: cacheDir,
        [name]: value,
      });

      const exit = await service.exited;

      expect(exit.code).toBe(1);
      expect(service.output).toContain(
        `${name}=${JSON.stringify(value)} is not allowed: expected`,
      );
      expect(service.output).not.toContain('Listening on');
    },
  );

  it('refuses a malformed Redis URL without showing its password, and both Redis settings at once', async () => {
    const malformed = ServiceProcess.spawn({
      CACHE_DIR: cacheDir,
      REDIS_URL: 'redis://app:s3cret@redis:6379/cache',
    });
    const both = ServiceProcess.spawn({
      CACHE_DIR: cacheDir,
      REDIS_URL: 'redis://redis:6379',
      REDIS_CLUSTER_URLS: 'redis://node-0:6379',
    });

    const exits = await Promise.all([malformed.exited, both.exited]);

    expect(exits.map((exit) => exit.code)).toEqual([1, 1]);
    expect(malformed.output).toContain(
      'REDIS_URL="redis://app:***@redis:6379/cache" is not allowed: expected redis://',
    );
    expect(malformed.output).not.toContain('s3cret');
    expect(both.output).toContain(
      'REDIS_URL and REDIS_CLUSTER_URLS are both set',
    );
  });
});
