import { TimeoutError } from '@redis/client';
import {
  describeWithRedis,
  RedisServer,
} from '../../../../test/support/redis-server';
import {
  createRedisClient,
  type RedisClient,
  withDeadline,
} from './redis-client';

describe(withDeadline.name, () => {
  it('passes a reply that comes in time', async () => {
    await expect(withDeadline(Promise.resolve('PONG'), 50)).resolves.toBe(
      'PONG',
    );
  });

  it('fails with a TimeoutError when the reply does not come, as from a hung server', async () => {
    const never = new Promise<string>(() => undefined);

    await expect(withDeadline(never, 20)).rejects.toBeInstanceOf(TimeoutError);
  });
});

describeWithRedis()(createRedisClient.name, () => {
  let server: RedisServer;
  const clients: RedisClient[] = [];

  beforeAll(async () => {
    server = await RedisServer.start(['--requirepass', 'right']);
  });
  afterEach(() => {
    for (const client of clients.splice(0)) {
      client.destroy();
    }
  });
  afterAll(() => server.stop());

  function clientFor(url: string, password?: string): RedisClient {
    const client = createRedisClient(
      {
        urls: [url],
        cluster: false,
        displayName: url,
        password,
        keyPrefix: 'test:',
        commandTimeoutMs: 1000,
        lockTtlMs: 1000,
      } as never,
      () => false,
    );
    client.on('error', () => undefined);
    clients.push(client);
    return client;
  }

  it('lets REDIS_PASSWORD win over a password in the URL', async () => {
    const client = clientFor(
      `redis://:wrong@127.0.0.1:${server.port}`,
      'right',
    );

    await client.connect();
    await client.set('k', 'v', { expiration: { type: 'PX', value: 1000 } });

    expect((await client.get('k'))?.toString()).toBe('v');
  });

  it('reads values as Buffers, so image bytes come back exactly', async () => {
    const client = clientFor(`redis://:right@127.0.0.1:${server.port}`);
    const bytes = Buffer.from([0xff, 0xd8, 0x00, 0x80, 0xff, 0xd9]);

    await client.connect();
    await client.set('bytes', bytes, {
      expiration: { type: 'PX', value: 1000 },
    });

    expect(await client.get('bytes')).toEqual(bytes);
  });

  it('fails a command at once while disconnected instead of queueing it', async () => {
    const client = clientFor(`redis://:right@127.0.0.1:${server.port}`);

    await expect(client.get('k')).rejects.toThrow();
  });
});
