import { FastifyAdapter } from '@nestjs/platform-fastify';

/**
 * The Fastify adapter the service runs on. A request's id is its `x-request-id`, which
 * ConnectionPolicy has already set (to a safe incoming one, or a new UUID) and returned in the
 * reply; the log lines written while it is served carry it.
 *
 * A request that arrives on a connection the server already accepted is served, even once the
 * server has begun to close (Fastify's `return503OnClosing` would answer it 503): only new
 * connections are refused then, which a proxy such as ingress-nginx retries on another pod,
 * where it would pass a 503 on to its client.
 */
export function createFastifyAdapter(): FastifyAdapter {
  return new FastifyAdapter({
    requestIdHeader: 'x-request-id',
    return503OnClosing: false,
    // Nor are connections Node counts as idle destroyed at close: one just accepted, whose
    // request the server has not read yet, is idle to Node. Each closes by itself instead,
    // after its reply (`Connection: close`) or the drain's idle timeout.
    forceCloseConnections: false,
  });
}
