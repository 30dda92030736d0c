import { Agent, get } from 'node:http';
import { connect, type Socket } from 'node:net';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { FakePicsum } from '../fake-picsum/fake-picsum.server';
import { residentBytes } from '../support/process-memory';
import { ServiceProcess } from '../support/service-process';
import { establishedPeers } from '../support/tcp-connections';
import { makeCacheDir } from '../support/test-app';

const MIB = 1024 * 1024;

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Opens a TCP connection and resolves once it is established, with its local port. */
function open(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => resolve(socket));
    socket.on('error', reject);
  });
}

/**
 * What the HTTP server holds its clients to: clients that never read are cut, connections are
 * capped, and a shutdown closes keep-alive connections without losing a request.
 */
describe('connections to the service process (dist/main.js)', () => {
  const upstream = new FakePicsum();
  const running = new Set<ServiceProcess>();
  const sockets = new Set<Socket>();
  let cacheDir: string;

  async function start(
    env: Record<string, string>,
    nodeOptions: string[] = [],
  ): Promise<{ service: ServiceProcess; url: string; port: number }> {
    const { service, url } = await ServiceProcess.start(
      { PICSUM_BASE_URL: upstream.baseUrl, CACHE_DIR: cacheDir, ...env },
      nodeOptions,
    );
    running.add(service);
    return { service, url, port: Number(new URL(url).port) };
  }

  async function openSocket(port: number): Promise<Socket> {
    const socket = await open(port);
    socket.on('error', () => undefined);
    sockets.add(socket);
    return socket;
  }

  beforeAll(() => upstream.start());
  afterAll(() => upstream.stop());
  beforeEach(async () => {
    upstream.reset();
    upstream.jpegBytes = 0;
    cacheDir = await makeCacheDir();
  });
  afterEach(async () => {
    for (const socket of sockets) {
      socket.destroy();
    }
    sockets.clear();
    for (const service of running) {
      service.kill('SIGKILL');
      await service.exited;
    }
    running.clear();
    await rm(cacheDir, { recursive: true, force: true });
  });

  it('cuts clients that never read their reply after CLIENT_IDLE_TIMEOUT_MS, and their memory goes back', async () => {
    const clients = 20;
    // Larger than what the kernel buffers for a socket, so most of each reply stays in the
    // service's memory while its client does not read; the memory tier is off, so each reply
    // holds a buffer of its own, as with many distinct variants.
    upstream.jpegBytes = 8 * MIB;
    const { service, url, port } = await start(
      {
        CLIENT_IDLE_TIMEOUT_MS: '2000',
        CACHE_MEMORY_MAX_SIZE: '0',
        UPSTREAM_MAX_BYTES: String(16 * MIB),
      },
      [
        '--expose-gc',
        '--require',
        join(__dirname, '..', 'support', 'gc-on-signal.js'),
      ],
    );
    /**
     * The memory still referenced after a full garbage collection (heap and external, the
     * buffers' memory), as the service prints it: RSS would also count pages malloc keeps
     * after they are freed, which it returns to the system late or never.
     */
    async function referencedBytes(): Promise<number> {
      const printed = service.output.split('after-gc ').length;
      service.kill('SIGUSR2');
      for (let waited = 0; waited < 5000; waited += 50) {
        const lines = service.output.split('after-gc ');
        if (lines.length > printed) {
          const { external, heapUsed } = JSON.parse(
            lines[lines.length - 1].split('\n')[0],
          ) as { external: number; heapUsed: number };
          return external + heapUsed;
        }
        await sleep(50);
      }
      throw new Error('the service printed nothing after SIGUSR2');
    }
    const paths = Array.from(
      { length: clients },
      (_, i) => `/image?width=${100 + i}`,
    );
    for (const path of paths) {
      await (await fetch(`${url}${path}`)).arrayBuffer();
    }
    const baseline = await referencedBytes();
    const baselineRss = await residentBytes(service.pid as number);

    const readers = await Promise.all(paths.map(() => openSocket(port)));
    const readerPorts = readers.map((socket) => socket.localPort as number);
    readers.forEach((socket, i) => {
      socket.write(`GET ${paths[i]} HTTP/1.1\r\nHost: test\r\n\r\n`);
      socket.pause(); // and never read
    });
    let peak = 0;
    const deadline = Date.now() + 10_000;
    let stillOpen = readerPorts.length;
    while (Date.now() < deadline && stillOpen > 0) {
      await sleep(200);
      peak = Math.max(peak, await residentBytes(service.pid as number));
      // Counted on the server's side: a client that does not read never notices the close.
      const peers = await establishedPeers(port);
      stillOpen = readerPorts.filter((p) => peers.includes(p)).length;
    }
    const after = await referencedBytes();

    process.stdout.write(
      `never-reading clients: RSS ${Math.round(baselineRss / MIB)} MiB before, peak ${Math.round(peak / MIB)} MiB; referenced after a full GC ${Math.round(baseline / MIB)} MiB before, ${Math.round(after / MIB)} MiB after the cut\n`,
    );
    expect(stillOpen).toBe(0);
    // The stalled replies really did hold memory: the test would catch a server that keeps them.
    expect(peak - baselineRss).toBeGreaterThan(60 * MIB);
    // 20 replies of 8 MiB were held; after the cut, not even one of them is still referenced.
    expect(after - baseline).toBeLessThan(8 * MIB);
  }, 60_000);

  it('holds at most MAX_CONNECTIONS connections, closing the ones past it', async () => {
    const { url, port } = await start({ MAX_CONNECTIONS: '3' });
    const held = await Promise.all([1, 2, 3].map(() => openSocket(port)));
    await sleep(100);

    const extra = await openSocket(port);
    const extraClosed = await new Promise<boolean>((resolve) => {
      extra.on('close', () => resolve(true));
      setTimeout(() => resolve(false), 2000);
    });
    held[0].destroy();
    await sleep(100);
    const afterOneLeft = await fetch(`${url}/health/live`, {
      headers: { connection: 'close' },
    });

    expect(extraClosed).toBe(true);
    expect(afterOneLeft.status).toBe(200);
  });

  it('loses no request of 50 busy keep-alive connections to a SIGTERM: each is closed after a reply with Connection: close', async () => {
    const { service, url } = await start({ SHUTDOWN_DRAIN_MS: '1500' });
    await (await fetch(`${url}/image`)).arrayBuffer();
    const agent = new Agent({ keepAlive: true, maxSockets: 50 });
    const failures: string[] = [];
    let replies = 0;
    let terminated = false;

    /** Requests /image over and over until a reply says the connection closes. */
    async function client(): Promise<void> {
      const deadline = Date.now() + 10_000;
      while (Date.now() < deadline) {
        const closing = await new Promise<boolean>((resolve) => {
          get(`${url}/image`, { agent }, (response) => {
            response.resume();
            response.on('end', () => {
              replies += 1;
              if (response.statusCode !== 200) {
                failures.push(`status ${response.statusCode}`);
              }
              resolve(response.headers.connection === 'close');
            });
          }).on('error', (error) => {
            failures.push(error.message);
            resolve(true);
          });
        });
        if (closing) {
          return;
        }
      }
      failures.push('never told to close');
    }

    const clients = Array.from({ length: 50 }, () => client());
    await sleep(300);
    const repliesBeforeSignal = replies;
    service.kill('SIGTERM');
    terminated = true;
    await Promise.all(clients);
    const exit = await service.exited;
    agent.destroy();

    expect(terminated).toBe(true);
    expect(repliesBeforeSignal).toBeGreaterThan(50);
    expect(failures).toEqual([]);
    expect(exit).toEqual({ code: 0, signal: null });
  }, 30_000);

  it('closes a keep-alive connection whose request was still waiting for the upstream when the drain ended, once answered, so the process exits', async () => {
    const { service, url } = await start({ SHUTDOWN_DRAIN_MS: '500' });
    // Per hop: 2 s in all, past the drain; the request arrived before it, without Connection: close.
    upstream.delayMs = 1000;
    const agent = new Agent({ keepAlive: true });
    const reply = new Promise<{ status?: number; connection?: string }>(
      (resolve, reject) => {
        get(`${url}/image?width=300&height=200`, { agent }, (response) => {
          response.resume();
          response.on('end', () =>
            resolve({
              status: response.statusCode,
              connection: response.headers.connection,
            }),
          );
        }).on('error', reject);
      },
    );
    await sleep(200);
    service.kill('SIGTERM');
    const answered = await reply;
    // The client keeps its connection open; the service must close it (Node would keep it
    // for keepAliveTimeout, 72 s, and the kubelet would SIGKILL the container first).
    const exit = await Promise.race([
      service.exited,
      sleep(5000).then(() => 'still running 5 s after the reply'),
    ]);
    agent.destroy();

    expect(answered).toEqual({ status: 200, connection: 'keep-alive' });
    expect(exit).toEqual({ code: 0, signal: null });
  }, 30_000);
});
