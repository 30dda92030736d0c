import { FastifyAdapter } from '@nestjs/platform-fastify';

/**
 * The Fastify adapter the service runs on. A request's id is its `x-request-id`, which
 * ConnectionPolicy has already set (to a safe incoming one, or a new UUID) and returned in the
 * reply; the log lines written while it is served carry it.
 */
export function createFastifyAdapter(): FastifyAdapter {
  return new FastifyAdapter({ requestIdHeader: 'x-request-id' });
}
