import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from './servers';

/**
 * The last commit before the connections to the upstream were kept alive (0.5.0): what
 * `npm run bench` measures the cold-miss overhead against, in the same run. `BENCH_REFERENCE`
 * names another commit (64c2520 is the last whose client was undici); `BENCH_REFERENCE=none`
 * skips it.
 */
export const DEFAULT_REFERENCE = '38260b0';

/**
 * The directory of the service as built from the commit `ref` (its `dist/main.js` with its
 * own `node_modules`), built once from `git archive` with `npm ci` and `nest build` and kept
 * under ~/.cache/image-cache/bench-reference/<commit>; `undefined`, with the reason logged, when
 * the commit is not in this clone's history.
 */
export function referenceBuild(
  ref: string,
  log: (line: string) => void,
): string | undefined {
  let commit: string;
  try {
    commit = execFileSync('git', ['rev-parse', '--verify', `${ref}^{commit}`], {
      cwd: ROOT,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
  } catch {
    log(
      `reference ${ref} is not in this clone's history: no before/after figure`,
    );
    return undefined;
  }
  const cache = join(
    process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'),
    'image-cache',
    'bench-reference',
  );
  const built = join(cache, commit);
  if (existsSync(join(built, 'dist', 'main.js'))) {
    return built;
  }
  log(`building the reference ${commit.slice(0, 12)} into ${built} (once)`);
  const work = `${built}.partial`;
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  const run = (command: string, args: string[]) =>
    execFileSync(command, args, {
      cwd: work,
      stdio: ['ignore', 'ignore', 'inherit'],
    });
  execFileSync(
    'bash',
    ['-c', `git -C "${ROOT}" archive ${commit} | tar -x -C "${work}"`],
    {
      stdio: 'inherit',
    },
  );
  run('npm', ['ci', '--no-audit', '--no-fund', '--ignore-scripts']);
  run('npx', ['nest', 'build']);
  renameSync(work, built);
  return built;
}
