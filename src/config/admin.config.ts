import { registerAs } from '@nestjs/config';
import { parseEnvironment } from './environment';

export const adminConfig = registerAs('admin', () => {
  const env = parseEnvironment(process.env);
  return {
    /** The bearer token of `/admin/*`; without it those routes answer 404. Never logged. */
    token: env.ADMIN_TOKEN,
  };
});
