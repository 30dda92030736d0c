import { z } from 'zod';
import { parseByteSize } from './byte-size';

const SECONDS_PER_YEAR = 31_536_000;
const MAX_IMAGE_SIDE = 5_000;
const MEBIBYTE = 2 ** 20;

/** A whole number written in decimal digits, so that "1.5", "1e3" or "abc" are refused rather than coerced. */
function integer(min: number, max: number) {
  const allowed = `an integer from ${min} to ${max}`;
  return z
    .string()
    .regex(/^[+-]?\d+$/, { error: allowed })
    .transform(Number)
    .pipe(
      z
        .number()
        .int()
        .min(min, { error: allowed })
        .max(max, { error: allowed }),
    );
}

/** A byte size as bytes or a Kubernetes quantity (`64Mi`, `1Gi`, `500M`), at least `min` bytes. */
function byteSize(min: number) {
  const allowed = `a size in bytes or a Kubernetes quantity such as 64Mi, 1Gi or 500M, of at least ${min} bytes`;
  return z.string().transform((text, context) => {
    const bytes = parseByteSize(text);
    if (bytes === undefined || bytes < min) {
      context.addIssue({ code: 'custom', message: allowed });
      return z.NEVER;
    }
    return bytes;
  });
}

/** A DNS name or IP address as it appears in a URL's host, without scheme, port or path. */
/** `true` or `false`, nothing else: a typo must not silently mean either. */
const flag = z
  .enum(['true', 'false'], { error: 'true or false' })
  .transform((value) => value === 'true');

const HOST_NAME =
  /^(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*|\[[0-9a-f:.]+\])$/;

/** A comma-separated list of host names, lower-cased, blanks around the commas ignored. */
const hostList = z.string().transform((text, context) => {
  const hosts = text
    .split(',')
    .map((host) => host.trim().toLowerCase())
    .filter((host) => host !== '');
  if (hosts.length === 0 || !hosts.every((host) => HOST_NAME.test(host))) {
    context.addIssue({
      code: 'custom',
      message:
        'a comma-separated list of host names without scheme, port or path, such as fastly.picsum.photos',
    });
    return z.NEVER;
  }
  return hosts;
});

const httpUrl = z
  .url({
    protocol: /^https?$/,
    error: 'an absolute http:// or https:// URL, such as https://picsum.photos',
  })
  .transform((url) => url.replace(/\/+$/, ''));

/** `redis://` or `rediss://` (TLS), a host, optional credentials and port, and at most a database number as path. */
function redisUrl(text: string): string | undefined {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return undefined;
  }
  const validProtocol = url.protocol === 'redis:' || url.protocol === 'rediss:';
  const validPath = /^\/?\d{0,5}$/.test(url.pathname);
  return validProtocol && url.hostname !== '' && validPath && !url.search
    ? text
    : undefined;
}

const REDIS_URL_EXPECTED =
  'redis://[user:password@]host:port[/db] or rediss:// for TLS';

const redisUrlSetting = z.string().transform((text, context) => {
  const url = redisUrl(text.trim());
  if (url === undefined) {
    context.addIssue({ code: 'custom', message: REDIS_URL_EXPECTED });
    return z.NEVER;
  }
  return url;
});

/** Seed nodes of a Redis Cluster: comma-separated Redis URLs. */
const redisUrlList = z.string().transform((text, context) => {
  const urls = text
    .split(',')
    .map((url) => url.trim())
    .filter((url) => url !== '');
  if (urls.length === 0 || urls.some((url) => redisUrl(url) === undefined)) {
    context.addIssue({
      code: 'custom',
      message: `a comma-separated list of ${REDIS_URL_EXPECTED}`,
    });
    return z.NEVER;
  }
  return urls;
});

/** Variables whose values may hold a password: an error message shows them masked. */
const SECRET_URL_VARIABLES = new Set(['REDIS_URL', 'REDIS_CLUSTER_URLS']);
const SECRET_VARIABLES = new Set(['REDIS_PASSWORD', 'ADMIN_TOKEN']);

/** `text` with the password of every URL in it replaced by `***`. */
export function maskPasswords(text: string): string {
  return text.replace(/(\/\/[^/@\s,:]*:)[^@\s,]*@/g, '$1***@');
}

export const environmentSchema = z.object({
  PORT: integer(0, 65_535).default(3000),
  HOST: z.string().default('0.0.0.0'),
  CACHE_DIR: z.string().default('./storage'),
  CACHE_TTL_SECONDS: integer(1, SECONDS_PER_YEAR).default(600),
  CACHE_STALE_IF_ERROR_SECONDS: integer(0, SECONDS_PER_YEAR).optional(),
  CACHE_PREFETCH_SECONDS: integer(0, SECONDS_PER_YEAR).default(0),
  CACHE_STALE_WHILE_REVALIDATE_SECONDS: integer(0, SECONDS_PER_YEAR).default(0),
  CACHE_MEMORY_MAX_SIZE: byteSize(0).default(64 * MEBIBYTE),
  CACHE_DISK_MAX_SIZE: byteSize(MEBIBYTE).default(512 * MEBIBYTE),
  CACHE_DISK_FSYNC: flag.default(false),
  CACHE_CLEANUP_INTERVAL_SECONDS: integer(1, 86_400).default(600),
  PICSUM_BASE_URL: httpUrl.default('https://picsum.photos'),
  IMAGE_WIDTH: integer(1, MAX_IMAGE_SIDE).default(1200),
  IMAGE_HEIGHT: integer(1, MAX_IMAGE_SIDE).optional(),
  // Picsum renders large blurred variants slowly: a 5000x5000 blur=10 took 12.5-20 s.
  UPSTREAM_TIMEOUT_MS: integer(1, 600_000).default(30_000),
  UPSTREAM_MAX_BYTES: integer(1, 1_073_741_824).default(20_971_520),
  UPSTREAM_RETRY_AFTER_SECONDS: integer(0, 86_400).default(10),
  UPSTREAM_MAX_CONCURRENCY: integer(1, 1024).default(8),
  UPSTREAM_QUEUE_TIMEOUT_MS: integer(0, 600_000).default(2000),
  UPSTREAM_ALLOWED_REDIRECT_HOSTS: hostList.optional(),
  SHUTDOWN_DRAIN_MS: integer(0, 600_000).default(5000),
  CLIENT_IDLE_TIMEOUT_MS: integer(1000, 3_600_000).default(30_000),
  MAX_CONNECTIONS: integer(1, 1_000_000).default(1024),
  READINESS_DISK_CHECK_INTERVAL_MS: integer(0, 600_000).default(5000),
  REDIS_URL: redisUrlSetting.optional(),
  REDIS_CLUSTER_URLS: redisUrlList.optional(),
  REDIS_PASSWORD: z.string().optional(),
  REDIS_KEY_PREFIX: z
    .string()
    .regex(/^[\x21-\x7a\x7c\x7e]{1,64}$/, {
      error:
        '1 to 64 printable characters without blanks or braces, such as image-cache:',
    })
    .default('image-cache:'),
  REDIS_COMMAND_TIMEOUT_MS: integer(1, 60_000).default(500),
  ADMIN_TOKEN: z
    .string()
    .regex(/^[\x21-\x7e]{32,512}$/, {
      error:
        '32 to 512 printable characters without blanks (e.g. from openssl rand -hex 32)',
    })
    .optional(),
  LOG_FORMAT: z
    .enum(['json', 'pretty'], { error: 'json or pretty' })
    .optional(),
  LOG_LEVEL: z
    .enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace'], {
      error: 'one of fatal, error, warn, info, debug, trace',
    })
    .default('info'),
});

export type Environment = z.output<typeof environmentSchema>;

export class InvalidEnvironmentError extends Error {
  constructor(problems: string[]) {
    super(`Invalid environment:\n  ${problems.join('\n  ')}`);
    this.name = InvalidEnvironmentError.name;
    // The variable names say where the problem is; a stack trace into zod would only hide them.
    this.stack = `${this.name}: ${this.message}`;
  }
}

/**
 * Validates the variables this service reads. Empty values count as unset, so a chart that
 * renders `VAR: ""` gets the default instead of an error.
 */
export function parseEnvironment(env: NodeJS.ProcessEnv): Environment {
  const present = Object.fromEntries(
    Object.entries(env).filter(
      ([, value]) => value !== undefined && value.trim() !== '',
    ),
  );
  const result = environmentSchema.safeParse(present);
  if (result.success) {
    const problems = conflicts(result.data);
    if (problems.length > 0) {
      throw new InvalidEnvironmentError(problems);
    }
    return result.data;
  }
  const problems = result.error.issues.map((issue) => {
    const name = String(issue.path[0]);
    return `${name}=${shown(name, present[name])} is not allowed: expected ${issue.message}`;
  });
  throw new InvalidEnvironmentError(problems);
}

/** Values that are each allowed but not together. */
function conflicts(env: Environment): string[] {
  const problems: string[] = [];
  if (env.REDIS_URL && env.REDIS_CLUSTER_URLS) {
    problems.push(
      'REDIS_URL and REDIS_CLUSTER_URLS are both set: set REDIS_URL for a standalone Redis or REDIS_CLUSTER_URLS for a Redis Cluster, not both',
    );
  }
  if (env.CACHE_PREFETCH_SECONDS >= env.CACHE_TTL_SECONDS) {
    problems.push(
      `CACHE_PREFETCH_SECONDS=${env.CACHE_PREFETCH_SECONDS} is not allowed: expected less than CACHE_TTL_SECONDS (${env.CACHE_TTL_SECONDS}), or 0 to turn prefetch off`,
    );
  }
  return problems;
}

/** The value of `name` as an error message may show it: never a password. */
function shown(name: string, value: string | undefined): string {
  if (SECRET_VARIABLES.has(name)) {
    return '(hidden)';
  }
  const text = JSON.stringify(value);
  return SECRET_URL_VARIABLES.has(name) ? maskPasswords(text) : text;
}
