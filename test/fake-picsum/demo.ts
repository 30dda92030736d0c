/**
 * `npm run start:demo`: the built service against this local fake Picsum, for trying it
 * without internet access. Stop it with Ctrl-C.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FakePicsum } from './fake-picsum.server';

async function main(): Promise<void> {
  const upstream = new FakePicsum();
  const baseUrl = await upstream.start(
    Number(process.env.FAKE_PICSUM_PORT ?? 0),
  );
  const cacheDir =
    process.env.CACHE_DIR ?? mkdtempSync(join(tmpdir(), 'image-cache-demo-'));
  const port = process.env.PORT ?? '3000';
  process.stdout.write(
    `Fake Picsum on ${baseUrl}; cache in ${cacheDir}\n` +
      `Try: curl -i http://127.0.0.1:${port}/image -o /dev/null   and   curl http://127.0.0.1:${port}/image/info\n`,
  );
  const service = spawn(
    process.execPath,
    [join(__dirname, '..', '..', 'dist', 'main.js')],
    {
      stdio: 'inherit',
      env: {
        CACHE_TTL_SECONDS: '30',
        ...process.env,
        PORT: port,
        CACHE_DIR: cacheDir,
        PICSUM_BASE_URL: baseUrl,
        SHUTDOWN_DRAIN_MS: '0',
      },
    },
  );
  const stop = () => service.kill('SIGTERM');
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  service.on('exit', (code) => {
    void upstream.stop().then(() => process.exit(code ?? 0));
  });
}

void main();
