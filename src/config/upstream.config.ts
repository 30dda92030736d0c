import { registerAs } from '@nestjs/config';
import { parseEnvironment } from './environment';

/** Where picsum.photos redirects to for the image bytes. */
export const PICSUM_IMAGE_HOST = 'fastly.picsum.photos';

export const upstreamConfig = registerAs('upstream', () => {
  const env = parseEnvironment(process.env);
  return {
    baseUrl: env.PICSUM_BASE_URL,
    /**
     * Hosts a redirect may lead to: the upstream's own host always, plus
     * `UPSTREAM_ALLOWED_REDIRECT_HOSTS` (by default Picsum's image host).
     */
    allowedRedirectHosts: new Set([
      new URL(env.PICSUM_BASE_URL).hostname,
      ...(env.UPSTREAM_ALLOWED_REDIRECT_HOSTS ?? [PICSUM_IMAGE_HOST]),
    ]),
    imageWidth: env.IMAGE_WIDTH,
    imageHeight: env.IMAGE_HEIGHT ?? env.IMAGE_WIDTH,
    timeoutMs: env.UPSTREAM_TIMEOUT_MS,
    maxBytes: env.UPSTREAM_MAX_BYTES,
    retryAfterSeconds: env.UPSTREAM_RETRY_AFTER_SECONDS,
    maxConcurrency: env.UPSTREAM_MAX_CONCURRENCY,
    queueTimeoutMs: env.UPSTREAM_QUEUE_TIMEOUT_MS,
  };
});
