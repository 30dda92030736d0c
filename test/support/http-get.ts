import { performance } from 'node:perf_hooks';

/** One reply as the e2e specs look at it. */
export interface Reply {
  readonly status: number;
  readonly etag: string | null;
  readonly cacheStatus?: string | null;
  readonly xCache?: string | null;
  readonly ms: number;
}

/** GETs `url` and reads the whole body; a connection error is status 0, never a throw. */
export async function get(url: string): Promise<Reply> {
  const started = performance.now();
  try {
    const response = await fetch(url);
    await response.arrayBuffer();
    return {
      status: response.status,
      etag: response.headers.get('etag'),
      cacheStatus: response.headers.get('cache-status'),
      xCache: response.headers.get('x-cache'),
      ms: performance.now() - started,
    };
  } catch {
    return { status: 0, etag: null, ms: performance.now() - started };
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `condition` every 25 ms until it holds, and returns how long that took; throws after `timeoutMs`. */
export async function waitFor(
  condition: () => boolean | Promise<boolean>,
  timeoutMs = 5000,
): Promise<number> {
  const started = performance.now();
  while (!(await condition())) {
    if (performance.now() - started > timeoutMs) {
      throw new Error(`condition not met within ${timeoutMs} ms`);
    }
    await sleep(25);
  }
  return performance.now() - started;
}
