import {
  Controller,
  Get,
  Header,
  Headers,
  HttpException,
  NotFoundException,
  Query,
  Req,
  Res,
} from '@nestjs/common';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { CacheMetrics } from '../metrics/cache-metrics';
import { answeredRequestOf, cacheStatusOfError } from './cache/cache-outcome';
import { CacheService } from './cache/cache.service';
import { type ImageInfo, imageInfoOf } from './image-info';
import { type ImageVariant, variantKey } from './image-variant';
import { ImageVariantPipe } from './image-variant.pipe';
import { sendImage } from './image-reply';
import { UpstreamBusyException } from './upstream/upstream-busy.exception';
import { forwardStatusOf } from './upstream/forward-status';

@Controller('image')
export class ImageController {
  constructor(
    private readonly cache: CacheService,
    private readonly metrics: CacheMetrics,
  ) {}

  /** Serves the cached image of a variant (HEAD is answered by the same route, without the body). */
  @Get()
  async getImage(
    @Query(ImageVariantPipe) variant: ImageVariant,
    @Headers('if-none-match') ifNoneMatch: string | undefined,
    @Req() request: FastifyRequest,
    @Res() reply: FastifyReply,
  ): Promise<FastifyReply> {
    let lookup;
    try {
      // What the lookup logs (a fetch, a failure) carries the request's id.
      lookup = await this.cache.getImage(variant, request.id);
    } catch (error) {
      this.metrics.failed(error instanceof UpstreamBusyException);
      if (error instanceof UpstreamBusyException) {
        void reply.header('retry-after', String(error.retryAfterSeconds));
      }
      if (error instanceof HttpException) {
        void reply.header(
          'cache-status',
          cacheStatusOfError(forwardStatusOf(error)),
        );
      }
      throw error;
    }
    this.metrics.answered(answeredRequestOf(lookup.status, lookup.outcome));
    return sendImage(
      reply,
      lookup,
      this.cache.freshness(lookup.image),
      ifNoneMatch,
    );
  }

  /** Describes the cached image of a variant without ever fetching one. */
  @Get('info')
  @Header('Cache-Control', 'no-store')
  async getInfo(
    @Query(ImageVariantPipe) variant: ImageVariant,
  ): Promise<ImageInfo> {
    const image = await this.cache.peek(variant);
    if (!image) {
      throw new NotFoundException(
        `No image is cached yet for ${variantKey(variant)}; GET /image with the same parameters fetches one`,
      );
    }
    return imageInfoOf(image, this.cache.freshness(image));
  }
}
