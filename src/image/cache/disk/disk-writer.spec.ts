import { Logger } from '@nestjs/common';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cachedImageOf } from '../../../../test/support/cached-image-of';
import { FakeClock } from '../../../../test/support/fake-clock';
import { LocalVariants } from '../local-variants';
import { BLOCK_BYTES, DiskBudget } from './disk-budget';
import { DiskFiles } from './disk-files';
import { DiskHealth } from './disk-health';
import { DiskIndex } from './disk-index';
import { DiskWriter } from './disk-writer';

describe(DiskWriter.name, () => {
  let directory: string;
  let index: DiskIndex;
  let budget: DiskBudget;
  let health: DiskHealth;
  let writer: DiskWriter;

  function open(budgetBlocks: number, maxEntries = Infinity): void {
    const logger = new Logger('test');
    for (const level of ['log', 'warn', 'error', 'debug'] as const) {
      jest.spyOn(logger, level).mockImplementation(() => undefined);
    }
    const files = new DiskFiles(directory, false, logger);
    index = new DiskIndex(budgetBlocks * BLOCK_BYTES, new LocalVariants());
    budget = new DiskBudget(budgetBlocks * BLOCK_BYTES, maxEntries);
    health = new DiskHealth(files, new FakeClock(), 5000, logger);
    writer = new DiskWriter(index, budget, files, health, logger);
  }

  beforeEach(async () => {
    directory = await mkdtemp(join(tmpdir(), 'disk-writer-'));
  });

  afterEach(() => rm(directory, { recursive: true, force: true }));

  it('evicts the least recently used entries before a write, so the directory stays within the budget', async () => {
    open(7); // 6 blocks for entries of 2 blocks each: 3 entries
    for (const key of ['a', 'b', 'c']) {
      await expect(writer.save(cachedImageOf(key, key))).resolves.toBe(true);
    }
    index.use('a');

    await writer.save(cachedImageOf('d', 'd'));

    expect(index.metadata().map((metadata) => metadata.key)).toEqual([
      'c',
      'a',
      'd',
    ]);
    expect(index.evictions).toBe(1);
    expect(await readdir(directory)).toHaveLength(6);
    expect(budget.reservedBytes).toBe(0);
  });

  it('evicts the least recently used entry when the index holds as many entries as its memory allows', async () => {
    open(100, 2);
    await writer.save(cachedImageOf('a', 'a'));
    await writer.save(cachedImageOf('b', 'b'));
    index.use('a');

    await writer.save(cachedImageOf('c', 'c'));
    await writer.save(cachedImageOf('a', 'A')); // a replacement takes no room of its own

    expect(index.metadata().map((metadata) => metadata.key)).toEqual([
      'c',
      'a',
    ]);
    expect(await readdir(directory)).toHaveLength(4);
  });

  it('stores nothing of an image larger than the whole budget', async () => {
    open(2);

    await expect(
      writer.save(cachedImageOf('big', 'x'.repeat(5000))),
    ).resolves.toBe(false);

    expect(await readdir(directory)).toEqual([]);
  });

  it('records a failed write as not writable and gives its reservation back', async () => {
    open(10);
    await rm(directory, { recursive: true });

    await expect(writer.save(cachedImageOf('a', 'a'))).resolves.toBe(false);

    expect(health.acceptsWrites()).toBe(false);
    expect(budget.reservedBytes).toBe(0);
    expect(index.size).toBe(0);
  });

  it('removes an entry only when it was fetched before the moment given, so a newer one stays', async () => {
    open(10);
    await writer.save(
      cachedImageOf('k', 'new', Date.parse('2026-01-02T00:00:00Z')),
    );

    await writer.delete('k', Date.parse('2026-01-01T00:00:00Z'));
    expect(index.has('k')).toBe(true);

    await writer.delete('k');
    expect(index.has('k')).toBe(false);
    expect(await readdir(directory)).toEqual([]);
  });

  it('removes the entries a predicate picks, and runs a quiet task only after the write in flight is stored', async () => {
    open(20);
    await writer.save(
      cachedImageOf('old', 'o', Date.parse('2026-01-01T00:00:00Z')),
    );
    await writer.save(
      cachedImageOf('new', 'n', Date.parse('2026-01-03T00:00:00Z')),
    );

    const removed = await writer.removeWhere(
      (metadata) => metadata.fetchedAt < '2026-01-02',
    );

    expect(removed).toBe(1);
    const saving = writer.save(cachedImageOf('late', 'l'));
    await new Promise((resolve) => setImmediate(resolve)); // the save is writing
    const seen = await writer.quiet(() => Promise.resolve(index.has('late')));
    await saving;
    expect(seen).toBe(true);
    expect(
      index
        .metadata()
        .map((metadata) => metadata.key)
        .sort(),
    ).toEqual(['late', 'new']);
  });
});
