import { Logger } from '@nestjs/common';
import type { ConfigType } from '@nestjs/config';
import { NestFactory } from '@nestjs/core';
import { Logger as PinoLogger } from 'nestjs-pino';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import type { AddressInfo } from 'node:net';
import { AppModule } from './app.module';
import { errorMessage } from './common/error-message';
import { createFastifyAdapter } from './server/create-fastify-adapter';
import { serverConfig } from './config/server.config';

const logger = new Logger('Bootstrap');

async function bootstrap(): Promise<void> {
  let app: NestFastifyApplication;
  try {
    app = await NestFactory.create<NestFastifyApplication>(
      AppModule,
      createFastifyAdapter(),
      {
        abortOnError: false,
        // Held until the pino logger is in place, so every line has the configured format.
        bufferLogs: true,
      },
    );
  } catch {
    // Nest's exception handler has already logged the cause, e.g. which variable is invalid.
    process.exit(1);
  }
  app.useLogger(app.get(PinoLogger));
  // useProcessExit: after the hooks ran (readiness down, drain, server closed) exit 0 rather
  // than re-raising the signal, so a clean shutdown is reported as one.
  app.enableShutdownHooks(['SIGTERM', 'SIGINT'], { useProcessExit: true });
  const { port, host } = app.get<ConfigType<typeof serverConfig>>(
    serverConfig.KEY,
  );
  await app.listen(port, host);
  // The bound port, which differs from PORT when PORT is 0.
  const { port: boundPort } = app.getHttpServer().address() as AddressInfo;
  logger.log(`Listening on ${host}:${boundPort}`);
}

bootstrap().catch((error: unknown) => {
  logger.error(`Not started: ${errorMessage(error)}`);
  process.exit(1);
});
