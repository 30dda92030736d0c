import { errorKind } from './error-kind';

describe(errorKind.name, () => {
  it.each([
    ["ENOSPC: no space left on device, write '/app/storage/x.tmp'", 'ENOSPC'],
    ['connect ECONNREFUSED 10.0.0.7:6379', 'ECONNREFUSED'],
    ['no reply within REDIS_COMMAND_TIMEOUT_MS (500 ms)', 'timeout'],
    ["OOM command not allowed when used memory > 'maxmemory'.", 'OOM'],
    ['not connected', 'failing'],
    ['redis.internal:6379 said something odd', 'failing'],
  ])('names %j by its kind alone: %s', (message, kind) => {
    expect(errorKind(message, 'failing')).toBe(kind);
  });
});
