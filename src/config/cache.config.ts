import { registerAs } from '@nestjs/config';
import { resolve } from 'node:path';
import { parseEnvironment } from './environment';

export const cacheConfig = registerAs('cache', () => {
  const env = parseEnvironment(process.env);
  return {
    directory: resolve(env.CACHE_DIR),
    ttlSeconds: env.CACHE_TTL_SECONDS,
    /** `undefined` means a stale image may be served for as long as the upstream keeps failing. */
    staleIfErrorSeconds: env.CACHE_STALE_IF_ERROR_SECONDS,
    /** How long before expiry a requested variant's next image is fetched; 0 turns prefetch off. */
    prefetchSeconds: env.CACHE_PREFETCH_SECONDS,
    /** How long after expiry the expired image is served while one background fetch replaces it; 0 turns it off. */
    staleWhileRevalidateSeconds: env.CACHE_STALE_WHILE_REVALIDATE_SECONDS,
    /** Budget of the in-memory tier, in bytes; 0 turns it off. */
    memoryMaxBytes: env.CACHE_MEMORY_MAX_SIZE,
    /** Budget of `directory`, in bytes, temporary files included. */
    diskMaxBytes: env.CACHE_DISK_MAX_SIZE,
    /** Whether each stored file and the directory are fsynced, so entries survive a power loss. */
    diskFsync: env.CACHE_DISK_FSYNC,
    cleanupIntervalSeconds: env.CACHE_CLEANUP_INTERVAL_SECONDS,
    /** How often readiness may write a probe file to the disk; in between it answers from the last result. */
    readinessDiskCheckIntervalMs: env.READINESS_DISK_CHECK_INTERVAL_MS,
  };
});
