import {
  Controller,
  Get,
  Header,
  HttpCode,
  HttpStatus,
  Res,
} from '@nestjs/common';
import type { FastifyReply } from 'fastify';
import { StatusPage } from './status-page';
import type { StatusReport } from './status-report';
import { StatusService } from './status.service';

/** The status page at `GET /`, and the JSON it polls at `GET /status`. */
@Controller()
export class StatusController {
  constructor(
    private readonly status: StatusService,
    private readonly page: StatusPage,
  ) {}

  @Get()
  showPage(@Res() reply: FastifyReply): FastifyReply {
    return reply
      .headers({
        'content-type': 'text/html; charset=utf-8',
        'content-security-policy': this.page.contentSecurityPolicy,
        'cache-control': 'no-cache',
        'referrer-policy': 'no-referrer',
        'x-frame-options': 'DENY',
      })
      .send(this.page.html);
  }

  /** Browsers ask for it with every page: no icon, and no 404 in their console or our logs. */
  @Get('favicon.ico')
  @HttpCode(HttpStatus.NO_CONTENT)
  @Header('Cache-Control', 'public, max-age=86400')
  favicon(): void {}

  @Get('status')
  @Header('Cache-Control', 'no-store')
  report(): Promise<StatusReport> {
    return this.status.report();
  }
}
