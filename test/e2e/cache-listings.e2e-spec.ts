import { performance } from 'node:perf_hooks';
import { MemoryTier } from '../../src/image/cache/memory-tier';
import { FakePicsum } from '../fake-picsum/fake-picsum.server';
import { cachedImageOf } from '../support/cached-image-of';
import { startTestApp, type TestApp } from '../support/test-app';

const TOKEN = 'test-admin-token-0123456789abcdef0123456789';
const VARIANTS = 50_000;

interface EntriesPage {
  entries: { key: string; tiers: string[] }[];
  nextCursor: string | null;
}

/**
 * What lists the cache (`GET /status`, `GET /admin/entries`) with 50,000 variants cached, as
 * anyone can make by varying the query: constant work for the status page, a page at a time
 * for the admin API, so neither stalls the requests served meanwhile.
 */
describe('the cache listings with 50,000 cached variants (AppModule)', () => {
  const upstream = new FakePicsum();
  let service: TestApp;
  let baseUrl: string;

  beforeAll(async () => {
    await upstream.start();
    service = await startTestApp({
      PICSUM_BASE_URL: upstream.baseUrl,
      ADMIN_TOKEN: TOKEN,
    });
    baseUrl = await service.app.getUrl();
    const memory = service.app.get(MemoryTier);
    const fetchedAt = service.clock.now();
    for (let variant = 1; variant <= VARIANTS; variant += 1) {
      memory.save(cachedImageOf(`${variant}x1`, 'tiny', fetchedAt));
    }
  }, 60_000);

  afterAll(async () => {
    await service.close();
    await upstream.stop();
  });

  async function timedGet(
    path: string,
    headers: Record<string, string> = {},
  ): Promise<{ ms: number; status: number; text: string }> {
    const started = performance.now();
    const response = await fetch(`${baseUrl}${path}`, { headers });
    const text = await response.text();
    return { ms: performance.now() - started, status: response.status, text };
  }

  it('GET /status counts every variant but lists the 20 most recently used: under 64 KB and 5 ms', async () => {
    const replies = [];
    for (let poll = 0; poll < 21; poll += 1) {
      replies.push(await timedGet('/status'));
    }
    const times = replies.map((reply) => reply.ms).sort((a, b) => a - b);
    const report = JSON.parse(replies[0].text) as {
      variantCount: number;
      variants: { key: string }[];
    };

    process.stdout.write(
      `/status with ${VARIANTS} variants: ${replies[0].text.length} bytes, median ${times[10].toFixed(2)} ms, slowest ${times[20].toFixed(2)} ms\n`,
    );
    expect(replies.every((reply) => reply.status === 200)).toBe(true);
    expect(report.variantCount).toBe(VARIANTS);
    expect(report.variants.map((variant) => variant.key)).toEqual(
      Array.from({ length: 20 }, (_, index) => `${VARIANTS - index}x1`),
    );
    expect(Buffer.byteLength(replies[0].text)).toBeLessThan(64 * 1024);
    expect(times[10]).toBeLessThan(5);
  });

  it('GET /admin/entries walks every variant once, in key order, a page of at most `limit` at a time', async () => {
    const auth = { authorization: `Bearer ${TOKEN}` };
    const keys: string[] = [];
    const pageSizes: number[] = [];
    let cursor: string | null = '';
    while (cursor !== null) {
      const reply = await timedGet(
        `/admin/entries?limit=1000${cursor ? `&cursor=${cursor}` : ''}`,
        auth,
      );
      expect(reply.status).toBe(200);
      const page = JSON.parse(reply.text) as EntriesPage;
      pageSizes.push(page.entries.length);
      keys.push(...page.entries.map((entry) => entry.key));
      cursor = page.nextCursor;
    }
    const first = JSON.parse(
      (await timedGet('/admin/entries', auth)).text,
    ) as EntriesPage;

    expect(keys).toHaveLength(VARIANTS);
    expect(new Set(keys).size).toBe(VARIANTS);
    expect([...keys].sort()).toEqual(keys);
    expect(Math.max(...pageSizes)).toBe(1000);
    expect(first.entries).toHaveLength(100);
    expect(first.entries[0]).toMatchObject({
      key: '10000x1',
      tiers: ['memory'],
    });
  });

  it('refuses a limit past 1000 and a cursor it did not make, naming them', async () => {
    const auth = { authorization: `Bearer ${TOKEN}` };

    const tooMany = await timedGet('/admin/entries?limit=1001', auth);
    const zero = await timedGet('/admin/entries?limit=0', auth);
    const forged = await timedGet('/admin/entries?cursor=bm90LWpzb24', auth);

    expect([tooMany.status, zero.status, forged.status]).toEqual([
      400, 400, 400,
    ]);
    expect(tooMany.text).toContain(
      'query parameter limit=\\"1001\\" is not allowed: expected an integer from 1 to 1000',
    );
    expect(forged.text).toContain('is not one GET /admin/entries returned');
  });
});
