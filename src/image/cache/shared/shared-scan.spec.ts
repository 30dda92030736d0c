import { cachedImageOf } from '../../../../test/support/cached-image-of';
import { useSharedParts } from '../../../../test/support/shared-parts';
import {
  describeWithRedis,
  useRedisServer,
} from '../../../../test/support/redis-server';
import { SharedScan } from './shared-scan';
import { FIRST_SCAN_POSITION, type ScanPosition } from './redis-connection';

describeWithRedis()(SharedScan.name, () => {
  const redis = useRedisServer();
  const shared = useSharedParts(redis);
  const openTier = shared.open;

  it('purges a variant’s lock with its entry, and every lock with everything', async () => {
    const { tier, scan } = await openTier();
    await tier.save(cachedImageOf('10x10', 'one', shared.clock.now()));
    await shared.write('test:{10x10}:lock', 'forever');
    await shared.write('test:{20x20}:lock', 'forever');
    await shared.write('test:{30x30}:failed', 'junk', 5000);

    await scan.purge('10x10');
    const afterOne = (await redis().cli('--raw', 'keys', '*'))
      .split('\n')
      .sort();
    await scan.purge(null);
    const afterAll = await redis().cli('--raw', 'keys', '*');

    expect(afterOne).toEqual(['test:{20x20}:lock', 'test:{30x30}:failed']);
    expect(afterAll.trim()).toBe('');
  });

  it('walks every entry a SCAN page at a time, each read from its header alone', async () => {
    const { tier, scan } = await openTier();
    const keys = Array.from({ length: 25 }, (_, i) => `${i + 1}x10`);
    for (const key of keys) {
      await tier.save(cachedImageOf(key, key, shared.clock.now()));
    }

    const seen: string[] = [];
    let position: ScanPosition | undefined = FIRST_SCAN_POSITION;
    let pages = 0;
    while (position) {
      const page = await scan.entriesPage(position, 5);
      seen.push(...page.entries.map((entry) => entry.key));
      expect(page.entries.every((entry) => entry.bytes !== undefined)).toBe(
        true,
      );
      position = page.next;
      pages += 1;
    }

    expect(seen.sort()).toEqual([...keys].sort());
    expect(pages).toBeGreaterThan(1);
    await expect(scan.entryOf('404x404')).resolves.toBeUndefined();
  });
});
