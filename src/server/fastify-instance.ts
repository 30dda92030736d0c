import type { HttpAdapterHost } from '@nestjs/core';
import type { FastifyInstance } from 'fastify';

/**
 * The Fastify instance under Nest's adapter, to add hooks to; undefined in an application
 * context without an HTTP server, as in some tests.
 */
export function fastifyInstanceOf(
  adapterHost: HttpAdapterHost,
): FastifyInstance | undefined {
  const fastify = adapterHost.httpAdapter?.getInstance<FastifyInstance>();
  if (!fastify?.addHook) {
    return undefined;
  }
  return fastify;
}
