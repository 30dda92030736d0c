import { existsSync } from 'node:fs';
import { type Browser, chromium } from 'playwright-core';

/** Debian's Chromium; CI installs it, and the browser specs are skipped with a printed reason without it. */
export const CHROMIUM = '/usr/bin/chromium';

/** `describe` when Chromium is installed (or under CI, where its absence must fail), else `describe.skip` with the reason printed. */
export function describeWithChromium(): jest.Describe {
  if (existsSync(CHROMIUM) || process.env.CI) {
    return describe;
  }
  process.stderr.write(
    `Skipping the browser specs: ${CHROMIUM} is missing (apt-get install chromium)\n`,
  );
  return describe.skip;
}

/** Starts headless Chromium on a new temporary profile, with nothing of its own going to the network. */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}
