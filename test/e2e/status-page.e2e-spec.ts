/// <reference lib="dom" />
/// <reference lib="dom.iterable" />
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { FakePicsum } from '../fake-picsum/fake-picsum.server';
import { describeWithChromium, launchChromium } from '../support/chromium';
import { ServiceProcess } from '../support/service-process';
import { makeCacheDir } from '../support/test-app';

/** Where the screenshots go; `/test-output` is ignored by git. */
const OUTPUT_DIR = join(__dirname, '..', '..', 'test-output');
const TOKEN = 'status-page-admin-token-0123456789abcdef';

/** Seconds in a countdown such as `9:58` or `1:02:03`. */
function secondsOf(text: string): number {
  return text
    .split(':')
    .map(Number)
    .reduce((total, part) => total * 60 + part, 0);
}

/**
 * The status page in real Chromium against the built service (real time, so the countdown
 * runs) and the fake Picsum: it renders, updates, shows an upstream failure, stays within its
 * Content-Security-Policy and fits a phone.
 */
describeWithChromium()(
  'the status page in real Chromium (dist/main.js)',
  () => {
    const upstream = new FakePicsum();
    let browser: Browser;
    let service: ServiceProcess;
    let url: string;
    let cacheDir: string;
    let page: Page;
    let problems: string[];

    /** Opens the page at `width` px, recording console errors, page errors and CSP violations. */
    async function open(width: number): Promise<Page> {
      const context = await browser.newContext({
        viewport: { width, height: 800 },
      });
      const opened = await context.newPage();
      // The page's console is how the spec hears of a violation.
      await opened.addInitScript(() => {
        document.addEventListener('securitypolicyviolation', (event) =>
          // eslint-disable-next-line no-console
          console.error(
            `CSP violation: ${event.violatedDirective} blocked ${event.blockedURI}`,
          ),
        );
      });
      opened.on('console', (message) => {
        if (message.type() === 'error') {
          problems.push(message.text());
        }
      });
      opened.on('pageerror', (error) => problems.push(error.message));
      return opened;
    }

    beforeAll(async () => {
      await upstream.start();
      await mkdir(OUTPUT_DIR, { recursive: true });
      browser = await launchChromium();
      cacheDir = await makeCacheDir();
      ({ service, url } = await ServiceProcess.start({
        PICSUM_BASE_URL: upstream.baseUrl,
        CACHE_DIR: cacheDir,
        CACHE_TTL_SECONDS: '600',
        UPSTREAM_RETRY_AFTER_SECONDS: '0',
        ADMIN_TOKEN: TOKEN,
      }));
    });
    afterAll(async () => {
      await browser?.close();
      service?.kill('SIGKILL');
      await service?.exited;
      await rm(cacheDir, { recursive: true, force: true });
      await upstream.stop();
    });
    beforeEach(() => {
      problems = [];
    });
    afterEach(async () => {
      await page?.context().close();
    });

    it('renders the image, counts down, follows requests and an upstream failure, with no console error or CSP violation', async () => {
      page = await open(1280);

      const response = await page.goto(`${url}/`);
      await page.waitForFunction(() => {
        const image = document.getElementById('image') as HTMLImageElement;
        return image.complete && image.naturalWidth > 0;
      });
      const timing = await page.evaluate(() => {
        const [navigation] = performance.getEntriesByType(
          'navigation',
        ) as PerformanceNavigationTiming[];
        return {
          firstByte: navigation.responseStart - navigation.requestStart,
          loaded: navigation.loadEventEnd - navigation.startTime,
        };
      });
      const naturalWidth = await page.$eval(
        '#image',
        (image) => (image as HTMLImageElement).naturalWidth,
      );
      await page.waitForFunction(() =>
        /^\d+:\d\d$/.test(
          document.getElementById('countdown')!.textContent ?? '',
        ),
      );
      const countdownBefore = secondsOf(
        (await page.textContent('#countdown')) ?? '',
      );
      await page.waitForTimeout(2200);
      const countdownAfter = secondsOf(
        (await page.textContent('#countdown')) ?? '',
      );
      const imageId = await page.textContent('#image-id');

      const ratioBefore = await page.textContent('#hit-ratio');
      for (let i = 0; i < 10; i += 1) {
        await (await fetch(`${url}/image`)).arrayBuffer();
      }
      await page.waitForFunction(
        (before) =>
          document.getElementById('hit-ratio')!.textContent !== before,
        ratioBefore,
        { timeout: 10_000 },
      );
      const ratioAfter = await page.textContent('#hit-ratio');

      expect(await page.textContent('#upstream-state')).toBe('OK');
      upstream.mode = 'server-error';
      const failed = await fetch(`${url}/image?width=300&height=200`);
      await page.waitForFunction(
        () =>
          /^Failing since/.test(
            document.getElementById('upstream-state')!.textContent ?? '',
          ),
        undefined,
        { timeout: 10_000 },
      );
      const upstreamState = await page.textContent('#upstream-state');
      const screenshot = join(OUTPUT_DIR, 'status-page.png');
      await page.screenshot({ path: screenshot, fullPage: true });

      process.stdout.write(
        `status page: first byte ${timing.firstByte.toFixed(1)} ms, loaded ${timing.loaded.toFixed(1)} ms; image ${naturalWidth} px wide, Picsum id ${imageId}; countdown ${countdownBefore} s -> ${countdownAfter} s; hit ratio ${ratioBefore} -> ${ratioAfter}; upstream "${upstreamState}"; screenshot ${screenshot}\n`,
      );
      expect(response?.status()).toBe(200);
      expect(response?.headers()['content-security-policy']).toMatch(
        /^default-src 'none'; script-src 'sha256-[A-Za-z0-9+/=]+'; style-src 'sha256-[A-Za-z0-9+/=]+'; img-src 'self' blob:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'$/,
      );
      expect(naturalWidth).toBeGreaterThan(0);
      expect(imageId).toMatch(/^\d+$/);
      expect(countdownBefore).toBeGreaterThan(590);
      expect(countdownAfter).toBeLessThan(countdownBefore);
      expect(ratioAfter).not.toBe(ratioBefore);
      expect(failed.status).toBe(502);
      expect(upstreamState).toMatch(/^Failing since /);
      expect(problems).toEqual([]);
    }, 60_000);

    it('fits a 360 px phone screen, labels every bar and has readable contrast', async () => {
      upstream.mode = 'ok';
      page = await open(360);
      await page.goto(`${url}/`);
      await page.waitForFunction(
        () =>
          (document.getElementById('image') as HTMLImageElement).naturalWidth >
          0,
      );

      const layout = await page.evaluate(() => ({
        scrollWidth: document.documentElement.scrollWidth,
        unlabelledMeters: [...document.querySelectorAll('meter')].filter(
          (meter) => meter.labels.length === 0,
        ).length,
        imageAlt: document.getElementById('image')!.getAttribute('alt'),
      }));
      // WCAG's contrast ratio of each text against the background it sits on.
      const lowContrast = await page.evaluate(() => {
        const luminance = (color: string) => {
          const [r, g, b] = (color.match(/[\d.]+/g) ?? [])
            .slice(0, 3)
            .map((part) => {
              const value = Number(part) / 255;
              return value <= 0.03928
                ? value / 12.92
                : ((value + 0.055) / 1.055) ** 2.4;
            });
          return 0.2126 * r + 0.7152 * g + 0.0722 * b;
        };
        const backgroundOf = (element: Element | null): string => {
          for (let at = element; at; at = at.parentElement) {
            const background = getComputedStyle(at).backgroundColor;
            if (
              !/rgba\(.*, 0\)$/.test(background) &&
              background !== 'transparent'
            ) {
              return background;
            }
          }
          return 'rgb(255, 255, 255)';
        };
        return [
          ...document.querySelectorAll(
            'h1, h2, p, dt, dd, span, label, td, th, a',
          ),
        ]
          .filter((element) => (element.textContent ?? '').trim() !== '')
          .map((element) => {
            const [light, dark] = [
              luminance(getComputedStyle(element).color),
              luminance(backgroundOf(element)),
            ].sort((a, b) => b - a);
            return {
              text: element.textContent,
              ratio: (light + 0.05) / (dark + 0.05),
            };
          })
          .filter(({ ratio }) => ratio < 4.5);
      });
      await page.screenshot({
        path: join(OUTPUT_DIR, 'status-page-360px.png'),
        fullPage: true,
      });

      expect(layout).toEqual({
        scrollWidth: 360,
        unlabelledMeters: 0,
        imageAlt: 'The image GET /image serves now',
      });
      expect(lowContrast).toEqual([]);
      expect(problems).toEqual([]);
    });

    it('GET /status holds nothing secret', async () => {
      const body = await (await fetch(`${url}/status`)).text();

      expect(JSON.parse(body)).toMatchObject({
        ttlSeconds: 600,
        sharedTier: { state: 'off', problem: null },
      });
      expect(body).not.toContain(TOKEN);
      expect(body).not.toContain(cacheDir);
    });
  },
);
