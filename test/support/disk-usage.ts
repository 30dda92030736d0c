import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';

const BLOCK_BYTES = 4096;

/**
 * What a directory's files take on disk, each rounded up to whole 4 KiB blocks, as the kubelet
 * measures an emptyDir and as DiskStore counts its budget. Files removed while it looks count 0.
 */
export async function diskUsage(directory: string): Promise<number> {
  let total = 0;
  for (const name of await readdir(directory).catch(() => [])) {
    const { size } = await stat(join(directory, name)).catch(() => ({
      size: 0,
    }));
    total += Math.ceil(size / BLOCK_BYTES) * BLOCK_BYTES;
  }
  return total;
}
