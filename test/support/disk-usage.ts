import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';

const BLOCK_BYTES = 4096;

/**
 * What a directory's files take on disk, its subdirectories' included, each file rounded up to
 * whole 4 KiB blocks, as the kubelet measures an emptyDir and as DiskStore counts its budget.
 * Files removed while it looks count 0.
 */
export async function diskUsage(directory: string): Promise<number> {
  let total = 0;
  for (const name of await readdir(directory).catch(() => [])) {
    const path = join(directory, name);
    const info = await lstat(path).catch(() => undefined);
    if (info?.isDirectory()) {
      total += await diskUsage(path);
    } else if (info) {
      total += Math.ceil(info.size / BLOCK_BYTES) * BLOCK_BYTES;
    }
  }
  return total;
}
