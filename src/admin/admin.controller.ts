import {
  BadRequestException,
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
import {
  CacheEntries,
  DEFAULT_ENTRIES_LIMIT,
  type EntriesPage,
  MAX_ENTRIES_LIMIT,
} from '../image/cache/cache-entries';
import { CacheService } from '../image/cache/cache.service';
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
    private readonly entryList: CacheEntries,
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

  /**
   * Purges the variant the parameters name (the query of `GET /image`), or every variant with
   * `all=true` alone. Neither is a 400: purging everything takes asking for it.
   */
  @Delete('cache')
  @Header('Cache-Control', 'no-store')
  async purge(
    @Query() query: Record<string, unknown>,
  ): Promise<{ removed: number; key: string | null }> {
    const key = this.purgedKey(query);
    const removed = await this.cache.purge(key);
    this.metrics.adminAction('purge');
    return { removed, key };
  }

  /**
   * A page of the cached variants, with the tiers that hold each and the prefetched images held
   * aside: `limit` (1 to 1000, 100 by default) per page, the next from `cursor`, which each page
   * returns as `nextCursor` (null after the last).
   */
  @Get('entries')
  @Header('Cache-Control', 'no-store')
  async entries(
    @Query('limit') limit: unknown,
    @Query('cursor') cursor: unknown,
  ): Promise<EntriesPage> {
    if (cursor !== undefined && typeof cursor !== 'string') {
      throw new BadRequestException(
        'query parameter cursor must be given once',
      );
    }
    const page = await this.entryList.page(cursor, parseLimit(limit));
    this.metrics.adminAction('entries');
    return page;
  }

  /** The variant a purge names, or `null` for every variant. */
  private purgedKey(query: Record<string, unknown>): string | null {
    const { all, ...variant } = query;
    if (all === undefined) {
      if (Object.keys(variant).length === 0) {
        throw new BadRequestException(
          'DELETE /admin/cache needs the variant to purge, as the query of GET /image (e.g. width=300&height=200), or all=true to purge every variant',
        );
      }
      return variantKey(this.variants.transform(variant));
    }
    if (all !== 'true') {
      throw new BadRequestException(
        `query parameter all=${JSON.stringify(all)} is not allowed: expected true, to purge every variant`,
      );
    }
    if (Object.keys(variant).length > 0) {
      throw new BadRequestException(
        `all=true purges every variant and takes no variant parameters (${Object.keys(variant).join(', ')}); purge one variant without all=true`,
      );
    }
    return null;
  }
}

function parseLimit(limit: unknown): number {
  if (limit === undefined) {
    return DEFAULT_ENTRIES_LIMIT;
  }
  if (
    typeof limit !== 'string' ||
    !/^\d+$/.test(limit) ||
    Number(limit) < 1 ||
    Number(limit) > MAX_ENTRIES_LIMIT
  ) {
    throw new BadRequestException(
      `query parameter limit=${JSON.stringify(limit)} is not allowed: expected an integer from 1 to ${MAX_ENTRIES_LIMIT}`,
    );
  }
  return Number(limit);
}
