import { Injectable, type OnModuleInit } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import type { FastifyInstance } from 'fastify';

/** Returns each request's id in the reply's `x-request-id`, so a client can quote it. */
@Injectable()
export class RequestIdEcho implements OnModuleInit {
  constructor(private readonly adapterHost: HttpAdapterHost) {}

  onModuleInit(): void {
    const fastify =
      this.adapterHost.httpAdapter?.getInstance<FastifyInstance>();
    if (!fastify?.addHook) {
      return; // an application context without an HTTP server, as in some tests
    }
    fastify.addHook('onRequest', (request, reply, done) => {
      void reply.header('x-request-id', request.id);
      done();
    });
  }
}
