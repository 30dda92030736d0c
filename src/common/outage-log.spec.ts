import { OUTAGE_RECOVERY_MS, OutageLog } from './outage-log';

describe(OutageLog.name, () => {
  const logger = { log: jest.fn(), error: jest.fn(), warn: jest.fn() };
  let now: number;
  const clock = () => now;

  beforeEach(() => {
    jest.clearAllMocks();
    now = 1000;
  });

  it('logs a burst of failures once when it starts and once when it ends, after a quiet period of successes', () => {
    const outage = new OutageLog(logger, 'Writes to CACHE_DIR=/data', clock);

    for (let i = 0; i < 50; i++) {
      outage.failed('ENOSPC: no space left on device');
    }
    expect(outage.failing).toBe(true);
    now += OUTAGE_RECOVERY_MS;
    outage.succeeded();
    outage.succeeded();

    expect(logger.error).toHaveBeenCalledTimes(1);
    expect(logger.error).toHaveBeenCalledWith(
      'Writes to CACHE_DIR=/data fail: ENOSPC: no space left on device',
    );
    expect(logger.log).toHaveBeenCalledTimes(1);
    expect(logger.log).toHaveBeenCalledWith(
      'Writes to CACHE_DIR=/data work again, after 50 failure(s)',
    );
    expect(logger.warn).not.toHaveBeenCalled();
    expect(outage.failing).toBe(false);
  });

  it('logs a partial outage (writes refused, reads answered) once, however the successes and failures alternate', () => {
    const outage = new OutageLog(logger, 'Commands to Redis', clock);

    for (let i = 0; i < 3000; i++) {
      now += 3;
      if (i % 3 === 0) {
        outage.failed('OOM command not allowed when used memory > maxmemory');
      } else {
        outage.succeeded();
      }
    }

    expect(logger.error).toHaveBeenCalledTimes(1);
    expect(logger.warn).toHaveBeenCalledTimes(1);
    expect(logger.warn).toHaveBeenCalledWith(
      expect.stringMatching(
        /^Commands to Redis partly fail: some succeed while others fail \(OOM command not allowed/,
      ),
    );
    expect(logger.log).not.toHaveBeenCalled();
    expect(outage.failing).toBe(true);
  });

  it('says nothing of a partial outage when it simply ends: successes, then no failure for the quiet period', () => {
    const outage = new OutageLog(logger, 'Commands', clock);
    for (let i = 0; i < 10; i++) {
      outage.failed('connect ECONNREFUSED');
    }

    for (let i = 0; i < 60; i++) {
      now += 100;
      outage.succeeded();
    }

    expect(logger.error).toHaveBeenCalledTimes(1);
    expect(logger.warn).not.toHaveBeenCalled();
    expect(logger.log).toHaveBeenCalledWith(
      'Commands work again, after 10 failure(s)',
    );
  });

  it('ends an outage only after a success that follows the quiet period, then logs the next one again', () => {
    const outage = new OutageLog(logger, 'Commands', clock);
    outage.failed('timeout');

    now += OUTAGE_RECOVERY_MS - 1;
    outage.succeeded();
    const stillFailing = outage.failing;
    now += 1;
    outage.succeeded();
    outage.failed('timeout');

    expect(stillFailing).toBe(true);
    expect(logger.log).toHaveBeenCalledTimes(1);
    expect(logger.error).toHaveBeenCalledTimes(2);
  });

  it('logs nothing while things work', () => {
    const outage = new OutageLog(logger, 'Writes', clock);

    outage.succeeded();

    expect(logger.log).not.toHaveBeenCalled();
    expect(logger.error).not.toHaveBeenCalled();
  });
});
