import { DISK_RECORD_BYTES, diskRecordLimit } from './entry-costs';

describe(diskRecordLimit.name, () => {
  it('lets the disk index take half the memory budget', () => {
    expect(diskRecordLimit(64 * 1024 * 1024)).toBe(32_768);
    expect(diskRecordLimit(64 * 1024 * 1024) * DISK_RECORD_BYTES).toBe(
      32 * 1024 * 1024,
    );
  });

  it('leaves the disk tier 4096 records when the memory budget is small or off', () => {
    expect(diskRecordLimit(0)).toBe(4096);
    expect(diskRecordLimit(1024 * 1024)).toBe(4096);
  });
});
