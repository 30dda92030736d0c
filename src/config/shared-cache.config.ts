import { registerAs } from '@nestjs/config';
import { maskPasswords, parseEnvironment } from './environment';

/** A day: how long Redis keeps an entry past its TTL when stale images may be served for ever. */
const UNBOUNDED_STALE_RETENTION_SECONDS = 86_400;
/** Added to the longest a fetch may hold the lock, so a live holder never loses it. */
const LOCK_MARGIN_MS = 2000;

export const sharedCacheConfig = registerAs('sharedCache', () => {
  const env = parseEnvironment(process.env);
  const urls = env.REDIS_CLUSTER_URLS ?? (env.REDIS_URL ? [env.REDIS_URL] : []);
  return {
    /** Seed URLs: none means no shared tier; one with `cluster` false is a standalone Redis. */
    urls,
    cluster: env.REDIS_CLUSTER_URLS !== undefined,
    /** How the logs and readiness name the Redis: its URLs with the password masked. */
    displayName: maskPasswords(urls.join(',')),
    /** Overrides the URLs' password; kept out of every log line and error. */
    password: env.REDIS_PASSWORD,
    keyPrefix: env.REDIS_KEY_PREFIX,
    commandTimeoutMs: env.REDIS_COMMAND_TIMEOUT_MS,
    /**
     * How long a replica may hold a variant's fetch lock: the longest its fetch can take
     * (waiting for a fetch slot, then the fetch), plus a margin. If the replica dies, the lock
     * expires after this and another replica takes over.
     */
    lockTtlMs:
      env.UPSTREAM_QUEUE_TIMEOUT_MS + env.UPSTREAM_TIMEOUT_MS + LOCK_MARGIN_MS,
    /** How long Redis keeps an entry after its fetch: TTL plus the longer stale window. */
    retentionSeconds:
      env.CACHE_TTL_SECONDS +
      Math.max(
        env.CACHE_STALE_IF_ERROR_SECONDS ?? UNBOUNDED_STALE_RETENTION_SECONDS,
        env.CACHE_STALE_WHILE_REVALIDATE_SECONDS,
      ),
  };
});
