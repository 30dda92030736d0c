import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A tmpfs mounted by a test: a real filesystem that can fill up and turn read-only. */
export interface Tmpfs {
  readonly path: string;
  remount(mode: 'ro' | 'rw'): void;
  unmount(): void;
}

export function mountTmpfs(sizeBytes: number): Tmpfs {
  const path = mkdtempSync(join(tmpdir(), 'image-cache-tmpfs-'));
  execFileSync('mount', [
    '-t',
    'tmpfs',
    '-o',
    `size=${sizeBytes}`,
    'tmpfs',
    path,
  ]);
  return {
    path,
    remount: (mode) => execFileSync('mount', ['-o', `remount,${mode}`, path]),
    unmount: () => {
      execFileSync('umount', [path]);
      rmSync(path, { recursive: true, force: true });
    },
  };
}

/**
 * Why tmpfs tests cannot run here, or `undefined` when they can: mounting needs root (or
 * CAP_SYS_ADMIN). CI runs as root, so CI runs them.
 */
export function tmpfsUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) {
    return 'not running as root, so no tmpfs can be mounted';
  }
  try {
    mountTmpfs(64 * 1024).unmount();
    return undefined;
  } catch (error) {
    return `mounting a tmpfs failed: ${error instanceof Error ? error.message : String(error)}`;
  }
}
