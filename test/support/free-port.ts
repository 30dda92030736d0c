import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';

/**
 * A loopback port that nothing listens on: bound on 127.0.0.1 by the OS, then released. For a
 * server that must be told its port up front, or for a connection that must be refused.
 */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}
