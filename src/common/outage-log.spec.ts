import { OutageLog } from './outage-log';

describe(OutageLog.name, () => {
  const logger = { log: jest.fn(), error: jest.fn(), warn: jest.fn() };

  beforeEach(() => jest.clearAllMocks());

  it('logs a burst of failures once when it starts and once when it ends', () => {
    const outage = new OutageLog(logger, 'Writes to CACHE_DIR=/data');

    for (let i = 0; i < 50; i++) {
      outage.failed('ENOSPC: no space left on device');
    }
    expect(outage.failing).toBe(true);
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
    expect(outage.failing).toBe(false);
  });

  it('logs nothing while things work', () => {
    const outage = new OutageLog(logger, 'Writes');

    outage.succeeded();

    expect(logger.log).not.toHaveBeenCalled();
    expect(logger.error).not.toHaveBeenCalled();
  });
});
