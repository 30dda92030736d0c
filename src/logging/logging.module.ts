import { Module } from '@nestjs/common';
import type { ConfigType } from '@nestjs/config';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { LoggerModule } from 'nestjs-pino';
import { destination, stdTimeFunctions } from 'pino';
import type { Options } from 'pino-http';
import type PinoPretty from 'pino-pretty';
import { loggingConfig } from '../config/logging.config';

/**
 * Logs through pino (Fastify's own logger) by way of nestjs-pino: JSON lines (`LOG_FORMAT=json`,
 * the default in production) or readable ones (`pretty`), at `LOG_LEVEL`. Every line has
 * `time`, `level`, `message` and `context`. Each request gets an id (a safe incoming
 * `x-request-id`, or a new UUID; see ConnectionPolicy), echoed in the reply and carried by the
 * line of the upstream fetch it starts, and at `debug` by every line logged while it is served.
 * Access lines are at `debug`, so a hit logs nothing at `info`; they hold the method, URL,
 * status and time, never a header, so no credential reaches a log.
 */
@Module({
  imports: [
    LoggerModule.forRootAsync({
      inject: [loggingConfig.KEY],
      useFactory: (config: ConfigType<typeof loggingConfig>) => {
        const accessLines =
          config.level === 'debug' || config.level === 'trace';
        // pino-http's middleware binds each request's logger in an AsyncLocalStorage, which on
        // Node 20 tracks every promise of every request: it runs only when it writes access
        // lines. The fetch a request starts logs its id all the same (see CacheService).
        const forRoutes = accessLines ? undefined : [];
        const options: Options<IncomingMessage, ServerResponse> = {
          level: config.level,
          messageKey: 'message',
          timestamp: stdTimeFunctions.isoTime,
          base: undefined,
          formatters: { level: (label) => ({ level: label }) },
          // Fastify has given the request its id (see ConnectionPolicy); pino-http takes it.
          customAttributeKeys: { reqId: 'requestId' },
          autoLogging: accessLines,
          customLogLevel: () => 'debug',
          customSuccessMessage: (request, response, ms) =>
            `${request.method} ${request.url} ${response.statusCode} in ${Math.round(ms)} ms`,
          customErrorMessage: (request, response) =>
            `${request.method} ${request.url} ${response.statusCode}`,
          // A 5xx is already logged where it happened: no synthetic error with a stack here.
          customErrorObject: (_request, _response, _error, value: object) =>
            Object.fromEntries(
              Object.entries(value).filter(([key]) => key !== 'err'),
            ),
          serializers: {
            req: (request: { method?: string; url?: string }) => ({
              method: request.method,
              url: request.url,
            }),
            res: (response: { statusCode?: number }) => ({
              statusCode: response.statusCode,
            }),
          },
          quietReqLogger: true,
        };
        if (config.format === 'json') {
          // Written by the thread pool, not by the event loop: a stdout that is slow to drain
          // (a pipe whose reader is busy) delayed every request behind a miss's log line by
          // 20 to 30 ms. pino flushes what is buffered when the process exits.
          const stdout = destination({ dest: 1, sync: false });
          return { pinoHttp: [options, stdout], forRoutes };
        }
        // Loaded only for readable lines: production pods (JSON) never hold it.
        // eslint-disable-next-line @typescript-eslint/no-require-imports
        const pretty = require('pino-pretty') as typeof PinoPretty;
        const stream = pretty({
          sync: true,
          messageKey: 'message',
          translateTime: 'SYS:standard',
          ignore: 'requestId,req,res,responseTime,context',
          messageFormat: '[{context}] {message}',
          colorize: process.env.NO_COLOR === undefined && process.stdout.isTTY,
        });
        return { pinoHttp: [options, stream], forRoutes };
      },
    }),
  ],
})
export class LoggingModule {}
