import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { Test } from '@nestjs/testing';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AppModule } from '../../src/app.module';
import { Clock } from '../../src/image/cache/clock';
import { createFastifyAdapter } from '../../src/server/create-fastify-adapter';
import { FakeClock } from './fake-clock';

export interface TestApp {
  readonly app: NestFastifyApplication;
  readonly clock: FakeClock;
  readonly cacheDir: string;
  /** Closes the app and removes its cache directory. */
  close(): Promise<void>;
}

export async function makeCacheDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'image-cache-test-'));
}

/**
 * Boots the real AppModule against `env` (on top of the test defaults) with a fake clock,
 * listening on 127.0.0.1 only.
 */
export async function startTestApp(
  env: Record<string, string>,
  cacheDir?: string,
): Promise<TestApp> {
  const directory = cacheDir ?? (await makeCacheDir());
  const clock = new FakeClock();
  const saved = { ...process.env };
  Object.assign(process.env, {
    CACHE_DIR: directory,
    SHUTDOWN_DRAIN_MS: '0',
    ...env,
  });
  try {
    const moduleRef = await Test.createTestingModule({ imports: [AppModule] })
      .overrideProvider(Clock)
      .useValue(clock)
      .compile();
    const app = moduleRef.createNestApplication<NestFastifyApplication>(
      createFastifyAdapter(),
      { logger: false },
    );
    await app.listen(0, '127.0.0.1');
    return {
      app,
      clock,
      cacheDir: directory,
      close: async () => {
        await app.close();
        await rm(directory, { recursive: true, force: true });
      },
    };
  } finally {
    process.env = saved;
  }
}
