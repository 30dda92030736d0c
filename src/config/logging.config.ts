import { registerAs } from '@nestjs/config';
import { parseEnvironment } from './environment';

export const loggingConfig = registerAs('logging', () => {
  const env = parseEnvironment(process.env);
  return {
    /** JSON lines for log pipelines in production, readable lines otherwise. */
    format:
      env.LOG_FORMAT ??
      (process.env.NODE_ENV === 'production' ? 'json' : 'pretty'),
    level: env.LOG_LEVEL,
  };
});
