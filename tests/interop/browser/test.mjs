// End-to-end test of the hub's page in a real browser: Debian's chromium, headless, driven
// by playwright-core (which never downloads a browser).
//
//   node test.mjs http://127.0.0.1:PORT      (tests/interop/browser.sh starts the hub)
//
// It picks a fresh topic, publishes 200 events (100 from the page, 100 with curl), checks
// that every panel shows 200 consecutive ids in order with none missed, presses "cut",
// publishes 200 more the same way and checks all 400, then saves a screenshot. A topic's
// first id is the hub's clock in microseconds (16 digits): the test reads it back from
// /events?since=0 and checks every panel against first..first+n-1.
// permessage-deflate: the 101 answers to the page's WebSocket handshakes (seen through the
// Chrome DevTools Protocol) carry `Sec-WebSocket-Extensions: permessage-deflate; ...`, and a
// WebSocket of the test's own on another topic reports it in `ws.extensions` and gets big
// events (published over HTTP and sent by the page over that WebSocket) intact.
// SKIP_WEBHOOK=1 leaves the webhook panel out: for local runs against a hub without
// webhooks only.

import { spawn } from 'node:child_process';
import { copyFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const base = process.argv[2];
if (!base) {
  console.error('usage: node test.mjs http://HOST:PORT');
  process.exit(2);
}
const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const skipWebhook = process.env.SKIP_WEBHOOK === '1';
const kinds = ['websocket', 'sse', 'longpoll', ...(skipWebhook ? [] : ['webhook'])];
const WAIT_MS = 60_000;

let passed = 0;
let failed = 0;
function check(name, ok, detail) {
  if (ok) {
    passed++;
    console.log(`ok   ${name}`);
  } else {
    failed++;
    console.log(`FAIL ${name}${detail ? `: ${detail}` : ''}`);
  }
}

// Text of exactly n UTF-8 bytes: words (compressible, not trivially), quotes, a backslash
// and non-ASCII characters, which the event JSON escapes or carries as they are.
function textOf(n, seed) {
  const words = ['price', 'quote', 'trade', 'order', 'fill', 'ünïcödé', '✓', '"quoted"', 'back\\slash',
    'tab\t', 'line\n', 'tick', 'volume'];
  let x = seed >>> 0;
  let s = '';
  while (Buffer.byteLength(s) < n) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    s += `${words[x % words.length]} `;
  }
  while (Buffer.byteLength(s) > n) s = s.slice(0, -1);
  return s + 'x'.repeat(n - Buffer.byteLength(s));
}

const range = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

// Publishes n events with one curl (one kept-alive connection, `--next` between requests);
// resolves with the list of HTTP status codes.
function curlPublish(topic, n, tag) {
  const args = [];
  for (let i = 1; i <= n; i++) {
    if (i > 1) args.push('--next');
    args.push('-sS', '-o', '/dev/null', '-w', '%{http_code}\\n',
      '--data-binary', `curl ${tag} ${i}/${n}`, `${base}/topics/${topic}`);
  }
  return new Promise((resolve, reject) => {
    const p = spawn('curl', args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout.on('data', (d) => { out += d; });
    p.on('error', reject);
    p.on('close', () => resolve(out.split('\n').filter(Boolean)));
  });
}

async function idsOf(page, kind) {
  return page.$$eval(`[data-transport="${kind}"] [data-id]`, (els) => els.map((e) => Number(e.dataset.id)));
}

async function panelData(page, kind) {
  return page.$eval(`[data-transport="${kind}"]`, (el) => ({ ...el.dataset }));
}

// Waits (bounded) until every panel has at least n rows (and says so in its summary), the
// burst is over and no delay
// is still waiting for its POST's answer. A timeout is not thrown: the checks report it.
async function settle(page, n) {
  try {
    // The summaries are redrawn a moment after the rows: wait for both.
    await page.waitForFunction(({ kinds, n }) => kinds.every(
      (k) => document.querySelectorAll(`[data-transport="${k}"] [data-id]`).length >= n
        && Number(document.querySelector(`[data-transport="${k}"]`).dataset.count) >= n,
    ) && !document.querySelector('#burst').disabled
      && !document.querySelector('.ms.pending'), { kinds, n }, { timeout: WAIT_MS, polling: 100 });
    return true;
  } catch {
    return false;
  }
}

// 100 events from the page (a burst of 99 and one through the publish box) and 100 from
// curl, all at once.
async function publishRound(page, topic, tag) {
  await page.fill('#burst-n', '99');
  await page.click('#burst');
  await page.fill('#publish-data', `from the page, ${tag}`);
  await page.click('#publish');
  // In ten batches, so that they interleave with the page's burst.
  const codes = [];
  for (let b = 0; b < 10; b++) {
    codes.push(...await curlPublish(topic, 10, `${tag} ${b + 1}`));
    await new Promise((r) => setTimeout(r, 40));
  }
  check(`curl published 100 events (${tag})`, codes.length === 100 && codes.every((c) => c === '201'),
    `status codes: ${[...new Set(codes)].join(',') || 'none'}`);
}

// The topic's first id, from its history (nothing is trimmed: 400 events < 1,000 kept).
async function firstId(topic) {
  const r = await fetch(`${base}/topics/${topic}/events?since=0`);
  const j = await r.json();
  return j.events.length ? j.events[0].id : null;
}

async function checkPanels(page, first, n, afterCut) {
  for (const kind of kinds) {
    const ids = await idsOf(page, kind);
    const want = range(first, first + n - 1);
    const same = ids.length === want.length && ids.every((id, i) => id === want[i]);
    let detail = '';
    if (!same) {
      const got = new Set(ids);
      const missing = want.filter((id) => !got.has(id));
      detail = `${ids.length} rows; missing ${missing.length} (${missing.slice(0, 10).join(',')}); `
        + `first ids ${ids.slice(0, 5).join(',')}; last ${ids.slice(-5).join(',')}`;
    }
    check(`${kind}: ids first..first+${n - 1} in order`, same, detail);
    const d = await panelData(page, kind);
    check(`${kind}: summary shows ${n} events, 0 missed, 0 duplicates`,
      d.count === String(n) && d.missed === '0' && d.dups === '0',
      `count=${d.count} missed=${d.missed} dups=${d.dups}`);
    const undelayed = await page.$$eval(`[data-transport="${kind}"] [data-id]`,
      (els) => els.filter((e) => !e.dataset.delay).map((e) => e.dataset.id));
    check(`${kind}: every event has a delay`, undelayed.length === 0,
      `no delay on ids ${undelayed.slice(0, 10).join(',')}`);
    if (afterCut) {
      check(`${kind}: reconnected after the cut`, Number(d.reconnects) >= 1, `reconnects=${d.reconnects}`);
    }
  }
}

// Every WebSocket handshake answer the page gets, from the Chrome DevTools Protocol.
async function watchHandshakes(page) {
  const urls = new Map();
  const answers = [];
  const cdp = await page.context().newCDPSession(page);
  cdp.on('Network.webSocketCreated', (e) => urls.set(e.requestId, e.url));
  cdp.on('Network.webSocketHandshakeResponseReceived', (e) => {
    const headers = e.response.headers || {};
    const ext = Object.entries(headers).find(([k]) => k.toLowerCase() === 'sec-websocket-extensions');
    answers.push({ url: urls.get(e.requestId) || '', status: e.response.status, ext: ext ? ext[1] : null });
  });
  await cdp.send('Network.enable');
  return answers;
}

// The handshake answers for WebSocket URLs containing `path`, waiting (bounded) for one.
async function answersFor(answers, path) {
  for (let i = 0; i < 50 && !answers.some((a) => a.url.includes(path)); i++) {
    await new Promise((r) => setTimeout(r, 100));
  }
  return answers.filter((a) => a.url.includes(path));
}

const DEFLATE_ANSWER = 'permessage-deflate; server_no_context_takeover; client_no_context_takeover';

// A WebSocket of the test's own in the page, on a topic of its own (the panels' counts stay
// exact): its negotiated extensions, then events of several sizes published over HTTP and
// sent by the page over this WebSocket (the hub publishes them), compared as received.
async function deflateChecks(page, answers, topic) {
  const url = `${base.replace(/^http/, 'ws')}/topics/${topic}/ws`;
  const ext = await page.evaluate(async (u) => {
    const ws = new WebSocket(u);
    window.deflateTest = { ws, msgs: [] };
    ws.onmessage = (m) => window.deflateTest.msgs.push(m.data);
    await new Promise((resolve, reject) => {
      ws.onopen = resolve;
      ws.onerror = () => reject(new Error(`WebSocket ${u} failed`));
      setTimeout(() => reject(new Error(`WebSocket ${u} did not open in 10 s`)), 10_000);
    });
    return ws.extensions;
  }, url);
  check(`Chromium's WebSocket.extensions is permessage-deflate: "${ext}"`,
    typeof ext === 'string' && ext.startsWith('permessage-deflate'), `extensions: ${JSON.stringify(ext)}`);
  const own = await answersFor(answers, `/topics/${topic}/ws`);
  check('  and the 101 (DevTools) said the same', own.length === 1 && own[0].status === 101 && own[0].ext === ext,
    JSON.stringify(own));

  const sent = [];
  for (const [n, via] of [[10, 'HTTP'], [10 << 10, 'HTTP'], [10 << 10, 'WebSocket'], [200 << 10, 'HTTP'],
    [200 << 10, 'WebSocket']]) {
    const data = textOf(n, n + via.length);
    if (via === 'HTTP') {
      const r = await fetch(`${base}/topics/${topic}?event=big`, { method: 'POST', body: data });
      check(`a ${n}-byte event published over HTTP (201)`, r.status === 201, `status ${r.status}`);
    } else {
      await page.evaluate((d) => window.deflateTest.ws.send(d), data);
    }
    sent.push({ n, via, data, event: via === 'HTTP' ? 'big' : null });
    let arrived = true;
    try {
      await page.waitForFunction((k) => window.deflateTest.msgs.length >= k, sent.length,
        { timeout: WAIT_MS, polling: 50 });
    } catch {
      arrived = false;
    }
    const raw = await page.evaluate((i) => window.deflateTest.msgs[i], sent.length - 1);
    let ev = null;
    try {
      ev = JSON.parse(raw);
    } catch {
      // reported below
    }
    check(`the ${n}-byte event (${via === 'HTTP' ? 'published over HTTP' : 'sent by the page over the '
      + 'deflate WebSocket'}) arrives intact`,
    arrived && ev !== null && ev.data === data && ev.event === sent.at(-1).event,
    arrived ? `got ${String(raw).slice(0, 120)}... (${String(raw).length} chars)` : 'nothing arrived in time');
  }
  await page.evaluate(() => window.deflateTest.ws.close(1000, 'done'));
}

async function main() {
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
  });
  const errors = [];
  try {
    const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    page.setDefaultTimeout(WAIT_MS);
    const handshakes = await watchHandshakes(page);
    page.on('pageerror', (e) => errors.push(`page error: ${e.message}`));
    page.on('console', (m) => {
      // Without webhooks on the hub, the page's look-up of the topic's webhooks is a 404.
      if (skipWebhook && / 404 /.test(m.text())) return;
      if (m.type() === 'error') errors.push(`console: ${m.text()}`);
    });

    const res = await page.goto(`${base}/`);
    check('GET / serves the page', res && res.status() === 200
      && (res.headers()['content-type'] || '').startsWith('text/html'), `status ${res && res.status()}`);
    for (const sel of ['#topic', '#publish-data', '#publish', '#burst', '#cut',
      ...kinds.map((k) => `[data-transport="${k}"]`)]) {
      check(`the page has ${sel}`, (await page.$(sel)) !== null);
    }

    const topic = `browser-${Date.now().toString(36)}`;
    await page.fill('#topic', topic);
    await page.press('#topic', 'Enter');
    let ready = true;
    try {
      await page.waitForSelector(`html[data-ready="${topic}"]`, { state: 'attached', timeout: WAIT_MS });
    } catch {
      ready = false;
    }
    const states = await page.$$eval('.state', (els) => els.map((e) => e.textContent).join(' | '));
    check(`every panel subscribed to ${topic}`, ready, `states: ${states}`);
    const panelWs = await answersFor(handshakes, `/topics/${topic}/ws`);
    check(`the 101 to Chromium's WebSocket handshake carries Sec-WebSocket-Extensions: ${DEFLATE_ANSWER}`,
      panelWs.length >= 1 && panelWs.every((a) => a.status === 101 && a.ext === DEFLATE_ANSWER),
      `answers: ${JSON.stringify(panelWs)}`);

    await publishRound(page, topic, 'before the cut');
    const first = await firstId(topic);
    const nowUs = Date.now() * 1000;
    check(`the first id (${first}) is the Unix time in microseconds, exact in JavaScript`,
      Number.isSafeInteger(first) && first > nowUs - 120e6 && first <= nowUs + 1e6,
      `now ${nowUs}`);
    check('200 events arrived in time', await settle(page, 200));
    await checkPanels(page, first, 200, false);

    await page.click('#cut');
    await publishRound(page, topic, 'after the cut');
    check('400 events arrived in time after the cut', await settle(page, 400));
    await checkPanels(page, first, 400, true);

    await deflateChecks(page, handshakes, `${topic}-deflate`);

    const verdict = await page.textContent('#verdict');
    check('the verdict names the fastest mechanism', /Fastest on this run: \S/.test(verdict), verdict);
    console.log(`verdict: ${verdict}`);
    for (const kind of kinds) {
      const d = await panelData(page, kind);
      console.log(`${kind}: ${d.count} events, p50 ${d.p50} ms, p99 ${d.p99} ms, missed ${d.missed}, `
        + `late ${d.late}, reconnects ${d.reconnects}, connections ${d.conns}, requests ${d.reqs}`);
    }
    check('no errors in the page', errors.length === 0, errors.slice(0, 5).join(' / '));

    mkdirSync(join(repo, 'target', 'browser'), { recursive: true });
    const shot = join(repo, 'target', 'browser', 'page.png');
    await page.screenshot({ path: shot });
    if (process.env.UPDATE_DOCS_SCREENSHOT === '1') {
      // The README's picture: refreshed on request only, so test runs leave the tree clean.
      mkdirSync(join(repo, 'docs'), { recursive: true });
      copyFileSync(shot, join(repo, 'docs', 'page.png'));
      console.log(`screenshot: ${shot} (copied to docs/page.png)`);
    } else {
      console.log(`screenshot: ${shot}`);
    }
  } finally {
    await browser.close();
  }
}

try {
  await main();
} catch (e) {
  check('the browser test ran to the end', false, e && e.stack ? e.stack : String(e));
}
if (skipWebhook) console.log('note: SKIP_WEBHOOK=1, the webhook panel was not checked');
console.log(`browser: ${passed} passed, ${failed} failed`);
process.exitCode = failed ? 1 : 0;
