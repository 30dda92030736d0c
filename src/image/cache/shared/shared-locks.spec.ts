import { Logger } from '@nestjs/common';
import {
  LOCK_TTL_MS,
  useSharedParts,
} from '../../../../test/support/shared-parts';
import {
  describeWithRedis,
  useRedisServer,
} from '../../../../test/support/redis-server';
import { type SharedLock, SharedLocks } from './shared-locks';

describeWithRedis()(SharedLocks.name, () => {
  const redis = useRedisServer();
  const shared = useSharedParts(redis);
  const openTier = shared.open;

  it('gives a variant lock to one replica at a time, released only by its holder', async () => {
    const first = (await openTier()).locks;
    const second = (await openTier()).locks;

    const lock = (await first.lock('10x10')) as SharedLock;
    expect(typeof lock).toBe('object');
    await expect(second.lock('10x10')).resolves.toBe('held');
    await expect(second.lock('20x20')).resolves.toMatchObject({});

    await second.unlock({ ...lock, token: 'not-the-holder' });
    await expect(second.lock('10x10')).resolves.toBe('held');
    await first.unlock(lock);
    await expect(second.lock('10x10')).resolves.toHaveProperty('token');
  });

  it('lets another replica take a lock over once its holder stopped renewing it and it expired', async () => {
    const first = (await openTier()).locks;
    const second = (await openTier()).locks;
    const stale = (await first.lock('10x10')) as SharedLock;

    await new Promise((resolve) => setTimeout(resolve, LOCK_TTL_MS + 50));
    const takenOver = await second.lock('10x10');
    await first.unlock(stale); // the old holder wakes up: it must not release the new lock

    expect(takenOver).toHaveProperty('token');
    await expect(first.lock('10x10')).resolves.toBe('held');
  });

  it('takes over a lock left without an expiry, or with one longer than a lock may have, and counts it', async () => {
    jest.spyOn(Logger.prototype, 'warn').mockImplementation();
    const { locks } = await openTier();
    await shared.write('test:{10x10}:lock', 'forever');
    await shared.write('test:{20x20}:lock', 'too long', LOCK_TTL_MS * 100);
    await shared.write('test:{30x30}:lock', 'a replica’s', LOCK_TTL_MS);

    const forever = await locks.lock('10x10');
    const tooLong = await locks.lock('20x20');
    const held = await locks.lock('30x30');
    const ttlMs = Number(await redis().cli('pttl', 'test:{10x10}:lock'));

    expect(forever).toHaveProperty('token');
    expect(tooLong).toHaveProperty('token');
    expect(held).toBe('held');
    expect(ttlMs).toBeGreaterThan(0);
    expect(ttlMs).toBeLessThanOrEqual(LOCK_TTL_MS);
    expect(await shared.rejectedCount('lock')).toBe('2');
  });
});
