'use strict';
// The status page's only script: polls GET /status and GET /image of this origin, nothing else.
(() => {
  const POLL_MS = 2000;
  const byId = (id) => document.getElementById(id);
  let report = null;
  let offsetMs = 0; // the service's clock minus the browser's
  let shownEtag = null;
  let imageLoadedAt = 0;
  let loadingImage = false;

  function size(bytes) {
    if (bytes >= 1048576) return `${(bytes / 1048576).toFixed(1)} MiB`;
    if (bytes >= 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
    return `${bytes} B`;
  }

  const count = (n) => n.toLocaleString('en-US');

  function clockText(seconds) {
    const whole = Math.max(0, Math.ceil(seconds));
    const h = Math.floor(whole / 3600);
    const m = Math.floor((whole % 3600) / 60);
    const s = String(whole % 60).padStart(2, '0');
    return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${s}` : `${m}:${s}`;
  }

  function setBadge(element, text, kind) {
    element.textContent = text;
    element.className = `badge ${kind}`;
  }

  function meter(name, tier) {
    const share = tier.maxBytes > 0 ? tier.bytes / tier.maxBytes : 0;
    const bar = byId(`${name}-meter`);
    bar.value = share;
    bar.high = 0.9;
    byId(`${name}-text`).textContent = tier.maxBytes > 0
      ? `${size(tier.bytes)} of ${size(tier.maxBytes)} (${(share * 100).toFixed(1)} %), ${tier.entries} image${tier.entries === 1 ? '' : 's'}`
      : 'off';
  }

  async function loadImage() {
    if (loadingImage) return;
    loadingImage = true;
    imageLoadedAt = Date.now();
    try {
      const response = await fetch('/image', { cache: 'no-store' });
      if (!response.ok) return;
      const url = URL.createObjectURL(await response.blob());
      const img = byId('image');
      const previous = img.src;
      img.src = url;
      if (previous.startsWith('blob:')) URL.revokeObjectURL(previous);
      shownEtag = response.headers.get('etag');
    } finally {
      loadingImage = false;
    }
  }

  function tick() {
    if (!report || !report.image) return;
    const now = Date.now() + offsetMs;
    const left = (Date.parse(report.image.expiresAt) - now) / 1000;
    byId('countdown').textContent = left > 0 ? clockText(left) : 'due now';
    byId('image-age').textContent = clockText((now - Date.parse(report.image.fetchedAt)) / 1000);
    if (left <= 0 && Date.now() - imageLoadedAt > 5000) void loadImage();
  }

  function render() {
    const { image, requests, upstream, sharedTier } = report;
    byId('connection').textContent = `Updated ${new Date().toLocaleTimeString()}; up since ${new Date(report.startedAt).toLocaleString()}; TTL ${report.ttlSeconds} s`;
    byId('image-id').textContent = image ? (image.id ?? 'not sent') : 'none yet';
    byId('image-source').textContent = image ? image.source : '–';
    byId('hit-ratio').textContent = requests.hitRatio === null ? '–' : `${(requests.hitRatio * 100).toFixed(1)} %`;
    for (const result of ['hit', 'miss', 'stale', 'error']) {
      byId(`count-${result}`).textContent = String(requests[result]);
    }
    meter('memory', report.memory);
    meter('disk', report.disk);
    if (upstream.state === 'ok') {
      setBadge(byId('upstream-state'), 'OK', 'ok');
    } else {
      const since = new Date(upstream.failingSince).toLocaleTimeString();
      const stale = upstream.servingStale ? '; serving the last image' : '';
      setBadge(byId('upstream-state'), `Failing since ${since}${stale}`, 'bad');
    }
    byId('upstream-error').textContent = upstream.lastError ?? 'none';
    const shared = { off: ['Off', 'warn'], connected: ['Connected', 'ok'], unavailable: [`Unavailable: ${sharedTier.problem}`, 'bad'] };
    setBadge(byId('shared-state'), ...shared[sharedTier.state]);
    const rows = report.variants.map((variant) => {
      const row = document.createElement('tr');
      for (const text of [variant.key, size(variant.bytes), new Date(variant.expiresAt).toLocaleTimeString(), variant.stale ? 'stale' : 'fresh']) {
        const cell = document.createElement('td');
        cell.textContent = text;
        row.append(cell);
      }
      return row;
    });
    byId('variants').replaceChildren(...rows);
    const shown = report.variants.length;
    byId('variants-count').textContent =
      shown === report.variantCount
        ? `${count(shown)} variant${shown === 1 ? '' : 's'}`
        : `${count(shown)} of ${count(report.variantCount)}, the most recently used`;
    tick();
  }

  async function poll() {
    try {
      const response = await fetch('/status', { cache: 'no-store' });
      if (!response.ok) throw new Error(`GET /status answered ${response.status}`);
      report = await response.json();
      offsetMs = Date.parse(report.now) - Date.now();
      render();
      if (!report.image || report.image.etag !== shownEtag) {
        if (!report.image || !report.image.stale || shownEtag === null) void loadImage();
      }
    } catch (error) {
      byId('connection').textContent = `The service does not answer: ${error.message}`;
    }
  }

  void poll();
  setInterval(() => void poll(), POLL_MS);
  setInterval(tick, 250);
})();
