import type { Browser, Page } from 'playwright-core';
import { FakePicsum } from '../fake-picsum/fake-picsum.server';
import { describeWithChromium, launchChromium } from '../support/chromium';
import { startTestApp, type TestApp } from '../support/test-app';

const TTL_SECONDS = 600;

/**
 * What a real browser does with what the service serves, when the upstream sends an SVG with a
 * script whose bytes 4-11 spell `ftypavif` (the stored XSS an earlier signature check let
 * through): the script runs when the upstream's own page is opened, never on our origin.
 */
describeWithChromium()('an upstream script in real Chromium', () => {
  const upstream = new FakePicsum();
  let browser: Browser;
  let page: Page;
  let service: TestApp;
  let serviceUrl: string;

  /** What the payload's script left in the page, if it ran. */
  function scriptResult(): Promise<unknown> {
    return page.evaluate<unknown>('window.pwned');
  }

  /** Opens `url` as a document and returns what the payload's script left, if it ran. */
  async function scriptResultAt(url: string): Promise<unknown> {
    await page.goto(url);
    return scriptResult();
  }

  beforeAll(async () => {
    await upstream.start();
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
    await upstream.stop();
  });
  beforeEach(async () => {
    upstream.reset();
    service = await startTestApp({
      PICSUM_BASE_URL: upstream.baseUrl,
      CACHE_TTL_SECONDS: String(TTL_SECONDS),
      UPSTREAM_RETRY_AFTER_SECONDS: '0',
    });
    serviceUrl = await service.app.getUrl();
    page = await browser.newPage();
  });
  afterEach(async () => {
    await page.close();
    await service.close();
  });

  it('runs the payload when the upstream serves it itself, so the check below can fail', async () => {
    upstream.mode = 'svg';

    const result = await scriptResultAt(
      `${upstream.imageBaseUrl}/id/1/100/100.jpg`,
    );

    expect(result).toBe(upstream.imageBaseUrl);
  });

  it('never runs it on the service origin: nothing cached, the SVG is refused', async () => {
    upstream.mode = 'svg';

    const result = await scriptResultAt(`${serviceUrl}/image`);

    expect(result).toBeUndefined();
    expect(await page.textContent('body')).toContain('image/svg+xml');
  });

  it('never runs it on the service origin: the last good image is served, as a sandboxed JPEG', async () => {
    await fetch(`${serviceUrl}/image`);
    service.clock.advanceSeconds(TTL_SECONDS);
    upstream.mode = 'svg';

    const response = await page.goto(`${serviceUrl}/image`);
    const result = await scriptResult();

    expect(result).toBeUndefined();
    expect(response?.headers()['content-type']).toBe('image/jpeg');
    expect(response?.headers()['x-cache']).toBe('STALE');
  });
});
