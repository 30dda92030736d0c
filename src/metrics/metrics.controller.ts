import { Controller, Get, Header, Res } from '@nestjs/common';
import type { FastifyReply } from 'fastify';
import { CacheMetrics } from './cache-metrics';

/** `GET /metrics`: every metric in the Prometheus text format, for a scraper inside the cluster. */
@Controller('metrics')
export class MetricsController {
  constructor(private readonly metrics: CacheMetrics) {}

  @Get()
  @Header('Cache-Control', 'no-store')
  async scrape(@Res() reply: FastifyReply): Promise<FastifyReply> {
    const body = await this.metrics.scrape();
    return reply.header('content-type', this.metrics.contentType).send(body);
  }
}
