import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parseAllDocuments } from 'yaml';

const execFileAsync = promisify(execFile);

export const CHART_DIR = join(__dirname, '..', '..', 'helm', 'image-cache');
/** The helm binary: $HELM, or `helm` on PATH (scripts/install-helm.sh installs it). */
const HELM = process.env.HELM ?? 'helm';

/** A Kubernetes object as `helm template` renders it. */
export interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    annotations?: Record<string, string>;
    labels?: Record<string, string>;
  };
  [field: string]: unknown;
}

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command and resolves with its exit code and output, failing or not. */
export async function run(
  command: string,
  args: string[],
  input?: string,
): Promise<CommandResult> {
  const child = execFileAsync(command, args, {
    timeout: 60_000,
    maxBuffer: 16 * 1024 * 1024,
  });
  if (input !== undefined) {
    child.child.stdin?.end(input);
  }
  try {
    const { stdout, stderr } = await child;
    return { code: 0, stdout, stderr };
  } catch (error) {
    const { code, stdout, stderr } = error as {
      code?: number | string;
      stdout?: string;
      stderr?: string;
    };
    if (typeof code !== 'number') {
      throw error; // not an exit code: the command did not run at all
    }
    return { code, stdout: stdout ?? '', stderr: stderr ?? '' };
  }
}

export function helm(...args: string[]): Promise<CommandResult> {
  return run(HELM, args);
}

/** The chart's ci/*-values.yaml scenarios, as paths. */
export function ciValuesFiles(): string[] {
  return readdirSync(join(CHART_DIR, 'ci'))
    .filter((file) => file.endsWith('-values.yaml'))
    .map((file) => join(CHART_DIR, 'ci', file));
}

/**
 * `helm template` with the given values (written to a values file, as a user's would be).
 * Resolves with the rendered YAML, or rejects with helm's error.
 */
export async function template(
  values: object = {},
  ...extraArgs: string[]
): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'image-cache-chart-'));
  try {
    const valuesFile = join(dir, 'values.yaml');
    writeFileSync(valuesFile, JSON.stringify(values));
    const result = await helm(
      'template',
      'release',
      CHART_DIR,
      '--namespace',
      'images',
      '--values',
      valuesFile,
      ...extraArgs,
    );
    if (result.code !== 0) {
      throw new Error(result.stderr);
    }
    return result.stdout;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Renders the chart and parses every object it yields. */
export async function render(values: object = {}): Promise<Manifest[]> {
  return parseManifests(await template(values));
}

export function parseManifests(yaml: string): Manifest[] {
  return parseAllDocuments(yaml)
    .map((document) => document.toJS() as Manifest | null)
    .filter((object): object is Manifest => object !== null);
}

export function findObject(objects: Manifest[], kind: string): Manifest {
  const found = objects.find((object) => object.kind === kind);
  if (!found) {
    throw new Error(
      `no ${kind} rendered; got ${objects.map((o) => o.kind).join(', ')}`,
    );
  }
  return found;
}
