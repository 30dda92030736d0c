import type { RedisConnection } from './redis-connection';

/** Deletes KEYS[1] only while it still holds ARGV[1]: releases a lock only its holder took, discards only the entry that was read. */
const COMPARE_AND_DELETE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0`;

/** Deletes KEYS[1] only while its value starts with ARGV[1]: an entry is known by its header. */
export const COMPARE_PREFIX_AND_DELETE = `
if redis.call('GETRANGE', KEYS[1], 0, #ARGV[1] - 1) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0`;

/**
 * Takes the lock KEYS[1] with token ARGV[1] for ARGV[2] ms: 1 when it was free, 2 when it was
 * held without an expiry or for longer than a lock may be (not a lock any replica took, which
 * would make every miss of the variant wait for ever), 0 while another replica holds it.
 */
export const TAKE_LOCK = `
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
local remaining = redis.call('PTTL', KEYS[1])
if remaining == -1 or remaining > tonumber(ARGV[2]) then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 2
end
return 0`;

/** Deletes `key` only while it still holds `expected`; does nothing while Redis is down. */
export async function compareAndDelete(
  redis: RedisConnection,
  key: string,
  expected: Buffer | string,
): Promise<void> {
  try {
    await redis.run((commands) =>
      commands.eval(COMPARE_AND_DELETE, { keys: [key], arguments: [expected] }),
    );
  } catch {
    // Redis is down: a lock expires, and an entry is read and discarded again later.
  }
}
