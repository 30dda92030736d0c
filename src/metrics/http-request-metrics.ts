import { Injectable, type OnModuleInit } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import { fastifyInstanceOf } from '../server/fastify-instance';
import { CacheMetrics } from './cache-metrics';

/** The `route` label of a request that matched no route: never its raw URL, which anyone can vary. */
const UNMATCHED_ROUTE = 'unmatched';

/**
 * Times every HTTP request into `http_request_duration_seconds`, labelled by method, route
 * template (`/image`, not `/image?width=…`) and status code, from a Fastify `onResponse` hook.
 */
@Injectable()
export class HttpRequestMetrics implements OnModuleInit {
  constructor(
    private readonly adapterHost: HttpAdapterHost,
    private readonly metrics: CacheMetrics,
  ) {}

  onModuleInit(): void {
    fastifyInstanceOf(this.adapterHost)?.addHook(
      'onResponse',
      (request, reply, done) => {
        this.metrics.httpRequest(
          request.method,
          request.routeOptions.url ?? UNMATCHED_ROUTE,
          reply.statusCode,
          reply.elapsedTime / 1000,
        );
        done();
      },
    );
  }
}
