import type { HttpModuleOptions } from '@nestjs/axios';
import type { ConfigType } from '@nestjs/config';
import type { upstreamConfig } from '../../config/upstream.config';
import type { UpstreamAgents } from './upstream-agents';

/**
 * How `HttpService` talks to the upstream. The checks of `upstream-reply.ts` must see every
 * hop and the exact bytes that will be stored and served, so: no redirect followed by axios
 * (`PicsumClient` follows them by hand, to allowed hosts only), nothing decompressed, the body
 * as bytes and read only up to `UPSTREAM_MAX_BYTES`, every status handed back rather than
 * thrown. `timeout` bounds each hop; `PicsumClient`'s deadline bounds the whole fetch. No proxy
 * from `HTTP_PROXY`/`HTTPS_PROXY` either (axios would take one from the environment by itself):
 * the upstream is reached directly, as before the client was axios. Connections are kept alive
 * and reused (`UpstreamAgents`).
 */
export function upstreamHttpOptions(
  config: Pick<ConfigType<typeof upstreamConfig>, 'timeoutMs' | 'maxBytes'>,
  agents: UpstreamAgents,
): HttpModuleOptions {
  return {
    httpAgent: agents.http,
    httpsAgent: agents.https,
    maxRedirects: 0,
    decompress: false,
    responseType: 'arraybuffer',
    maxContentLength: config.maxBytes,
    maxBodyLength: config.maxBytes,
    timeout: config.timeoutMs,
    validateStatus: () => true,
    headers: { accept: 'image/*', 'accept-encoding': 'identity' },
    transitional: { clarifyTimeoutError: true },
    proxy: false,
  };
}
