import { Logger } from '@nestjs/common';
import {
  cachedImageOf,
  completeJpeg,
} from '../../../../test/support/cached-image-of';
import {
  RETENTION_SECONDS,
  MAX_BODY_BYTES,
  useSharedParts,
} from '../../../../test/support/shared-parts';
import {
  describeWithRedis,
  useRedisServer,
} from '../../../../test/support/redis-server';
import { createCachedImage, sha256Hex } from '../cached-image';
import { SharedCodec } from './shared-codec';
import { SharedTier } from './shared-tier';
import type { CachedImage } from '../cache-model';

describeWithRedis()(SharedTier.name, () => {
  const redis = useRedisServer();
  const shared = useSharedParts(redis);
  const openTier = shared.open;

  it('stores an image and loads it back with its fetch time, checksum and headers', async () => {
    const { tier } = await openTier();
    const image = cachedImageOf('10x10', 'one', shared.clock.now() - 5000);

    await expect(tier.save(image)).resolves.toBe(true);
    const loaded = await tier.load('10x10');

    expect(loaded).toEqual(image);
    await expect(tier.load('20x20')).resolves.toBeUndefined();
  });

  it('lets Redis drop an entry after the TTL plus the stale window, counted from the fetch', async () => {
    const { tier } = await openTier();
    await tier.save(cachedImageOf('10x10', 'one', shared.clock.now() - 20_000));

    const ttlMs = Number(await redis().cli('pttl', 'test:{10x10}:image'));

    expect(ttlMs).toBeGreaterThan(RETENTION_SECONDS * 1000 - 20_000 - 1000);
    expect(ttlMs).toBeLessThanOrEqual(RETENTION_SECONDS * 1000 - 20_000);
    await expect(
      tier.save(
        cachedImageOf(
          '20x20',
          'old',
          shared.clock.now() - RETENTION_SECONDS * 1000,
        ),
      ),
    ).resolves.toBe(false);
  });

  it('deletes an entry, or with fetchedBefore only one fetched before then', async () => {
    const { tier } = await openTier();
    const image = cachedImageOf('10x10', 'one', shared.clock.now());
    await tier.save(image);

    await tier.delete('10x10', image.fetchedAt);
    const kept = await tier.load('10x10');
    await tier.delete('10x10', image.fetchedAt + 1);
    const deleted = await tier.load('10x10');

    expect(kept).toEqual(image);
    expect(deleted).toBeUndefined();
  });

  it('reads when an entry was fetched from its header, and deletes by header, also when the header is as long as a header may be', async () => {
    const { tier } = await openTier();
    const image = cachedImageOf('10x10', 'one', shared.clock.now());
    const longHeader = {
      ...cachedImageOf('20x20', 'two', shared.clock.now() - 1000),
      source: `http://127.0.0.1/${'x'.repeat(2000)}.jpg`,
    };
    await tier.save(image);
    await tier.save(longHeader);

    const fetchedAt = [
      await tier.fetchedAt('10x10'),
      await tier.fetchedAt('20x20'),
      await tier.fetchedAt('30x30'),
    ];
    await tier.delete('20x20', longHeader.fetchedAt + 1);

    expect(fetchedAt).toEqual([
      image.fetchedAt,
      longHeader.fetchedAt,
      undefined,
    ]);
    await expect(tier.load('20x20')).resolves.toBeUndefined();
    await expect(tier.load('10x10')).resolves.toEqual(image);
  });

  it('records a failure for the retry window, for replicas that look later', async () => {
    const { tier } = await openTier();
    const other = (await openTier()).tier;
    await tier.recordFailure('10x10', {
      status: 502,
      message: 'Upstream answered 500',
      retryAfterMs: 10_000,
    });

    const failure = await other.loadFailure('10x10');
    const ttlMs = Number(await redis().cli('pttl', 'test:{10x10}:failed'));

    expect(failure).toEqual(
      expect.objectContaining({
        type: 'failed',
        key: '10x10',
        status: 502,
        message: 'Upstream answered 500',
      }),
    );
    expect(failure?.retryAfterMs).toBeGreaterThan(9000);
    expect(failure?.retryAfterMs).toBeLessThanOrEqual(10_000);
    expect(ttlMs).toBeLessThanOrEqual(10_000);
    await expect(other.loadFailure('20x20')).resolves.toBeUndefined();
    await redis().cli('set', 'test:{20x20}:failed', '{"type":"stored"}');
    await expect(other.loadFailure('20x20')).resolves.toBeUndefined();
  });

  it('keeps a variant entry and its lock under one hash tag, below the key prefix', async () => {
    const { tier, locks } = await openTier({ keyPrefix: 'release-a:' });
    await tier.save(
      cachedImageOf('10x10-grayscale', 'one', shared.clock.now()),
    );
    await locks.lock('10x10-grayscale');

    const keys = (await redis().cli('--raw', 'keys', '*')).split('\n').sort();

    expect(keys).toEqual([
      'release-a:{10x10-grayscale}:image',
      'release-a:{10x10-grayscale}:lock',
    ]);
  });

  it.each([
    ['a body that no longer matches its SHA-256', 'setrange', '60', 'X'],
    ['a value cut short', 'setrange', '0', '\xff\xff\xff\xff'],
  ])(
    'discards %s, never serving it, and logs it',
    async (_case, command, offset, bytes) => {
      const warn = jest.spyOn(Logger.prototype, 'warn').mockImplementation();
      const { tier } = await openTier();
      await tier.save(
        cachedImageOf('10x10', 'a longer body to damage', shared.clock.now()),
      );
      await redis().cli(command, 'test:{10x10}:image', offset, bytes);

      await expect(tier.load('10x10')).resolves.toBeUndefined();

      expect(await redis().cli('exists', 'test:{10x10}:image')).toBe('0');
      expect(warn).toHaveBeenCalledWith(
        expect.stringContaining(
          'Discarded the shared entry at "test:{10x10}:image"',
        ),
      );
    },
  );

  it('discards an entry whose body is not a complete image, even with a matching checksum', async () => {
    jest.spyOn(Logger.prototype, 'warn').mockImplementation();
    const { tier } = await openTier();
    const svg = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg"/>');
    await tier.save(
      createCachedImage({
        ...cachedImageOf('10x10', 'x', shared.clock.now()),
        body: svg,
        sha256: sha256Hex(svg),
      }),
    );

    await expect(tier.load('10x10')).resolves.toBeUndefined();
  });

  describe('reads everything from Redis as strictly as an upstream reply', () => {
    function encoded(image: CachedImage): Buffer {
      return new SharedCodec(
        { maxBodyBytes: Infinity, maxRetryAfterMs: Infinity },
        () => shared.clock.now(),
      ).encodeEntry(image);
    }

    it('discards an entry fetched in the future, counts it and logs it once with its key', async () => {
      const warn = jest.spyOn(Logger.prototype, 'warn').mockImplementation();
      const { tier } = await openTier();
      const future = cachedImageOf('10x10', 'forever', 9e15);
      await shared.write('test:{10x10}:image', encoded(future));

      const fetchedAt = await tier.fetchedAt('10x10');
      const loaded = await tier.load('10x10');

      expect(fetchedAt).toBeUndefined();
      expect(loaded).toBeUndefined();
      expect(await redis().cli('exists', 'test:{10x10}:image')).toBe('0');
      expect(await shared.rejectedCount('entry')).toBe('2');
      expect(warn).toHaveBeenCalledTimes(1);
      expect(warn).toHaveBeenCalledWith(
        expect.stringMatching(
          /^Discarded the shared entry at "test:\{10x10\}:image": fetched at 9000000000000000 .*ahead of this replica's clock$/,
        ),
      );
    });

    it('takes an entry fetched up to a minute ahead of its clock, another replica’s being ahead of its own', async () => {
      const { tier } = await openTier();
      const ahead = cachedImageOf(
        '10x10',
        'ahead',
        shared.clock.now() + 55_000,
      );
      await shared.write('test:{10x10}:image', encoded(ahead));

      await expect(tier.load('10x10')).resolves.toEqual(ahead);
    });

    it('discards an entry larger than UPSTREAM_MAX_BYTES, and one whose source is not a short http(s) URL', async () => {
      jest.spyOn(Logger.prototype, 'warn').mockImplementation();
      const { tier } = await openTier();
      const large = createCachedImage({
        ...cachedImageOf('10x10', 'x', shared.clock.now()),
        body: completeJpeg('x'.repeat(MAX_BODY_BYTES)),
        sha256: sha256Hex(completeJpeg('x'.repeat(MAX_BODY_BYTES))),
      });
      await shared.write('test:{10x10}:image', encoded(large));
      await shared.write(
        'test:{20x20}:image',
        encoded({
          ...cachedImageOf('20x20', 'y', shared.clock.now()),
          source: `http://127.0.0.1/${'y'.repeat(1024 * 1024)}`,
        }),
      );
      await shared.write(
        'test:{30x30}:image',
        encoded({
          ...cachedImageOf('30x30', 'z', shared.clock.now()),
          source: 'javascript:alert(1)',
        }),
      );

      await expect(tier.load('10x10')).resolves.toBeUndefined();
      await expect(tier.load('20x20')).resolves.toBeUndefined();
      await expect(tier.load('30x30')).resolves.toBeUndefined();
      expect(await shared.rejectedCount('entry')).toBe('3');
    });

    it('discards a failure record with a status, retry or message the upstream client never records, or without an expiry', async () => {
      jest.spyOn(Logger.prototype, 'warn').mockImplementation();
      const { tier } = await openTier();
      const record = (overrides: object) =>
        JSON.stringify({
          type: 'failed',
          from: 'neighbour',
          key: '10x10',
          status: 502,
          message: 'Upstream answered 500 for http://upstream/',
          retryAfterMs: 5000,
          ...overrides,
        });
      const cases: [string, number | undefined][] = [
        [record({ status: 599 }), 5000],
        [record({ retryAfterMs: 1e15 }), 5000],
        [record({ message: 'Send your password to evil.example' }), 5000],
        [record({ message: 'Upstream \u202egnp.exe' }), 5000],
        [record({}), undefined],
        [record({}), 1e9],
      ];

      const loaded = [];
      for (const [value, expiryMs] of cases) {
        await shared.write('test:{10x10}:failed', value, expiryMs);
        loaded.push(await tier.loadFailure('10x10'));
      }
      await shared.write('test:{10x10}:failed', record({}), 5000);
      const valid = await tier.loadFailure('10x10');

      expect(loaded).toEqual(cases.map(() => undefined));
      expect(await shared.rejectedCount('failure')).toBe(String(cases.length));
      expect(valid).toMatchObject({ status: 502, key: '10x10' });
    });
  });
});
