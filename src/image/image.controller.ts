import {
  Controller,
  Get,
  Header,
  Headers,
  NotFoundException,
  Res,
} from '@nestjs/common';
import type { FastifyReply } from 'fastify';
import { CacheService } from './cache.service';
import { ifNoneMatchMatches } from './conditional-request';
import type { ImageInfo } from './image-info';

@Controller('image')
export class ImageController {
  constructor(private readonly cache: CacheService) {}

  /** Serves the cached image (HEAD is answered by the same route, without the body). */
  @Get()
  async getImage(
    @Headers('if-none-match') ifNoneMatch: string | undefined,
    @Res() reply: FastifyReply,
  ): Promise<FastifyReply> {
    const { image, status } = await this.cache.getImage(this.cache.defaultSize);
    const freshness = this.cache.freshness(image);
    // A cache downstream counts freshness as max-age minus Age, so max-age carries the whole
    // lifetime and Age the time already spent; a stale image must not be reused at all.
    const maxAge = freshness.stale ? 0 : freshness.ttlSeconds;
    void reply
      .header('ETag', image.etag)
      .header('Last-Modified', image.lastModified)
      .header('Cache-Control', `public, max-age=${maxAge}`)
      .header('Age', String(freshness.ageSeconds))
      .header('X-Cache', status);
    if (image.picsumId) {
      void reply.header('X-Picsum-Id', image.picsumId);
    }
    if (ifNoneMatchMatches(ifNoneMatch, image.etag)) {
      return reply.code(304).send();
    }
    return reply
      .header('Content-Type', image.contentType)
      .header('Content-Length', String(image.body.length))
      .send(image.body);
  }

  /** Describes the cached image without ever fetching one. */
  @Get('info')
  @Header('Cache-Control', 'no-store')
  async getInfo(): Promise<ImageInfo> {
    const image = await this.cache.peek(this.cache.defaultSize);
    if (!image) {
      throw new NotFoundException(
        'No image is cached yet; GET /image fetches one',
      );
    }
    const freshness = this.cache.freshness(image);
    return {
      id: image.picsumId ?? null,
      contentType: image.contentType,
      bytes: image.body.length,
      etag: image.etag,
      fetchedAt: new Date(image.fetchedAt).toISOString(),
      expiresAt: new Date(freshness.expiresAt).toISOString(),
      stale: freshness.stale,
      source: image.source,
    };
  }
}
