import { registerAs } from '@nestjs/config';
import { parseEnvironment } from './environment';

export const serverConfig = registerAs('server', () => {
  const env = parseEnvironment(process.env);
  return {
    port: env.PORT,
    host: env.HOST,
    /** How long readiness reports 503 after SIGTERM before the server stops accepting requests. */
    shutdownDrainMs: env.SHUTDOWN_DRAIN_MS,
    /**
     * How long a client may take to send its request, or leave its reply without progress
     * (not reading it), before it is disconnected.
     */
    clientIdleTimeoutMs: env.CLIENT_IDLE_TIMEOUT_MS,
    /** Connections held at once; more are closed as they arrive. */
    maxConnections: env.MAX_CONNECTIONS,
  };
});
