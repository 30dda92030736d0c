import { InvalidEnvironmentError, parseEnvironment } from './environment';

describe(parseEnvironment.name, () => {
  it('fills in the documented defaults', () => {
    const env = parseEnvironment({});

    expect(env).toEqual({
      PORT: 3000,
      HOST: '0.0.0.0',
      CACHE_DIR: './storage',
      CACHE_TTL_SECONDS: 600,
      CACHE_PREFETCH_SECONDS: 0,
      CACHE_STALE_WHILE_REVALIDATE_SECONDS: 0,
      PICSUM_BASE_URL: 'https://picsum.photos',
      IMAGE_WIDTH: 1200,
      UPSTREAM_TIMEOUT_MS: 30_000,
      UPSTREAM_MAX_BYTES: 20_971_520,
      UPSTREAM_RETRY_AFTER_SECONDS: 10,
      UPSTREAM_MAX_CONCURRENCY: 8,
      UPSTREAM_QUEUE_TIMEOUT_MS: 2000,
      CACHE_MEMORY_MAX_SIZE: 64 * 1024 * 1024,
      CACHE_DISK_MAX_SIZE: 512 * 1024 * 1024,
      CACHE_DISK_FSYNC: false,
      CACHE_CLEANUP_INTERVAL_SECONDS: 600,
      SHUTDOWN_DRAIN_MS: 5000,
      CLIENT_IDLE_TIMEOUT_MS: 30_000,
      MAX_CONNECTIONS: 1024,
      READINESS_DISK_CHECK_INTERVAL_MS: 5000,
      REDIS_KEY_PREFIX: 'image-cache:',
      REDIS_COMMAND_TIMEOUT_MS: 500,
      LOG_LEVEL: 'info',
    });
    expect(env.CACHE_STALE_IF_ERROR_SECONDS).toBeUndefined();
    expect(env.REDIS_URL).toBeUndefined();
    expect(env.ADMIN_TOKEN).toBeUndefined();
  });

  it('refuses a prefetch window as long as the TTL', () => {
    expect(() =>
      parseEnvironment({
        CACHE_TTL_SECONDS: '60',
        CACHE_PREFETCH_SECONDS: '60',
      }),
    ).toThrow(
      'CACHE_PREFETCH_SECONDS=60 is not allowed: expected less than CACHE_TTL_SECONDS (60), or 0 to turn prefetch off',
    );
    expect(
      parseEnvironment({
        CACHE_TTL_SECONDS: '60',
        CACHE_PREFETCH_SECONDS: '59',
      }).CACHE_PREFETCH_SECONDS,
    ).toBe(59);
  });

  it('refuses an admin token shorter than 32 characters without showing it', () => {
    const short = 'a-short-secret-token-0123456789';

    let message = '';
    try {
      parseEnvironment({ ADMIN_TOKEN: short });
    } catch (error) {
      message = (error as Error).message;
    }

    expect(message).toContain(
      'ADMIN_TOKEN=(hidden) is not allowed: expected 32 to 512 printable characters without blanks',
    );
    expect(message).not.toContain(short);
    expect(parseEnvironment({ ADMIN_TOKEN: `${short}xy` }).ADMIN_TOKEN).toBe(
      `${short}xy`,
    );
  });

  it('reads valid values and drops a trailing slash from the upstream URL', () => {
    const env = parseEnvironment({
      CACHE_TTL_SECONDS: '30',
      CACHE_STALE_IF_ERROR_SECONDS: '0',
      PICSUM_BASE_URL: 'http://127.0.0.1:8080/',
      IMAGE_WIDTH: '640',
      IMAGE_HEIGHT: '480',
    });

    expect(env).toMatchObject({
      CACHE_TTL_SECONDS: 30,
      CACHE_STALE_IF_ERROR_SECONDS: 0,
      PICSUM_BASE_URL: 'http://127.0.0.1:8080',
      IMAGE_WIDTH: 640,
      IMAGE_HEIGHT: 480,
    });
  });

  it('reads the allowed redirect hosts as a lower-cased list', () => {
    const env = parseEnvironment({
      UPSTREAM_ALLOWED_REDIRECT_HOSTS:
        'Fastly.Picsum.Photos, cdn.example.com,[::1]',
    });
    expect(env.UPSTREAM_ALLOWED_REDIRECT_HOSTS).toEqual([
      'fastly.picsum.photos',
      'cdn.example.com',
      '[::1]',
    ]);
  });

  it('reads sizes as bytes or Kubernetes quantities', () => {
    const env = parseEnvironment({
      CACHE_MEMORY_MAX_SIZE: '500M',
      CACHE_DISK_MAX_SIZE: '1Gi',
    });

    expect(env.CACHE_MEMORY_MAX_SIZE).toBe(500_000_000);
    expect(env.CACHE_DISK_MAX_SIZE).toBe(1_073_741_824);
    expect(
      parseEnvironment({ CACHE_MEMORY_MAX_SIZE: '0' }).CACHE_MEMORY_MAX_SIZE,
    ).toBe(0);
  });

  it('treats an empty value as unset', () => {
    const env = parseEnvironment({ CACHE_TTL_SECONDS: '', IMAGE_HEIGHT: ' ' });

    expect(env.CACHE_TTL_SECONDS).toBe(600);
    expect(env.IMAGE_HEIGHT).toBeUndefined();
  });

  it('reads CACHE_DISK_FSYNC as true or false only', () => {
    expect(
      parseEnvironment({ CACHE_DISK_FSYNC: 'true' }).CACHE_DISK_FSYNC,
    ).toBe(true);
    expect(
      parseEnvironment({ CACHE_DISK_FSYNC: 'false' }).CACHE_DISK_FSYNC,
    ).toBe(false);
  });

  it.each([
    ['CACHE_TTL_SECONDS', 'abc', 'an integer from 1 to 31536000'],
    ['CACHE_TTL_SECONDS', '0', 'an integer from 1 to 31536000'],
    ['CACHE_TTL_SECONDS', '-5', 'an integer from 1 to 31536000'],
    ['CACHE_TTL_SECONDS', '1.5', 'an integer from 1 to 31536000'],
    ['PORT', '70000', 'an integer from 0 to 65535'],
    ['PICSUM_BASE_URL', 'picsum.photos', 'an absolute http:// or https:// URL'],
    [
      'PICSUM_BASE_URL',
      'ftp://picsum.photos',
      'an absolute http:// or https:// URL',
    ],
    ['UPSTREAM_MAX_BYTES', '20MB', 'an integer from 1 to 1073741824'],
    [
      'CACHE_DISK_MAX_SIZE',
      '512MB',
      'a size in bytes or a Kubernetes quantity',
    ],
    [
      'CACHE_DISK_MAX_SIZE',
      '1Ki',
      'a size in bytes or a Kubernetes quantity such as 64Mi, 1Gi or 500M, of at least 1048576 bytes',
    ],
    ['CACHE_MEMORY_MAX_SIZE', '-1', 'a size in bytes or a Kubernetes quantity'],
    ['UPSTREAM_MAX_CONCURRENCY', '0', 'an integer from 1 to 1024'],
    ['CACHE_DISK_FSYNC', 'yes', 'true or false'],
    ['CLIENT_IDLE_TIMEOUT_MS', '10', 'an integer from 1000 to 3600000'],
    ['MAX_CONNECTIONS', '0', 'an integer from 1 to 1000000'],
    [
      'UPSTREAM_ALLOWED_REDIRECT_HOSTS',
      'https://fastly.picsum.photos',
      'a comma-separated list of host names without scheme, port or path',
    ],
    [
      'UPSTREAM_ALLOWED_REDIRECT_HOSTS',
      'cdn.example.com:8080',
      'a comma-separated list of host names without scheme, port or path',
    ],
    [
      'UPSTREAM_ALLOWED_REDIRECT_HOSTS',
      ' , ',
      'a comma-separated list of host names without scheme, port or path',
    ],
  ])(
    'refuses %s=%s, naming the variable, the value and what is allowed',
    (name, value, allowed) => {
      const parse = () => parseEnvironment({ [name]: value });

      expect(parse).toThrow(InvalidEnvironmentError);
      expect(parse).toThrow(
        `${name}=${JSON.stringify(value)} is not allowed: expected ${allowed}`,
      );
    },
  );

  it('reports every invalid variable at once', () => {
    expect(() =>
      parseEnvironment({ CACHE_TTL_SECONDS: 'x', IMAGE_WIDTH: '0' }),
    ).toThrow(/CACHE_TTL_SECONDS="x"[\s\S]*IMAGE_WIDTH="0"/);
  });

  it('reads a Redis URL, or a Redis Cluster as a list of seed URLs', () => {
    expect(
      parseEnvironment({
        REDIS_URL: 'rediss://app:s3cret@redis.internal:6380/2',
      }).REDIS_URL,
    ).toBe('rediss://app:s3cret@redis.internal:6380/2');
    expect(
      parseEnvironment({
        REDIS_CLUSTER_URLS: 'redis://10.0.0.1:7000, redis://10.0.0.2:7000,',
      }).REDIS_CLUSTER_URLS,
    ).toEqual(['redis://10.0.0.1:7000', 'redis://10.0.0.2:7000']);
  });

  it.each([
    'http://redis:6379',
    'redis://',
    'redis://redis:6379/cache',
    'not a url',
  ])('refuses REDIS_URL=%s', (value) => {
    expect(() => parseEnvironment({ REDIS_URL: value })).toThrow(
      `REDIS_URL=${JSON.stringify(value)} is not allowed: expected redis://[user:password@]host:port[/db] or rediss:// for TLS`,
    );
  });

  it('masks the password of a refused Redis URL, and never shows REDIS_PASSWORD', () => {
    const parse = () =>
      parseEnvironment({
        REDIS_URL: 'redis://app:s3cret@redis:6379/x',
        REDIS_CLUSTER_URLS: 'redis://:hunter2@a:7000,https://:hunter3@b:7000',
      });

    expect(parse).toThrow('REDIS_URL="redis://app:***@redis:6379/x"');
    expect(parse).toThrow(
      'REDIS_CLUSTER_URLS="redis://:***@a:7000,https://:***@b:7000"',
    );
    expect(parse).not.toThrow(/s3cret|hunter/);
  });

  it('refuses REDIS_URL and REDIS_CLUSTER_URLS together', () => {
    expect(() =>
      parseEnvironment({
        REDIS_URL: 'redis://a:6379',
        REDIS_CLUSTER_URLS: 'redis://b:7000',
      }),
    ).toThrow('REDIS_URL and REDIS_CLUSTER_URLS are both set');
  });

  it('refuses a key prefix with a brace, which would break Redis Cluster hash tags', () => {
    expect(() => parseEnvironment({ REDIS_KEY_PREFIX: 'a{b}:' })).toThrow(
      'REDIS_KEY_PREFIX="a{b}:" is not allowed',
    );
  });
});
