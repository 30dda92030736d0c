/**
 * The kind of a failure, for a probe's body: a system error code (`ENOSPC`, `EROFS`,
 * `ECONNREFUSED`), a Redis error prefix (`OOM`, `NOAUTH`, `READONLY`), `timeout`, or
 * `fallback`. Never the message itself, which may name a path, a host or a port: those stay
 * in the logs, out of what anyone who reaches the probe can read.
 */
export function errorKind(message: string, fallback: string): string {
  const code = /\b(E[A-Z]{2,})\b/.exec(message)?.[1];
  if (code !== undefined) {
    return code;
  }
  if (/timeout|timed out|TIMEOUT/.test(message)) {
    return 'timeout';
  }
  return /^([A-Z]{3,})\b/.exec(message)?.[1] ?? fallback;
}
