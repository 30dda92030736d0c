import { Test } from '@nestjs/testing';
import { cacheConfig } from '../../src/config/cache.config';
import { Clock } from '../../src/image/cache/clock';
import { DiskStore } from '../../src/image/cache/disk/disk-store';
import { LocalVariants } from '../../src/image/cache/local-variants';
import type { FakeClock } from './fake-clock';

/** A `DiskStore` on `directory`, initialised as at start-up (directory made, index rebuilt, first probe). */
export async function openDiskStore(
  directory: string,
  diskMaxBytes: number,
  clock: FakeClock,
  readinessDiskCheckIntervalMs = 5000,
  diskFsync = false,
): Promise<DiskStore> {
  const moduleRef = await Test.createTestingModule({
    providers: [
      DiskStore,
      LocalVariants,
      { provide: Clock, useValue: clock },
      {
        provide: cacheConfig.KEY,
        useValue: {
          directory,
          diskMaxBytes,
          memoryMaxBytes: 64 * 1024 * 1024,
          readinessDiskCheckIntervalMs,
          diskFsync,
        },
      },
    ],
  }).compile();
  await moduleRef.init();
  return moduleRef.get(DiskStore);
}
