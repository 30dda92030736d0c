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
  };
});
