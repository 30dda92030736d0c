import {
  Controller,
  Delete,
  Get,
  Header,
  HttpCode,
  HttpStatus,
  Post,
  Query,
  Req,
  UseGuards,
} from '@nestjs/common';
import type { FastifyRequest } from 'fastify';
import { type CacheEntry, CacheService } from '../image/cache/cache.service';
import { type ImageInfo, imageInfoOf } from '../image/image-info';
import { type ImageVariant, variantKey } from '../image/image-variant';
import { ImageVariantPipe } from '../image/image-variant.pipe';
import { CacheMetrics } from '../metrics/cache-metrics';
import { AdminTokenGuard } from './admin-token.guard';

/**
 * What an operator does to the cache by hand, on every replica at once through the shared
 * tier. Off unless `ADMIN_TOKEN` is set; every route needs it as a bearer token.
 */
@Controller('admin')
@UseGuards(AdminTokenGuard)
export class AdminController {
  constructor(
    private readonly cache: CacheService,
    private readonly variants: ImageVariantPipe,
    private readonly metrics: CacheMetrics,
  ) {}

  /** Fetches a new image of the variant now and makes it current everywhere. */
  @Post('refresh')
  @HttpCode(HttpStatus.OK)
  @Header('Cache-Control', 'no-store')
  async refresh(
    @Query(ImageVariantPipe) variant: ImageVariant,
    @Req() request: FastifyRequest,
  ): Promise<ImageInfo> {
    const image = await this.cache.refresh(variant, request.id);
    this.metrics.adminAction('refresh');
    return imageInfoOf(image, this.cache.freshness(image));
  }

  /** Purges the variant the parameters name, or every variant without parameters. */
  @Delete('cache')
  @Header('Cache-Control', 'no-store')
  async purge(
    @Query() query: Record<string, unknown>,
  ): Promise<{ removed: number; key: string | null }> {
    const key =
      Object.keys(query).length === 0
        ? null
        : variantKey(this.variants.transform(query));
    const removed = await this.cache.purge(key);
    this.metrics.adminAction('purge');
    return { removed, key };
  }

  /** Every cached variant, and which tiers hold it. */
  @Get('entries')
  @Header('Cache-Control', 'no-store')
  async entries(): Promise<{ entries: CacheEntry[] }> {
    const entries = await this.cache.entries();
    this.metrics.adminAction('entries');
    return { entries };
  }
}
