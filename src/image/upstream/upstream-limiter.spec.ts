import { UpstreamBusyException } from './upstream-busy.exception';
import { UpstreamLimiter } from './upstream-limiter';

function limiterOf(maxConcurrency: number, queueTimeoutMs: number) {
  return new UpstreamLimiter({
    maxConcurrency,
    queueTimeoutMs,
  } as ConstructorParameters<typeof UpstreamLimiter>[0]);
}

/** A fetch that runs until released. */
function pending() {
  let release!: () => void;
  const done = new Promise<void>((resolve) => (release = resolve));
  return { run: () => done, release };
}

describe(UpstreamLimiter.name, () => {
  it('runs at most UPSTREAM_MAX_CONCURRENCY fetches at once', async () => {
    const limiter = limiterOf(2, 1000);
    const fetches = [pending(), pending(), pending()];

    const running = fetches.map((fetch) => limiter.run(fetch.run));
    await new Promise((resolve) => setImmediate(resolve));
    expect(limiter.active).toBe(2);
    fetches[0].release();
    await running[0];
    await new Promise((resolve) => setImmediate(resolve));
    expect(limiter.active).toBe(2);
    fetches[1].release();
    fetches[2].release();
    await Promise.all(running);
    expect(limiter.active).toBe(0);
  });

  it('fails a fetch that waited past UPSTREAM_QUEUE_TIMEOUT_MS with a 503 that says when to retry', async () => {
    const limiter = limiterOf(1, 30);
    const first = pending();
    const running = limiter.run(first.run);

    const waiting = limiter.run(() => Promise.resolve('never'));

    await expect(waiting).rejects.toThrow(UpstreamBusyException);
    await expect(waiting).rejects.toMatchObject({
      retryAfterSeconds: 1,
      status: 503,
    });
    first.release();
    await running;
    await expect(limiter.run(() => Promise.resolve('ok'))).resolves.toBe('ok');
  });

  it('passes a fetch error through and frees the slot', async () => {
    const limiter = limiterOf(1, 30);

    await expect(
      limiter.run(() => Promise.reject(new Error('upstream down'))),
    ).rejects.toThrow('upstream down');
    await expect(limiter.run(() => Promise.resolve(1))).resolves.toBe(1);
  });
});
