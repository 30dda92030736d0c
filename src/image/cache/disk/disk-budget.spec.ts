import {
  BLOCK_BYTES,
  blocksOf,
  DiskBudget,
  entryDiskBytes,
  isOutOfSpace,
  PROBE_RESERVE_BYTES,
} from './disk-budget';

const MiB = 1024 * 1024;

function errorWithCode(code: string): NodeJS.ErrnoException {
  return Object.assign(new Error(code), { code });
}

describe(DiskBudget.name, () => {
  it('counts files in whole blocks, as the kubelet measures an emptyDir', () => {
    expect(blocksOf(0)).toBe(0);
    expect(blocksOf(1)).toBe(BLOCK_BYTES);
    expect(blocksOf(BLOCK_BYTES)).toBe(BLOCK_BYTES);
    expect(blocksOf(BLOCK_BYTES + 1)).toBe(2 * BLOCK_BYTES);
    expect(entryDiskBytes(10_000, 300)).toBe(3 * BLOCK_BYTES + BLOCK_BYTES);
  });

  it('keeps CACHE_DISK_MAX_SIZE on a filesystem that holds it', () => {
    const budget = new DiskBudget(64 * MiB);

    expect(budget.fitFilesystem(1024 * MiB)).toEqual({
      bytes: 64 * MiB,
      lowered: false,
    });
    expect(budget.maxBytes).toBe(64 * MiB);
  });

  it('lowers a budget larger than the filesystem to 95% of it, in whole blocks', () => {
    const budget = new DiskBudget(64 * MiB);

    const fitted = budget.fitFilesystem(10 * MiB);

    expect(fitted.lowered).toBe(true);
    expect(fitted.bytes).toBe(
      Math.floor((10 * MiB * 0.95) / BLOCK_BYTES) * BLOCK_BYTES,
    );
    expect(budget.maxBytes).toBe(fitted.bytes);
    expect(budget.configuredBytes).toBe(64 * MiB);
  });

  it('refuses an entry that alone is larger than the budget less the probe reserve', () => {
    const budget = new DiskBudget(10 * BLOCK_BYTES);

    expect(budget.admits(10 * BLOCK_BYTES - PROBE_RESERVE_BYTES)).toBe(true);
    expect(budget.admits(10 * BLOCK_BYTES)).toBe(false);
  });

  it('reserves only while stored entries, every reservation and the probe reserve fit', () => {
    const budget = new DiskBudget(10 * BLOCK_BYTES);

    expect(budget.reserve(4 * BLOCK_BYTES, 3 * BLOCK_BYTES)).toBe(true);
    expect(budget.reservedBytes).toBe(3 * BLOCK_BYTES);
    // 4 stored + 3 reserved + 3 more > 9 (10 less the probe's block): evict first.
    expect(budget.reserve(4 * BLOCK_BYTES, 3 * BLOCK_BYTES)).toBe(false);
    expect(budget.reservedBytes).toBe(3 * BLOCK_BYTES);
    expect(budget.reserve(3 * BLOCK_BYTES, 3 * BLOCK_BYTES)).toBe(true);

    budget.release(3 * BLOCK_BYTES);
    expect(budget.reservedBytes).toBe(3 * BLOCK_BYTES);
  });

  it('counts files that could not be removed against the budget until a reconciliation clears them', () => {
    const budget = new DiskBudget(10 * BLOCK_BYTES);
    budget.countUnaccounted(6 * BLOCK_BYTES);

    expect(budget.reserve(0, 4 * BLOCK_BYTES)).toBe(false);

    budget.countUnaccounted(0);
    expect(budget.reserve(0, 4 * BLOCK_BYTES)).toBe(true);
  });

  it('with nothing left to evict, waits for the writes in flight, or fails naming the files that take the budget', () => {
    const busy = new DiskBudget(10 * BLOCK_BYTES);
    busy.reserve(0, 5 * BLOCK_BYTES);
    expect(busy.nothingLeftToEvict(5 * BLOCK_BYTES)).toBe(false);

    const blocked = new DiskBudget(10 * BLOCK_BYTES);
    blocked.countUnaccounted(8 * BLOCK_BYTES);
    expect(() => blocked.nothingLeftToEvict(2 * BLOCK_BYTES)).toThrow(
      `no room for ${2 * BLOCK_BYTES} bytes: ${8 * BLOCK_BYTES} bytes of files that could not be removed take the budget`,
    );
  });

  it('after ENOSPC or EDQUOT frees the entry’s own size and tries once more; other failures are not fixed by room', () => {
    const budget = new DiskBudget(10 * BLOCK_BYTES);

    expect(isOutOfSpace(errorWithCode('ENOSPC'))).toBe(true);
    expect(budget.bytesToFreeAfter(errorWithCode('ENOSPC'), 8192)).toBe(8192);
    expect(budget.bytesToFreeAfter(errorWithCode('EDQUOT'), 4096)).toBe(4096);
    expect(
      budget.bytesToFreeAfter(errorWithCode('EROFS'), 4096),
    ).toBeUndefined();
    expect(budget.bytesToFreeAfter(new Error('no code'), 4096)).toBeUndefined();
    expect(budget.bytesToFreeAfter(undefined, 4096)).toBeUndefined();
  });

  it('keeps the newest entries found at start that fit a lowered budget, and names the rest', () => {
    const budget = new DiskBudget(5 * BLOCK_BYTES);
    const newestFirst = [
      { name: 'newest', diskBytes: 2 * BLOCK_BYTES },
      { name: 'middle', diskBytes: 2 * BLOCK_BYTES },
      { name: 'oldest', diskBytes: 2 * BLOCK_BYTES },
      { name: 'small and old', diskBytes: 0 },
    ];

    const { kept, over } = budget.keepNewest(newestFirst);

    expect(kept.map((entry) => entry.name)).toEqual([
      'newest',
      'middle',
      'small and old',
    ]);
    expect(over.map((entry) => entry.name)).toEqual(['oldest']);
  });

  it('keeps at most as many entries found at start as the index may hold', () => {
    const budget = new DiskBudget(100 * BLOCK_BYTES, 2);
    const newestFirst = ['newest', 'middle', 'oldest'].map((name) => ({
      name,
      diskBytes: BLOCK_BYTES,
    }));

    const { kept, over } = budget.keepNewest(newestFirst);

    expect(kept.map((entry) => entry.name)).toEqual(['newest', 'middle']);
    expect(over.map((entry) => entry.name)).toEqual(['oldest']);
    expect(budget.hasRoomForEntry(2, false)).toBe(false);
    expect(budget.hasRoomForEntry(2, true)).toBe(true);
    expect(budget.hasRoomForEntry(1, false)).toBe(true);
  });
});
