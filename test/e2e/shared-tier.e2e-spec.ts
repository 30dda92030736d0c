import { rm } from 'node:fs/promises';
import { createClient, RESP_TYPES } from '@redis/client';
import { FakePicsum } from '../fake-picsum/fake-picsum.server';
import { get, type Reply, sleep, waitFor } from '../support/http-get';
import {
  describeWithRedis,
  RedisCluster,
  useRedisServer,
} from '../support/redis-server';
import { ServiceProcess } from '../support/service-process';
import { makeCacheDir } from '../support/test-app';

const REQUESTS_PER_REPLICA = 30;
const COMMAND_TIMEOUT_MS = 300;

/** A running replica: a real `node dist/main.js` with a `CACHE_DIR` of its own. */
interface Replica {
  readonly service: ServiceProcess;
  readonly url: string;
  readonly cacheDir: string;
}

function distinct<T>(values: T[]): T[] {
  return [...new Set(values)];
}

/**
 * Several replicas of the built service, each with its own `CACHE_DIR`, sharing one real Redis
 * (or a real 3-master Redis Cluster) and one fake Picsum: one fetch per variant per TTL across
 * them, the same image everywhere, and Redis outages that no request notices.
 */
describeWithRedis()('several replicas sharing a Redis (dist/main.js)', () => {
  const upstream = new FakePicsum();
  const replicas: Replica[] = [];
  const redis = useRedisServer();

  async function startReplica(env: Record<string, string>): Promise<Replica> {
    const cacheDir = await makeCacheDir();
    const { service, url } = await ServiceProcess.start({
      PICSUM_BASE_URL: upstream.baseUrl,
      CACHE_DIR: cacheDir,
      REDIS_COMMAND_TIMEOUT_MS: String(COMMAND_TIMEOUT_MS),
      ...env,
    });
    const replica = { service, url, cacheDir };
    replicas.push(replica);
    return replica;
  }

  function startReplicas(
    count: number,
    env: Record<string, string>,
  ): Promise<Replica[]> {
    return Promise.all(Array.from({ length: count }, () => startReplica(env)));
  }

  /** `perReplica` concurrent requests to every replica at once. */
  function burst(
    targets: Replica[],
    path = '/image',
    perReplica = REQUESTS_PER_REPLICA,
  ): Promise<Reply[]> {
    return Promise.all(
      targets.flatMap((replica) =>
        Array.from({ length: perReplica }, () => get(`${replica.url}${path}`)),
      ),
    );
  }

  async function readiness(replica: Replica) {
    const response = await fetch(`${replica.url}/health/ready`);
    const body = (await response.json()) as {
      info?: { sharedCache?: { connected?: boolean } };
    };
    return { status: response.status, sharedCache: body.info?.sharedCache };
  }

  beforeAll(() => upstream.start());

  afterAll(() => upstream.stop());

  beforeEach(() => {
    upstream.reset();
  });

  afterEach(async () => {
    for (const { service, cacheDir } of replicas.splice(0)) {
      service.kill('SIGKILL');
      await service.exited;
      await rm(cacheDir, { recursive: true, force: true });
    }
  });

  /**
   * Scenarios a and b: one fetch for a cold burst, one more after the TTL, one ETag each time.
   * A fourth replica is started with the three and left idle, so that a slow start on a busy
   * machine cannot outlast the short TTL before it is asked.
   */
  async function expectOneFetchPerTtl(env: Record<string, string>) {
    const ttlSeconds = 2;
    upstream.delayMs = 200;
    const [idle, ...three] = await startReplicas(4, {
      ...env,
      CACHE_TTL_SECONDS: String(ttlSeconds),
    });

    const cold = await burst(three);
    const coldFetches = upstream.fetches;
    await sleep(ttlSeconds * 1000 + 100);
    const expired = await burst(three);

    expect(cold.filter((reply) => reply.status !== 200)).toEqual([]);
    expect(coldFetches).toBe(1);
    expect(distinct(cold.map((reply) => reply.etag))).toHaveLength(1);
    expect(expired.filter((reply) => reply.status !== 200)).toEqual([]);
    expect(upstream.fetches).toBe(2);
    const etags = distinct(expired.map((reply) => reply.etag));
    expect(etags).toHaveLength(1);
    expect(etags[0]).not.toBe(cold[0].etag);
    return { idle, etag: etags[0] };
  }

  it('3 replicas make 1 fetch for 90 cold requests and 1 after the TTL, all with one ETag; a 4th with an empty CACHE_DIR makes none', async () => {
    const env = { REDIS_URL: redis().url };
    const { idle, etag } = await expectOneFetchPerTtl(env);

    const reply = await get(`${idle.url}/image`);

    expect(reply).toMatchObject({ status: 200, etag });
    expect(reply.cacheStatus).toMatch(
      /^image-cache; hit; ttl=[0-2]; detail=shared$/,
    );
    expect(upstream.fetches).toBe(2);
  });

  it('sends Redis no command for a hit in memory', async () => {
    const replica = await startReplica({ REDIS_URL: redis().url });
    await get(`${replica.url}/image`);
    const commands = async () =>
      Number(
        /total_commands_processed:(\d+)/.exec(
          await redis().cli('info', 'stats'),
        )?.[1],
      );

    const before = await commands();
    const hits = await burst([replica], '/image', 100);
    const after = await commands();

    expect(hits.every((reply) => reply.status === 200)).toBe(true);
    expect(after - before).toBe(1); // the first INFO itself
  });

  it('an upstream failure is met once across replicas: one failed fetch, every replica serves its stale copy at once', async () => {
    const three = await startReplicas(3, {
      REDIS_URL: redis().url,
      CACHE_TTL_SECONDS: '1',
    });
    const fresh = await burst(three, '/image', 1);
    await sleep(1100);
    upstream.mode = 'server-error';
    upstream.delayMs = 300;

    const stale = await burst(three, '/image', 10);
    const again = await burst(three, '/image', 2);

    expect(distinct(fresh.map((reply) => reply.etag))).toHaveLength(1);
    expect([...stale, ...again].map((reply) => reply.status)).toEqual(
      Array.from({ length: 36 }, () => 200),
    );
    expect(distinct([...stale, ...again].map((reply) => reply.etag))).toEqual([
      fresh[0].etag,
    ]);
    // 1 fetch to warm, then 1 failed one for all three replicas, and none within the retry window.
    expect(upstream.fetches).toBe(2);
  });

  it('Redis killed under traffic fails no request and keeps readiness 200, logging it at most twice per replica; restarted, it is used again within 5 s', async () => {
    const three = await startReplicas(3, { REDIS_URL: redis().url });
    await burst(three, '/image', 1);
    const outputBefore = three.map(({ service }) => service.output.length);

    const replies: Reply[] = [];
    // Counted, not timed: the traffic goes on until 60 replies have come after the kill,
    // however slow the machine is.
    let stop = false;
    let killedAt = Infinity;
    const traffic = (async () => {
      for (
        let round = 0;
        round < 2000 && !(stop && replies.length - killedAt >= 60);
        round += 1
      ) {
        // New variants too, so that requests need the shared tier, not only memory.
        replies.push(
          ...(await burst(three, `/image?width=${100 + round}&height=100`, 2)),
          ...(await burst(three, '/image', 2)),
        );
      }
    })();
    await waitFor(() => replies.length >= 24, 20_000);
    await redis().kill();
    killedAt = replies.length;
    await sleep(1500);
    const down = await Promise.all(three.map(readiness));
    stop = true;
    await traffic;

    expect(killedAt).toBeGreaterThan(0);
    expect(replies.length - killedAt).toBeGreaterThanOrEqual(60);
    expect(replies.filter((reply) => reply.status !== 200)).toEqual([]);
    expect(down).toEqual(
      three.map(() => ({
        status: 200,
        sharedCache: expect.objectContaining({ connected: false }) as unknown,
      })),
    );

    await redis().restart();
    const reconnectMs = await waitFor(
      async () =>
        (await Promise.all(three.map(readiness))).every(
          (ready) => ready.sharedCache?.connected === true,
        ),
      5000,
    );
    const fetchesBefore = upstream.fetches;
    const stored = await get(`${three[0].url}/image?grayscale`);
    const others = await Promise.all(
      three.slice(1).map(({ url }) => get(`${url}/image?grayscale`)),
    );

    expect(reconnectMs).toBeLessThan(5000);
    expect(upstream.fetches).toBe(fetchesBefore + 1);
    expect(others.map((reply) => reply.etag)).toEqual([
      stored.etag,
      stored.etag,
    ]);
    three.forEach(({ service }, index) => {
      const lines = service.output
        .slice(outputBefore[index])
        .split('\n')
        .filter((line) => /Redis/.test(line));
      expect(lines.length).toBeGreaterThanOrEqual(1);
      expect(lines.length).toBeLessThanOrEqual(2);
    });
    process.stdout.write(
      `d: ${replies.length} requests (${replies.length - killedAt} after the kill), 0 failed; reconnected after ${Math.round(reconnectMs)} ms\n`,
    );
  }, 60_000);

  it('a replica started while Redis is down serves at once and takes the shared tier up when Redis comes', async () => {
    await redis().kill();
    const replica = await startReplica({ REDIS_URL: redis().url });

    const whileDown = await get(`${replica.url}/image`);
    await redis().restart();
    await waitFor(
      async () => (await readiness(replica)).sharedCache?.connected === true,
      5000,
    );
    await get(`${replica.url}/image?grayscale`);

    expect(whileDown.status).toBe(200);
    expect(await redis().cli('--raw', 'keys', '*')).toBe(
      'image-cache:{1200x1200-grayscale}:image',
    );
  });

  it('with Redis hung (SIGSTOP), requests are answered within REDIS_COMMAND_TIMEOUT_MS plus their usual latency', async () => {
    const three = await startReplicas(3, { REDIS_URL: redis().url });
    // Small new variants: each request asks Redis, and the fake draws each image quickly.
    const usual = await burst(three, '/image?width=100&height=100', 5);
    const usualMs = Math.max(...usual.map((reply) => reply.ms));

    redis().signal('SIGSTOP');
    let hung: Reply[];
    try {
      hung = [];
      for (let width = 101; width <= 105; width += 1) {
        hung.push(
          ...(await burst(three, `/image?width=${width}&height=100`, 5)),
        );
      }
    } finally {
      redis().signal('SIGCONT');
    }
    const slowestMs = Math.max(...hung.map((reply) => reply.ms));

    expect(hung.filter((reply) => reply.status !== 200)).toEqual([]);
    expect(slowestMs).toBeLessThan(COMMAND_TIMEOUT_MS + usualMs + 250);
    process.stdout.write(
      `e: ${hung.length} requests with Redis hung, slowest ${Math.round(slowestMs)} ms (usual slowest ${Math.round(usualMs)} ms, timeout ${COMMAND_TIMEOUT_MS} ms)\n`,
    );
  }, 60_000);

  it('when the replica holding the lock is killed mid-fetch, another takes over with exactly 1 more fetch, within UPSTREAM_TIMEOUT_MS plus the lock TTL', async () => {
    const upstreamTimeoutMs = 3000;
    const queueTimeoutMs = 500;
    // As SharedCacheConfig computes it: queue timeout + upstream timeout + 2 s.
    const lockTtlMs = queueTimeoutMs + upstreamTimeoutMs + 2000;
    const three = await startReplicas(3, {
      REDIS_URL: redis().url,
      UPSTREAM_TIMEOUT_MS: String(upstreamTimeoutMs),
      UPSTREAM_QUEUE_TIMEOUT_MS: String(queueTimeoutMs),
    });
    upstream.delayMs = 800; // per hop: about 1.6 s a fetch
    const [holder, ...waiting] = three;

    void get(`${holder.url}/image`);
    await waitFor(() => upstream.fetches === 1, 5000);
    const waiters = burst(waiting, '/image', 5);
    await sleep(200);
    holder.service.kill('SIGKILL');
    const started = performance.now();
    const replies = await waiters;
    const slowestMs = Math.max(...replies.map((reply) => reply.ms));

    expect(replies.filter((reply) => reply.status !== 200)).toEqual([]);
    expect(distinct(replies.map((reply) => reply.etag))).toHaveLength(1);
    expect(upstream.fetches).toBe(2);
    expect(slowestMs).toBeLessThan(upstreamTimeoutMs + lockTtlMs);
    process.stdout.write(
      `f: lock holder killed; ${replies.length} waiting requests served after ${Math.round(performance.now() - started)} ms, slowest ${Math.round(slowestMs)} ms, upstream fetches 2\n`,
    );
  }, 60_000);

  describe('g: on a 3-master Redis Cluster', () => {
    let cluster: RedisCluster;

    beforeAll(async () => {
      cluster = await RedisCluster.start();
    }, 30_000);

    afterAll(async () => {
      await cluster?.stop();
    });

    it('a and b hold: 1 fetch for 90 cold requests, 1 after the TTL, one ETag each time', async () => {
      await expectOneFetchPerTtl({ REDIS_CLUSTER_URLS: cluster.urls });
    });
  });

  it('prefetch across replicas: under the shared-tier lock, one fetch per TTL for all, and every replica turns to the same next image at expiry', async () => {
    const ttlSeconds = 3;
    const two = await startReplicas(2, {
      REDIS_URL: redis().url,
      CACHE_TTL_SECONDS: String(ttlSeconds),
      CACHE_PREFETCH_SECONDS: '1',
    });
    upstream.delayMs = 200;
    const first = await get(`${two[0].url}/image`);
    const startedAt = Date.now();

    // Both replicas asked together for parts of 3 TTLs, until 7.5 s: expiries at 3 and 6 s,
    // prefetch windows from 2 and 5 s; the next window, at 8 s, is not reached.
    const stream: Reply[][] = [];
    while (Date.now() - startedAt < 3 * ttlSeconds * 1000 - 1500) {
      stream.push(await Promise.all(two.map(({ url }) => get(`${url}/image`))));
      await sleep(20);
    }

    const etags = distinct(stream.flat().map((reply) => reply.etag));
    const prefetched = stream
      .flat()
      .filter((reply) => /detail=prefetched/.test(reply.cacheStatus ?? ''));
    process.stdout.write(
      `prefetch on 2 replicas: ${stream.length * 2} requests, ${upstream.fetches} fetches, ${etags.length} images, ${prefetched.length} prefetched promotions, slowest ${Math.round(Math.max(...stream.flat().map((reply) => reply.ms)))} ms\n`,
    );
    expect(stream.flat().every((reply) => reply.status === 200)).toBe(true);
    expect(stream.flat().every((reply) => reply.xCache === 'HIT')).toBe(true);
    expect(etags[0]).toBe(first.etag);
    expect(etags).toHaveLength(3);
    expect(upstream.fetches).toBe(3); // the first, then one prefetch for both replicas per expiry
    // A pair of requests made at the same moment never sees two images, but at a boundary.
    const split = stream.filter(([a, b]) => a.etag !== b.etag);
    expect(split.length).toBeLessThanOrEqual(2);
  }, 30_000);

  it('stale-while-revalidate across replicas: all serve the stale image at once, one background fetch replaces it for all', async () => {
    const three = await startReplicas(3, {
      REDIS_URL: redis().url,
      CACHE_TTL_SECONDS: '1',
      CACHE_STALE_WHILE_REVALIDATE_SECONDS: '30',
    });
    const fresh = await burst(three, '/image', 1);
    await sleep(1100);
    upstream.delayMs = 500;

    const stale = await burst(three, '/image', 5);
    await waitFor(async () => {
      const replies = await burst(three, '/image', 1);
      return replies.every((reply) => reply.xCache === 'HIT');
    }, 5000);
    const replaced = await burst(three, '/image', 2);

    expect(distinct(fresh.map((reply) => reply.etag))).toHaveLength(1);
    expect(
      distinct(stale.map((reply) => [reply.xCache, reply.etag].join(' '))),
    ).toEqual([`STALE ${fresh[0].etag}`]);
    expect(distinct(replaced.map((reply) => reply.etag))).toHaveLength(1);
    expect(replaced[0].etag).not.toBe(fresh[0].etag);
    expect(upstream.fetches).toBe(2);
  });

  it('admin refresh and purge on one replica reach every replica through the shared tier; the token is never logged', async () => {
    const token = 'shared-admin-token-0123456789abcdef012345';
    const two = await startReplicas(2, {
      REDIS_URL: redis().url,
      ADMIN_TOKEN: token,
    });
    const before = await Promise.all(two.map(({ url }) => get(`${url}/image`)));

    const refreshed = await fetch(`${two[0].url}/admin/refresh`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}` },
    });
    const info = (await refreshed.json()) as { etag: string };
    await sleep(200); // the notice reaches the other replica
    const afterRefresh = await Promise.all(
      two.map(({ url }) => get(`${url}/image`)),
    );
    await sleep(200); // the copy to the second replica's disk is not waited for
    const listed = (await (
      await fetch(`${two[1].url}/admin/entries`, {
        headers: { authorization: `Bearer ${token}` },
      })
    ).json()) as { entries: { key: string; tiers: string[] }[] };
    const purged = await fetch(`${two[1].url}/admin/cache?all=true`, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${token}` },
    });
    const purgedBody = (await purged.json()) as { removed: number };
    await sleep(200);
    const keysAfterPurge = await redis().cli('--raw', 'keys', '*');
    const afterPurge = await get(`${two[0].url}/image`);
    await fetch(`${two[0].url}/admin/entries`, {
      headers: { authorization: `Bearer ${token}x` },
    });
    // The refusal is logged before the reply is sent, but the child's output comes through a
    // pipe of its own, which may deliver it after the reply.
    await waitFor(
      () =>
        two[0].service.output.includes(
          'Refused GET /admin/entries from 127.0.0.1: a wrong bearer token',
        ),
      5000,
    ).catch(() => undefined);

    expect(refreshed.status).toBe(200);
    expect(distinct(before.map((reply) => reply.etag))).toHaveLength(1);
    expect(info.etag).not.toBe(before[0].etag);
    expect(afterRefresh.map((reply) => reply.etag)).toEqual([
      info.etag,
      info.etag,
    ]);
    expect(listed.entries).toEqual([
      expect.objectContaining({
        key: '1200x1200',
        tiers: ['memory', 'disk', 'shared'],
        stale: false,
      }),
    ]);
    expect(purged.status).toBe(200);
    expect(purgedBody.removed).toBe(1);
    expect(keysAfterPurge).toBe('');
    expect(afterPurge.xCache).toBe('MISS');
    expect(afterPurge.etag).not.toBe(info.etag);
    expect(upstream.fetches).toBe(3);
    for (const { service } of two) {
      expect(service.output).not.toContain(token);
    }
    expect(two[0].service.output).toContain(
      'Refused GET /admin/entries from 127.0.0.1: a wrong bearer token',
    );
  });

  it('validates what anyone wrote to Redis: an entry from the future, a failure for ever, a lock that never expires cost no request a 500 or a wait', async () => {
    const token = 'shared-admin-token-0123456789abcdef012345';
    const two = await startReplicas(2, {
      REDIS_URL: redis().url,
      ADMIN_TOKEN: token,
      UPSTREAM_TIMEOUT_MS: '2000',
    });
    const neighbour = createClient({ url: redis().url });
    await neighbour.connect();
    try {
      // Copied from a real entry, with only its fetch time moved to year 287,000.
      await get(`${two[0].url}/image`);
      const entry = await neighbour
        .withTypeMapping({ [RESP_TYPES.BLOB_STRING]: Buffer })
        .get('image-cache:{1200x1200}:image');
      const headerEnd = 4 + entry!.readUInt32BE(0);
      const header = JSON.parse(entry!.subarray(4, headerEnd).toString()) as {
        fetchedAt: number;
      };
      header.fetchedAt = 9e15;
      const forged = Buffer.from(JSON.stringify(header));
      const length = Buffer.alloc(4);
      length.writeUInt32BE(forged.length);
      await neighbour.set(
        'image-cache:{300x200}:image',
        Buffer.concat([length, forged, entry!.subarray(headerEnd)]),
      );
      await neighbour.set(
        'image-cache:{400x300}:failed',
        JSON.stringify({
          type: 'failed',
          from: 'neighbour',
          key: '400x300',
          status: 599,
          message: 'Gone for ever, call 555-0100',
          retryAfterMs: 1e15,
        }),
      );
      await neighbour.set('image-cache:{500x400}:lock', 'never released');

      const started = Date.now();
      const replies = await Promise.all(
        two.flatMap(({ url }) =>
          [
            'width=300&height=200',
            'width=400&height=300',
            'width=500&height=400',
          ].map((query) => get(`${url}/image?${query}`)),
        ),
      );
      const elapsedMs = Date.now() - started;
      const auxiliary = await Promise.all(
        two.flatMap(({ url }) => [
          fetch(`${url}/image/info?width=300&height=200`),
          fetch(`${url}/status`),
          fetch(`${url}/admin/entries`, {
            headers: { authorization: `Bearer ${token}` },
          }),
        ]),
      );
      const metrics = await (await fetch(`${two[0].url}/metrics`)).text();

      expect(replies.map((reply) => reply.status)).toEqual(Array(6).fill(200));
      expect(elapsedMs).toBeLessThan(10_000);
      expect(auxiliary.map((reply) => reply.status)).toEqual(
        Array(6).fill(200),
      );
      expect(metrics).toMatch(
        /image_cache_shared_rejected_total\{kind="(entry|lock|failure)"\} [1-9]/,
      );
      expect(await neighbour.pTTL('image-cache:{500x400}:lock')).not.toBe(-1);
    } finally {
      neighbour.destroy();
    }
  });
});
