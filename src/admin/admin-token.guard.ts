import {
  type CanActivate,
  type ExecutionContext,
  HttpException,
  HttpStatus,
  Inject,
  Injectable,
  Logger,
  NotFoundException,
  UnauthorizedException,
} from '@nestjs/common';
import type { ConfigType } from '@nestjs/config';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { createHash, timingSafeEqual } from 'node:crypto';
import { adminConfig } from '../config/admin.config';
import { CacheMetrics } from '../metrics/cache-metrics';
import { FailedAttempts } from './failed-attempts';

/** Failed attempts one client address may make per window before it is refused outright. */
export const MAX_FAILED_ATTEMPTS = 10;
/** Failed attempts all addresses together may make per window, so many addresses cannot guess at speed. */
export const MAX_FAILED_ATTEMPTS_IN_ALL = 100;
export const FAILED_ATTEMPTS_WINDOW_MS = 60_000;
const REALM = 'Bearer realm="image-cache admin"';
/** The one key of the count across all addresses. */
const EVERY_ADDRESS = '*';

/**
 * Lets a request through to `/admin/*` only with `Authorization: Bearer <ADMIN_TOKEN>`. Without
 * a token configured the routes do not exist (404). A request with the right token is always
 * served, whoever else fails from its address: an operator behind the same NAT, ingress or
 * `kubectl port-forward` as an attacker is never locked out. A missing or wrong token gets 401
 * with `WWW-Authenticate: Bearer`, is logged without the token, and counts against the
 * client's address and against all addresses together: past `MAX_FAILED_ATTEMPTS` from one
 * address, or `MAX_FAILED_ATTEMPTS_IN_ALL` from all, in a minute, requests without the right
 * token get 429. Tokens are compared in constant time, as SHA-256 digests of equal length.
 */
@Injectable()
export class AdminTokenGuard implements CanActivate {
  private readonly logger = new Logger('AdminApi');
  private readonly tokenDigest?: Buffer;
  private readonly failuresByAddress = new FailedAttempts(
    MAX_FAILED_ATTEMPTS,
    FAILED_ATTEMPTS_WINDOW_MS,
  );
  private readonly failuresInAll = new FailedAttempts(
    MAX_FAILED_ATTEMPTS_IN_ALL,
    FAILED_ATTEMPTS_WINDOW_MS,
  );

  constructor(
    @Inject(adminConfig.KEY) config: ConfigType<typeof adminConfig>,
    private readonly metrics: CacheMetrics,
  ) {
    this.tokenDigest =
      config.token === undefined ? undefined : digest(config.token);
  }

  canActivate(context: ExecutionContext): boolean {
    const http = context.switchToHttp();
    const request = http.getRequest<FastifyRequest>();
    const reply = http.getResponse<FastifyReply>();
    const route = `${request.method} ${request.url.split('?')[0]}`;
    if (this.tokenDigest === undefined) {
      throw new NotFoundException(`Cannot ${route}`);
    }
    const presented = bearerToken(request.headers.authorization);
    if (
      presented !== undefined &&
      timingSafeEqual(digest(presented), this.tokenDigest)
    ) {
      return true;
    }
    this.metrics.adminAction('denied');
    const address = request.ip;
    const retryAfter = Math.max(
      this.failuresByAddress.retryAfterSeconds(address),
      this.failuresInAll.retryAfterSeconds(EVERY_ADDRESS),
    );
    if (retryAfter > 0) {
      void reply.header('retry-after', String(retryAfter));
      throw new HttpException(
        `Too many failed admin attempts from ${address} or in all; only the right token is served for the next ${retryAfter} s`,
        HttpStatus.TOO_MANY_REQUESTS,
      );
    }
    this.failuresByAddress.record(address);
    this.failuresInAll.record(EVERY_ADDRESS);
    const problem =
      presented === undefined ? 'no bearer token' : 'a wrong bearer token';
    this.logger.warn(`Refused ${route} from ${address}: ${problem}`);
    void reply.header(
      'www-authenticate',
      presented === undefined ? REALM : `${REALM}, error="invalid_token"`,
    );
    throw new UnauthorizedException(
      `${route} needs Authorization: Bearer <ADMIN_TOKEN>; the request had ${problem}`,
    );
  }
}

function digest(token: string): Buffer {
  return createHash('sha256').update(token).digest();
}

/** The token of an `Authorization: Bearer <token>` header, or `undefined`. */
function bearerToken(header: string | undefined): string | undefined {
  const match = /^Bearer +(\S+) *$/i.exec(header ?? '');
  return match?.[1];
}
