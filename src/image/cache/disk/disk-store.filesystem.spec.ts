import { Logger } from '@nestjs/common';
import { mkdir, readdir, statfs, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { diskUsage } from '../../../../test/support/disk-usage';
import { FakeClock } from '../../../../test/support/fake-clock';
import { openDiskStore } from '../../../../test/support/open-disk-store';
import {
  mountTmpfs,
  type Tmpfs,
  tmpfsUnavailable,
} from '../../../../test/support/tmpfs';
import { createCachedImage, sha256Hex } from '../cached-image';
import { DiskStore } from './disk-store';
import type { CachedImage } from '../cache-model';

const KIB = 1024;
const MIB = 1024 * KIB;
const CHECK_INTERVAL_MS = 5000;

/** A complete JPEG (start and end markers) of `bytes` bytes, different for each `key`. */
function imageOf(key: string, bytes: number): CachedImage {
  const body = Buffer.alloc(bytes, key.length % 251);
  body.write(key, 4, 'latin1');
  Buffer.from([0xff, 0xd8, 0xff, 0xe0]).copy(body, 0);
  Buffer.from([0xff, 0xd9]).copy(body, bytes - 2);
  return createCachedImage({
    key,
    body,
    contentType: 'image/jpeg',
    sha256: sha256Hex(body),
    fetchedAt: Date.parse('2026-01-01T00:00:00Z'),
    source: 'http://127.0.0.1/id/1/10/10.jpg',
  });
}

const unavailable = tmpfsUnavailable();
if (unavailable) {
  // Printed, so a run that skips these says why.
  process.stderr.write(
    `Skipping the tmpfs specs of DiskStore: ${unavailable}\n`,
  );
}

(unavailable ? describe.skip : describe)(
  `${DiskStore.name} on a real, small filesystem (tmpfs)`,
  () => {
    let tmpfs: Tmpfs;
    let cacheDir: string;
    let clock: FakeClock;
    let warn: jest.SpyInstance;
    let error: jest.SpyInstance;

    function openStore(diskMaxBytes: number): Promise<DiskStore> {
      return openDiskStore(cacheDir, diskMaxBytes, clock, CHECK_INTERVAL_MS);
    }

    /** Fills the filesystem, outside the cache directory, until `leaveFree` bytes are left. */
    async function fillUntil(leaveFree: number): Promise<void> {
      const { bavail, bsize } = await statfs(tmpfs.path);
      const filler = bavail * bsize - leaveFree;
      if (filler > 0) {
        await writeFile(
          join(tmpfs.path, `filler-${Date.now()}`),
          Buffer.alloc(filler),
        );
      }
    }

    function mount(sizeBytes: number): void {
      tmpfs = mountTmpfs(sizeBytes);
      cacheDir = join(tmpfs.path, 'cache');
    }

    beforeEach(() => {
      clock = new FakeClock();
      warn = jest.spyOn(Logger.prototype, 'warn').mockImplementation();
      error = jest.spyOn(Logger.prototype, 'error').mockImplementation();
      jest.spyOn(Logger.prototype, 'log').mockImplementation();
    });

    afterEach(() => {
      jest.restoreAllMocks();
      tmpfs.remount('rw');
      tmpfs.unmount();
    });

    it('fits a budget larger than the volume to the volume, so saves evict instead of failing', async () => {
      mount(2 * MIB);

      const store = await openStore(512 * MIB);
      const results: boolean[] = [];
      for (let i = 0; i < 40; i++) {
        results.push(await store.save(imageOf(`k${i}`, 100 * KIB)));
      }
      const restarted = await openStore(512 * MIB);

      expect(store.maxBytes).toBeLessThanOrEqual(2 * MIB * 0.95);
      expect(warn).toHaveBeenCalledWith(
        expect.stringMatching(
          /CACHE_DISK_MAX_SIZE \(536870912 bytes\) is larger than the filesystem of .* \(2097152 bytes\); using \d+ bytes/,
        ),
      );
      expect(results.every(Boolean)).toBe(true);
      expect(await diskUsage(cacheDir)).toBeLessThanOrEqual(store.maxBytes);
      await expect(store.status()).resolves.toEqual({
        readable: true,
        writable: true,
      });
      expect(restarted.entryCount).toBe(store.entryCount);
      await expect(restarted.load('k39')).resolves.toBeDefined();
    });

    it('on ENOSPC from something else, evicts and retries once; when that fails, stays readable and logs once', async () => {
      mount(1 * MIB);
      const store = await openStore(900 * KIB);
      for (let i = 0; i < 4; i++) {
        await store.save(imageOf(`old${i}`, 100 * KIB));
      }
      await fillUntil(40 * KIB);

      const saved = await store.save(imageOf('new', 100 * KIB));
      const newLoaded = await store.load('new');
      const oldestKept = store.has('old0');
      await fillUntil(0);
      const failures: boolean[] = [];
      for (let i = 0; i < 5; i++) {
        clock.advanceSeconds(CHECK_INTERVAL_MS / 1000);
        failures.push(await store.save(imageOf(`later${i}`, 500 * KIB)));
      }

      expect(saved).toBe(true);
      expect(newLoaded?.key).toBe('new');
      expect(oldestKept).toBe(false);
      expect(failures).toEqual([false, false, false, false, false]);
      expect(error).toHaveBeenCalledTimes(1);
      expect(error).toHaveBeenCalledWith(expect.stringContaining('ENOSPC'));
      await expect(store.status()).resolves.toMatchObject({
        readable: true,
        writable: false,
      });
    });

    it('keeps counting entries whose files could not be removed, so the budget holds after an EROFS blip', async () => {
      mount(2 * MIB);
      const budget = 600 * KIB;
      const store = await openStore(budget);
      for (let i = 0; i < 5; i++) {
        await store.save(imageOf(`k${i}`, 100 * KIB));
      }
      const entriesBefore = store.entryCount;
      const usedBefore = store.usedBytes;

      tmpfs.remount('ro');
      const duringBlip = await store.save(imageOf('blip', 100 * KIB));
      tmpfs.remount('rw');
      expect(store.entryCount).toBe(entriesBefore);
      expect(store.usedBytes).toBe(usedBefore);
      clock.advanceSeconds(CHECK_INTERVAL_MS / 1000);
      const afterBlip: boolean[] = [];
      for (let i = 0; i < 10; i++) {
        afterBlip.push(await store.save(imageOf(`after${i}`, 100 * KIB)));
      }

      expect(duringBlip).toBe(false);
      expect(afterBlip.every(Boolean)).toBe(true);
      expect(await diskUsage(cacheDir)).toBeLessThanOrEqual(budget);
      expect(await diskUsage(cacheDir)).toBe(store.usedBytes);
    });

    it('removes the body of a save whose metadata could not be written', async () => {
      mount(512 * KIB);
      const store = await openStore(400 * KIB);
      // Room for the body's temporary file, not for the metadata's too.
      await fillUntil(40 * KIB);

      const saved = await store.save(imageOf('k', 40 * KIB - 100));

      expect(saved).toBe(false);
      expect(
        (await readdir(cacheDir)).filter((name) => !name.startsWith('.probe')),
      ).toEqual([]);
    });

    it('starts on a read-only CACHE_DIR with leftovers, serves what it holds, keeps new images in memory', async () => {
      mount(2 * MIB);
      const writer = await openStore(MIB);
      await writer.save(imageOf('stored', 100 * KIB));
      await writeFile(join(cacheDir, '.interrupted.tmp'), 'partial');
      await mkdir(join(cacheDir, 'junk.tmp'));
      tmpfs.remount('ro');

      const store = await openStore(MIB);

      await expect(store.load('stored')).resolves.toMatchObject({
        key: 'stored',
      });
      await expect(store.save(imageOf('new', 10 * KIB))).resolves.toBe(false);
      await expect(store.status()).resolves.toMatchObject({
        readable: true,
        writable: false,
        reason: expect.stringContaining('EROFS') as unknown,
      });
      expect(warn).toHaveBeenCalledWith(
        expect.stringContaining('is read-only'),
      );

      tmpfs.remount('rw');
      clock.advanceSeconds(CHECK_INTERVAL_MS / 1000);
      await expect(store.save(imageOf('new', 10 * KIB))).resolves.toBe(true);
      await expect(store.status()).resolves.toEqual({
        readable: true,
        writable: true,
      });
    });
  },
);
