import { registerAs } from '@nestjs/config';
import { parseEnvironment } from './environment';

export const serverConfig = registerAs('server', () => {
  const env = parseEnvironment(process.env);
  return {
    port: env.PORT,
    host: env.HOST,
    /** How long readiness reports 503 after SIGTERM before the server stops accepting requests. */
    shutdownDrainMs: env.SHUTDOWN_DRAIN_MS,
  };
});
