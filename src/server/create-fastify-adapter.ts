import { FastifyAdapter } from '@nestjs/platform-fastify';
import type { IncomingMessage } from 'node:http';
import { requestIdOf } from '../logging/request-id';

/**
 * The Fastify adapter the service runs on. Each request's id is a safe incoming
 * `x-request-id`, or a new UUID; the log lines written while it is served carry it, and
 * `RequestIdEcho` returns it in the reply.
 */
export function createFastifyAdapter(): FastifyAdapter {
  return new FastifyAdapter({
    genReqId: (request: IncomingMessage) =>
      requestIdOf(request.headers['x-request-id']),
  });
}
