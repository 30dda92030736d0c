import { Injectable, type OnModuleInit } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { LRUCache } from 'lru-cache';
import { CacheMetrics } from '../metrics/cache-metrics';
import { answeredRequestOf } from './cache/cache-outcome';
import { fastifyInstanceOf } from '../server/fastify-instance';
import { CacheService } from './cache/cache.service';
import { type ImageVariant, variantKey } from './image-variant';
import { ImageVariantPipe } from './image-variant.pipe';
import { memoryHitHeaders } from './image-reply';

interface RememberedVariant {
  readonly variant: ImageVariant;
  readonly key: string;
}

/** The route whose fresh hits this hook answers, as Fastify names it. */
const IMAGE_ROUTE = '/image';
/** Raw query strings whose variant is remembered: the popular ones, bounded whatever clients send. */
const REMEMBERED_QUERIES = 1000;

/**
 * The fast path of `GET`/`HEAD /image`: a fresh hit in memory, the reply to nearly every
 * request, is answered from a Fastify `onRequest` hook, before Nest's router, param pipes and
 * exception filters run, with what ImageController would send (the headers of the same
 * `imageHeaders`, counted the same in the metrics). Everything else (a conditional request, a
 * miss, a stale entry, a lower tier, a bad query) goes on to ImageController.
 *
 * The query is validated once per distinct raw query string by the same ImageVariantPipe the
 * controller uses, and its variant key remembered in a small LRU, so a hit parses nothing.
 * Fastify has routed the request when `onRequest` runs, so the hook knows the route template;
 * its `onResponse` hooks (HttpRequestMetrics) run for these replies too.
 */
@Injectable()
export class FreshHitHook implements OnModuleInit {
  private readonly variants = new LRUCache<string, RememberedVariant>({
    max: REMEMBERED_QUERIES,
  });

  constructor(
    private readonly adapterHost: HttpAdapterHost,
    private readonly cache: CacheService,
    private readonly pipe: ImageVariantPipe,
    private readonly metrics: CacheMetrics,
  ) {}

  onModuleInit(): void {
    fastifyInstanceOf(this.adapterHost)?.addHook(
      'onRequest',
      (request, reply, done) => {
        if (!this.answeredFromMemory(request, reply)) {
          done();
        }
      },
    );
  }

  /**
   * Sends the fresh image in memory for the request, if it is one for `/image` and there is
   * one. The reply is written to Node's response directly (`reply.hijack()`), with headers
   * made once per image and second, so a hit builds no header object of its own; Node sends
   * no body for a HEAD. A conditional request goes on to the controller, which answers 304s.
   */
  private answeredFromMemory(
    request: FastifyRequest,
    reply: FastifyReply,
  ): boolean {
    if (
      request.routeOptions.url !== IMAGE_ROUTE ||
      request.headers['if-none-match'] !== undefined
    ) {
      return false;
    }
    const remembered = this.variantOf(request);
    const hit =
      remembered === undefined
        ? undefined
        : this.cache.freshInMemory(remembered.key, remembered.variant);
    if (hit === undefined) {
      return false;
    }
    this.metrics.answered(answeredRequestOf(hit.status, hit.outcome));
    reply.hijack();
    reply.raw.writeHead(
      200,
      memoryHitHeaders(hit, this.cache.freshness(hit.image)),
    );
    reply.raw.end(hit.image.body);
    return true;
  }

  /** The variant of the request's query and its key, or nothing when it is invalid (the controller says why). */
  private variantOf(request: FastifyRequest): RememberedVariant | undefined {
    const queryStart = request.url.indexOf('?');
    const query = queryStart < 0 ? '' : request.url.slice(queryStart + 1);
    let remembered = this.variants.get(query);
    if (remembered === undefined) {
      try {
        const variant = this.pipe.transform(request.query);
        remembered = { variant, key: variantKey(variant) };
      } catch {
        return undefined;
      }
      this.variants.set(query, remembered);
    }
    return remembered;
  }
}
