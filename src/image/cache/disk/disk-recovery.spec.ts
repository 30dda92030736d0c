import { Logger } from '@nestjs/common';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cachedImageOf } from '../../../../test/support/cached-image-of';
import type { CachedImage } from '../cache-model';
import { BLOCK_BYTES, DiskBudget } from './disk-budget';
import {
  type DiskEntry,
  encodeEntry,
  metadataNameOf,
} from './disk-entry-format';
import { DiskFiles } from './disk-files';
import { DiskRecovery } from './disk-recovery';

describe(DiskRecovery.name, () => {
  let directory: string;
  let files: DiskFiles;
  let budget: DiskBudget;
  let recovery: DiskRecovery;
  let logger: Logger;

  beforeEach(async () => {
    directory = await mkdtemp(join(tmpdir(), 'disk-recovery-'));
    logger = new Logger('test');
    jest.spyOn(logger, 'warn').mockImplementation(() => undefined);
    jest.spyOn(logger, 'log').mockImplementation(() => undefined);
    files = new DiskFiles(directory, false, logger);
    budget = new DiskBudget(100 * BLOCK_BYTES);
    recovery = new DiskRecovery(files, budget, logger);
  });

  afterEach(() => rm(directory, { recursive: true, force: true }));

  async function store(image: CachedImage): Promise<DiskEntry> {
    const { metadata, metadataText, diskBytes } = encodeEntry(image);
    await files.writeEntry(
      image.key,
      metadata.bodyFile,
      image.body,
      metadataText,
      undefined,
    );
    return { metadata, diskBytes };
  }

  it('finds stored entries, the one fetched longest ago first', async () => {
    await store(cachedImageOf('new', 'n', Date.parse('2026-01-02T00:00:00Z')));
    await store(cachedImageOf('old', 'o', Date.parse('2026-01-01T00:00:00Z')));

    const found = await recovery.recover();

    expect(found.map((entry) => entry.metadata.key)).toEqual(['old', 'new']);
  });

  it('sweeps temporary files, bodies no metadata names and metadata that cannot be used', async () => {
    const kept = await store(cachedImageOf('kept', 'k'));
    await writeFile(join(directory, '.123.tmp'), 'half');
    await writeFile(join(directory, 'ab.cd.img'), 'orphan');
    await writeFile(join(directory, metadataNameOf('broken')), '{not json');

    const found = await recovery.recover();

    expect(found).toEqual([kept]);
    expect((await readdir(directory)).sort()).toEqual(
      [kept.metadata.bodyFile, metadataNameOf('kept')].sort(),
    );
  });

  it('removes the oldest entries that no longer fit a lowered budget', async () => {
    for (let day = 1; day <= 3; day += 1) {
      await store(
        cachedImageOf(
          `day ${day}`,
          'x',
          Date.parse(`2026-01-0${day}T00:00:00Z`),
        ),
      );
    }
    // Each entry takes 2 blocks; 4 blocks less the probe's 1 hold one.
    const lowered = new DiskRecovery(
      files,
      new DiskBudget(4 * BLOCK_BYTES),
      logger,
    );

    const found = await lowered.recover();

    expect(found.map((entry) => entry.metadata.key)).toEqual(['day 3']);
    expect(await readdir(directory)).toHaveLength(2);
  });

  it('reconciles: names entries whose files are gone and removes files no entry names', async () => {
    const kept = await store(cachedImageOf('kept', 'k'));
    const gone = await store(cachedImageOf('gone', 'g'));
    await rm(join(directory, gone.metadata.bodyFile));
    await writeFile(join(directory, 'stray'), 'x');

    const broken = await recovery.reconcile([
      ['kept', kept],
      ['gone', gone],
    ]);

    expect(broken).toEqual(['gone']);
    expect((await readdir(directory)).sort()).toEqual(
      [kept.metadata.bodyFile, metadataNameOf('kept')].sort(),
    );
    expect(budget.unaccountedBytes).toBe(0);
  });
});
