import { randomUUID } from 'node:crypto';

/** What an incoming `x-request-id` may be to be kept: up to 64 characters that need no escaping anywhere. */
const SAFE_REQUEST_ID = /^[A-Za-z0-9._:-]{1,64}$/;

/** The request's id: its `x-request-id` when that is safe to log and echo, else a new UUID. */
export function requestIdOf(header: string | string[] | undefined): string {
  return typeof header === 'string' && SAFE_REQUEST_ID.test(header)
    ? header
    : randomUUID();
}
