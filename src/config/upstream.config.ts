import { registerAs } from '@nestjs/config';
import { parseEnvironment } from './environment';

export const upstreamConfig = registerAs('upstream', () => {
  const env = parseEnvironment(process.env);
  return {
    baseUrl: env.PICSUM_BASE_URL,
    imageWidth: env.IMAGE_WIDTH,
    imageHeight: env.IMAGE_HEIGHT ?? env.IMAGE_WIDTH,
    timeoutMs: env.UPSTREAM_TIMEOUT_MS,
    maxBytes: env.UPSTREAM_MAX_BYTES,
    retryAfterSeconds: env.UPSTREAM_RETRY_AFTER_SECONDS,
    maxConcurrency: env.UPSTREAM_MAX_CONCURRENCY,
    queueTimeoutMs: env.UPSTREAM_QUEUE_TIMEOUT_MS,
  };
});
