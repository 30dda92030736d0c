import { rm } from 'node:fs/promises';
import { FakePicsum } from '../fake-picsum/fake-picsum.server';
import { describeWithRedis, RedisServer } from '../support/redis-server';
import { ServiceProcess } from '../support/service-process';
import { makeCacheDir } from '../support/test-app';

/** One JSON log line as the service writes it in production. */
interface LogLine {
  time: string;
  level: string;
  message: string;
  context?: string;
  requestId?: string;
  [field: string]: unknown;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * The logs of the built service (`dist/main.js`): JSON lines in production with time, level,
 * message and context; request ids taken or made, echoed and logged; nothing at `info` for a
 * hit; one line per upstream fetch; access lines at `debug`; and no credential in any line.
 */
describeWithRedis()('logs (dist/main.js)', () => {
  const upstream = new FakePicsum();
  const started: { service: ServiceProcess; cacheDir: string }[] = [];
  const PASSWORD = 'pa55-in-url-9f3c';
  const SECRET_PASSWORD = 'from-secret-77d1';
  const TOKEN = 'bearer-token-5e8a';
  let redis: RedisServer;

  async function start(env: Record<string, string>) {
    const cacheDir = await makeCacheDir();
    const { service, url } = await ServiceProcess.start({
      PICSUM_BASE_URL: upstream.baseUrl,
      CACHE_DIR: cacheDir,
      NODE_ENV: 'production',
      ...env,
    });
    started.push({ service, cacheDir });
    return { service, url };
  }

  async function get(url: string, headers: Record<string, string> = {}) {
    const response = await fetch(url, { headers });
    await response.arrayBuffer();
    return response;
  }

  function jsonLines(output: string): LogLine[] {
    return output
      .split('\n')
      .filter((line) => line.trim() !== '')
      .map((line) => JSON.parse(line) as LogLine);
  }

  beforeAll(async () => {
    await upstream.start();
    redis = await RedisServer.start(['--requirepass', SECRET_PASSWORD]);
  });

  afterEach(async () => {
    for (const { service, cacheDir } of started.splice(0)) {
      service.kill('SIGKILL');
      await service.exited;
      await rm(cacheDir, { recursive: true, force: true });
    }
  });

  afterAll(async () => {
    await redis.stop();
    await upstream.stop();
  });

  it('writes JSON lines in production: no line for a hit at info, one line per upstream fetch, the request id echoed and logged', async () => {
    const { service, url } = await start({});

    const miss = await get(`${url}/image`, {
      'x-request-id': 'trace-0001.a:b',
    });
    const linesAfterMiss = jsonLines(service.output).length;
    const hits = [];
    for (let hit = 0; hit < 20; hit++) {
      hits.push(await get(`${url}/image`));
    }
    const unsafe = await get(`${url}/image`, { 'x-request-id': 'a b<script>' });
    const tooLong = await get(`${url}/image`, {
      'x-request-id': 'x'.repeat(65),
    });
    await sleep(200);
    const lines = jsonLines(service.output);

    for (const line of lines) {
      expect(Date.parse(line.time)).not.toBeNaN();
      expect(['info', 'warn', 'error', 'debug']).toContain(line.level);
      expect(typeof line.message).toBe('string');
    }
    expect(
      lines
        .filter((line) => line.context === undefined)
        .map((line) => line.message),
    ).toEqual([]);
    expect(miss.headers.get('x-request-id')).toBe('trace-0001.a:b');
    expect(unsafe.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
    expect(tooLong.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
    expect(
      new Set(hits.map((hit) => hit.headers.get('x-request-id'))).size,
    ).toBe(20);
    // Nothing more was logged for the 22 hits.
    expect(lines).toHaveLength(linesAfterMiss);
    const fetches = lines.filter((line) => line.context === 'PicsumClient');
    expect(fetches).toHaveLength(1);
    expect(fetches[0]).toMatchObject({
      level: 'info',
      requestId: 'trace-0001.a:b',
    });
    expect(fetches[0].message).toMatch(
      /^Upstream fetch of 1200x1200 from http:\/\/127\.0\.0\.1:\d+\/id\/\d+\/1200\/1200\.jpg\S*: success, \d+ bytes of image\/jpeg in \d+ ms$/,
    );
  });

  it('writes access lines at LOG_LEVEL=debug, with the method, URL, status and request id, never a header', async () => {
    const { service, url } = await start({ LOG_LEVEL: 'debug' });

    await get(`${url}/health/live`, {
      'x-request-id': 'probe-1',
      authorization: `Bearer ${TOKEN}`,
    });
    await sleep(200);
    const access = jsonLines(service.output).filter(
      (line) => line.requestId === 'probe-1',
    );

    expect(access).toEqual([
      expect.objectContaining({
        level: 'debug',
        req: { method: 'GET', url: '/health/live' },
        res: { statusCode: 200 },
        message: expect.stringMatching(
          /^GET \/health\/live 200 in \d+ ms$/,
        ) as unknown,
      }),
    ]);
    expect(service.output).not.toContain(TOKEN);
  });

  it('never logs a password, a token or REDIS_URL credentials, at debug either, when Redis refuses them or goes away', async () => {
    const { service, url } = await start({
      LOG_LEVEL: 'debug',
      // The URL's password is wrong; REDIS_PASSWORD, which overrides it, is right.
      REDIS_URL: `redis://default:${PASSWORD}@127.0.0.1:${redis.port}`,
      REDIS_PASSWORD: SECRET_PASSWORD,
    });
    await get(`${url}/image`, {
      authorization: `Bearer ${TOKEN}`,
      cookie: `session=${TOKEN}`,
    });
    await redis.kill();
    await get(`${url}/image?width=300&height=300`, {
      authorization: `Bearer ${TOKEN}`,
    });
    await sleep(1500);
    await redis.restart();
    await sleep(1500);
    await get(`${url}/image?width=301&height=300`);
    await sleep(200);

    expect(service.output).toContain('redis://default:***@127.0.0.1');
    for (const secret of [PASSWORD, SECRET_PASSWORD, TOKEN]) {
      expect(service.output).not.toContain(secret);
    }
  });

  it('writes readable lines with LOG_FORMAT=pretty, and refuses an unknown LOG_FORMAT naming it', async () => {
    const { service, url } = await start({ LOG_FORMAT: 'pretty' });
    await get(`${url}/image`);
    await sleep(200);

    const refused = ServiceProcess.spawn({
      LOG_FORMAT: 'xml',
      CACHE_DIR: '/tmp',
    });
    await refused.exited;

    expect(service.output).toMatch(
      /INFO.*\[PicsumClient\] Upstream fetch of 1200x1200 from /,
    );
    expect(
      service.output.split('\n').some((line) => line.startsWith('{')),
    ).toBe(false);
    expect(refused.output).toContain(
      'LOG_FORMAT="xml" is not allowed: expected json or pretty',
    );
  });
});
