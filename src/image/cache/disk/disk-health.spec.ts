import { Logger } from '@nestjs/common';
import { FakeClock } from '../../../../test/support/fake-clock';
import type { DiskFiles } from './disk-files';
import { DiskHealth } from './disk-health';

describe(DiskHealth.name, () => {
  let clock: FakeClock;
  let probeWrite: jest.Mock<Promise<void>, []>;
  let isReadable: jest.Mock<Promise<boolean>, []>;
  let health: DiskHealth;
  let errors: string[];

  beforeEach(() => {
    clock = new FakeClock();
    probeWrite = jest.fn<Promise<void>, []>().mockResolvedValue(undefined);
    isReadable = jest.fn<Promise<boolean>, []>().mockResolvedValue(true);
    const files = {
      directory: '/cache',
      probeWrite,
      isReadable,
    } as unknown as DiskFiles;
    const logger = new Logger('test');
    errors = [];
    jest
      .spyOn(logger, 'error')
      .mockImplementation(
        (message: unknown) => void errors.push(String(message)),
      );
    jest.spyOn(logger, 'log').mockImplementation(() => undefined);
    health = new DiskHealth(files, clock, 5000, logger);
  });

  it('probes at most once per interval and answers the last result in between', async () => {
    await expect(health.status()).resolves.toEqual({
      readable: true,
      writable: true,
    });
    probeWrite.mockRejectedValue(new Error('EROFS: read-only file system'));

    clock.advanceSeconds(4);
    await expect(health.status()).resolves.toMatchObject({ writable: true });
    clock.advanceSeconds(1);
    await expect(health.status()).resolves.toEqual({
      readable: true,
      writable: false,
      reason: 'EROFS: read-only file system',
    });
    expect(probeWrite).toHaveBeenCalledTimes(2);
  });

  it('runs one probe for readiness checks that arrive together', async () => {
    await Promise.all([health.status(), health.status(), health.status()]);

    expect(probeWrite).toHaveBeenCalledTimes(1);
  });

  it('reports a directory that takes no writes and cannot be listed as unreadable too', async () => {
    probeWrite.mockRejectedValue(new Error('EIO'));
    isReadable.mockResolvedValue(false);

    await expect(health.check()).resolves.toEqual({
      readable: false,
      writable: false,
      reason: 'EIO',
    });
  });

  it('turns not writable at once when a write fails, skips writes until a check is due, and logs the outage once', async () => {
    await health.check();

    health.writeFailed(new Error('ENOSPC: no space left on device'));
    health.writeFailed(new Error('ENOSPC: no space left on device'));

    await expect(health.status()).resolves.toMatchObject({ writable: false });
    expect(health.acceptsWrites()).toBe(false);
    clock.advanceSeconds(5);
    expect(health.acceptsWrites()).toBe(true);
    expect(errors).toEqual([
      'Writes to CACHE_DIR=/cache fail: ENOSPC: no space left on device',
    ]);
  });

  it('turns writable again after a write succeeds', async () => {
    health.writeFailed(new Error('EROFS'));

    health.writeSucceeded();

    await expect(health.status()).resolves.toEqual({
      readable: true,
      writable: true,
    });
    expect(health.acceptsWrites()).toBe(true);
  });
});
