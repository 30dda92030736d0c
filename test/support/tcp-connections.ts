import { readFile } from 'node:fs/promises';

/** TCP state 01 in /proc/net/tcp. */
const ESTABLISHED = '01';

/**
 * The remote ports of the established IPv4 connections whose local port is `port`, as the
 * kernel sees them (Linux): the server's side of each connection, whatever its client noticed.
 */
export async function establishedPeers(port: number): Promise<number[]> {
  const table = await readFile('/proc/net/tcp', 'utf8');
  return table
    .split('\n')
    .slice(1)
    .map((line) => line.trim().split(/\s+/))
    .filter(
      ([, local, , state]) =>
        local !== undefined &&
        state === ESTABLISHED &&
        parseInt(local.split(':')[1], 16) === port,
    )
    .map(([, , remote]) => parseInt(remote.split(':')[1], 16));
}
