import { UpstreamAgents } from './upstream-agents';
import { upstreamHttpOptions } from './upstream-http.options';

describe(upstreamHttpOptions.name, () => {
  const agents = new UpstreamAgents();
  const options = upstreamHttpOptions(
    { timeoutMs: 30_000, maxBytes: 20_000_000 },
    agents,
  );

  afterAll(() => agents.onApplicationShutdown());

  it('keeps the connections to the upstream alive, for HTTP and HTTPS', () => {
    expect(options.httpAgent).toBe(agents.http);
    expect(options.httpsAgent).toBe(agents.https);
    // Node's agents have the option, untyped.
    expect(agents.http).toHaveProperty('keepAlive', true);
    expect(agents.https).toHaveProperty('keepAlive', true);
  });

  it('leaves every redirect to the client, which checks each hop', () => {
    expect(options.maxRedirects).toBe(0);
    expect(options.validateStatus?.(302)).toBe(true);
    expect(options.validateStatus?.(500)).toBe(true);
  });

  it('reads the bytes as sent, up to UPSTREAM_MAX_BYTES, never decompressed', () => {
    expect(options).toMatchObject({
      decompress: false,
      responseType: 'arraybuffer',
      maxContentLength: 20_000_000,
      maxBodyLength: 20_000_000,
      headers: { 'accept-encoding': 'identity' },
    });
  });

  it('bounds each hop by UPSTREAM_TIMEOUT_MS and reaches the upstream without a proxy from the environment', () => {
    expect(options.timeout).toBe(30_000);
    expect(options.proxy).toBe(false);
  });
});
