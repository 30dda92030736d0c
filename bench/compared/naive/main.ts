import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import { ExpressAdapter } from '@nestjs/platform-express';
import { NaiveModule } from './naive.module';

/** Starts the naive baseline: NAIVE_UPSTREAM, NAIVE_DIR, NAIVE_PORT; listens on 127.0.0.1. */
async function main(): Promise<void> {
  const app = await NestFactory.create(
    NaiveModule.forRoot({
      upstream: process.env.NAIVE_UPSTREAM ?? 'http://127.0.0.1:8080',
      directory: process.env.NAIVE_DIR ?? '/tmp/naive-cache',
    }),
    new ExpressAdapter(),
    { logger: ['error', 'warn'] },
  );
  await app.listen(Number(process.env.NAIVE_PORT ?? 0), '127.0.0.1');
  process.stdout.write(`Listening on ${await app.getUrl()}\n`);
}

void main();
