// End-to-end tests of the web app: the real `onair` binary on a free port, Debian's
// chromium driven by playwright-core, several browser contexts as different users.
// Run by scripts/test (`node --test` in web/tests). Screenshots go to
// test-artifacts/web/ at the repo root (not committed).
//
// ONAIR_BIN overrides the binary (see harness.mjs).

import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bin, freePort, launchChromium, repo, startOnair, stopOnair } from './harness.mjs';
import { pushClock, measureInPage, pct } from './clock.mjs';

const artifacts = join(repo, 'test-artifacts/web');
const T = 20000;

let server, base, adminSig, browser, dir;
const contexts = [];

let cfgPath;

/** Starts `onair serve` with a fresh data dir on free ports; resolves with its base URL. */
async function startServer() {
  dir = mkdtempSync(join(tmpdir(), 'onair-web-'));
  cfgPath = join(dir, 'onair.toml');
  const [http, rtmp] = [await freePort(), await freePort()];
  writeFileSync(cfgPath, `data_dir = ${JSON.stringify(join(dir, 'data'))}\n[demo]\nenabled = true\n[http]\nlisten = "127.0.0.1:${http}"\n` +
    `[chat]\nflood_max_repeats = 0\n[live]\npause_grace_secs = 3\n` +
    `[rtmp]\nlisten = "127.0.0.1:${rtmp}"\n[webrtc]\nlisten = "127.0.0.1:0"\n[media]\nhls_part_ms = 500\n`);
  return spawnServer();
}

/** Runs the binary on the config (again, for a restart); resolves with its base URL. */
async function spawnServer() {
  let started;
  ({ server, base: started } = await startOnair(cfgPath, (l) => {
    const sig = /^\s*admin UserSig\s+(\S+)/.exec(l);
    if (sig) adminSig = sig[1];
  }));
  return started;
}

/** SIGTERM and wait for the exit. */
function stopServer() {
  return stopOnair(server);
}

/** Calls the HTTP API as the app admin. */
async function adminApi(method, path, body) {
  const res = await fetch(base + path, {
    method,
    headers: { 'X-OnAir-Identifier': 'administrator', 'X-OnAir-UserSig': adminSig, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : {} };
}

/** Pages opened by the running test: their console must stay clean (see afterEach). */
let testPages = [];

/**
 * Whether a URL is live media the player opens and aborts itself (a stop, a restart),
 * or the `DELETE` of its own WHEP session (a keepalive request a closing page cuts off).
 */
const isMedia = (url) => /\/(live|vod)\/|^\/whep\/[^/]+\/[^/]+$/.test(new URL(url).pathname);

/**
 * A new browser context (a new user: own session storage) with one page. Everything a
 * user would see as noise in the console is collected in `page.errors`: uncaught
 * errors, `console.error` (including Chromium's "Failed to load resource" for every
 * 4xx/5xx), responses ≥ 400 and failed requests — except the player aborting its own
 * media request. `page.allow(re)` accepts what a test provokes on purpose (a server
 * restart). Every test ends by asserting that its pages' lists are empty.
 */
async function newPage(width = 1280, height = 800, options = {}) {
  const ctx = await browser.newContext({ viewport: { width, height }, ...options });
  contexts.push(ctx);
  const page = await ctx.newPage();
  page.errors = [];
  page.allowed = [];
  page.allow = (re) => page.allowed.push(re);
  page.requests = [];
  const add = (what) => page.allowed.some((re) => re.test(what)) || page.errors.push(what);
  page.on('pageerror', (e) => add(`uncaught: ${e.message}`));
  page.on('console', (m) => m.type() === 'error' && add(`console.error: ${m.text()} (${m.location()?.url ?? ''})`));
  page.on('request', (r) => page.requests.push(r.url()));
  page.on('response', (r) => r.status() >= 400 && add(`HTTP ${r.status()} ${r.request().method()} ${r.url()}`));
  page.on('requestfailed', (r) => {
    const why = r.failure()?.errorText ?? '';
    if (why === 'net::ERR_ABORTED' && isMedia(r.url())) return;
    add(`request failed: ${r.url()} ${why}`);
  });
  testPages.push(page);
  return page;
}

afterEach(() => {
  const found = testPages.flatMap((p) => p.errors.map((e) => `${p.url()}: ${e}`));
  testPages = [];
  assert.deepEqual(found, [], 'the pages logged errors or failed requests');
});

/** Opens the watch page and waits until it can chat. */
async function viewer(room = 'demo', size) {
  const page = await newPage(...(size ?? []));
  await page.goto(`${base}/room/${room}`);
  await page.waitForFunction(() => window.onair?.state === 'connected' && window.onair.roomId && !document.getElementById('input').disabled, null, { timeout: T });
  page.userId = await page.evaluate(() => window.onair.userId);
  return page;
}

async function say(page, text) {
  await page.fill('#input', text);
  await page.click('#sendBtn');
}

async function seesText(page, text, sel = '#chat .msg .text') {
  await page.waitForFunction(([s, t]) => [...document.querySelectorAll(s)].some((e) => e.textContent === t), [sel, text], { timeout: T });
}

async function shot(page, name) {
  await page.screenshot({ path: join(artifacts, `${name}.png`) });
}

/** Whether the business layer (gifts, likes, states) is in this build. */
async function hasBusiness() {
  return (await fetch(`${base}/api/v1/gifts`)).status !== 404;
}

before(async () => {
  assert.ok(existsSync(bin), `no server binary at ${bin}: run cargo build first`);
  mkdirSync(artifacts, { recursive: true });
  base = await startServer();
  browser = await launchChromium(['--disable-background-networking', '--disable-quic', '--disable-component-update', '--disable-sync']);
});

after(async () => {
  for (const c of contexts) await c.close().catch(() => {});
  await browser?.close();
  await stopServer();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('the room list shows the demo room with its state and online count', async () => {
  const page = await newPage();
  await page.goto(base + '/');
  const card = page.locator('.room-card[data-room="demo"]');
  await card.waitFor({ timeout: T });
  assert.equal(await card.locator('.name').textContent(), 'OnAir demo room');
  assert.match(await card.locator('.viewers').textContent(), /^\s*\d+/);
  assert.equal(await card.locator('.viewers .ico-eye').count(), 1, 'the online count has its (SVG) eye');
  assert.ok((await card.locator('.badge').textContent()).length > 0);
  await shot(page, 'index');
  assert.deepEqual(page.errors, []);
});

const SIZES = [[390, 844, 'phone'], [1280, 800, 'desktop']];

/**
 * Geometry in the page: the document's width against the viewport's, and each
 * `[selector, 'x'|'xy']` that is missing, empty, or not inside the viewport (horizontally,
 * or both ways for 'xy').
 */
function layout(page, checks) {
  return page.evaluate((checks) => {
    const vw = window.innerWidth;
    const vh = window.innerHeight;
    const bad = [];
    for (const [sel, axes] of checks) {
      const e = document.querySelector(sel);
      if (!e) {
        bad.push(`${sel}: missing`);
        continue;
      }
      const r = e.getBoundingClientRect();
      const at = `${Math.round(r.left)},${Math.round(r.top)} ${Math.round(r.width)}×${Math.round(r.height)} in ${vw}×${vh}`;
      if (r.width < 1 || r.height < 1) bad.push(`${sel}: empty (${at})`);
      else if (r.left < 0 || r.right > vw + 0.5) bad.push(`${sel}: off screen sideways (${at})`);
      else if (axes === 'xy' && (r.top < 0 || r.bottom > vh + 0.5)) bad.push(`${sel}: below or above the fold (${at})`);
    }
    return { scrollWidth: document.scrollingElement.scrollWidth, innerWidth: vw, bad };
  }, checks);
}

/** Words under `root` that the layout broke over more than one line (a column squeezed to a letter). */
function brokenWords(page, root) {
  return page.evaluate((sel) => {
    const out = [];
    const walker = document.createTreeWalker(document.querySelector(sel), NodeFilter.SHOW_TEXT);
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
      for (const m of n.data.matchAll(/[^\s-]+/g)) {
        const r = document.createRange();
        r.setStart(n, m.index);
        r.setEnd(n, m.index + m[0].length);
        const lines = new Set([...r.getClientRects()].filter((x) => x.width > 0).map((x) => Math.round(x.top)));
        if (lines.size > 1) out.push(m[0]);
      }
    }
    return out;
  }, root);
}

for (const [w, hgt, tag] of SIZES) {
  test(`every page fits a ${tag} (${w}×${hgt}): no sideways scrolling, the important controls in view`, async () => {
    const size = `${w}x${hgt}`;
    const fits = async (page, name, checks) => {
      const l = await layout(page, checks);
      await page.screenshot({ path: join(artifacts, `${name}-${size}.png`) });
      assert.ok(l.scrollWidth <= l.innerWidth, `${name} at ${size}: the page is ${l.scrollWidth}px wide in a ${l.innerWidth}px viewport`);
      assert.deepEqual(l.bad, [], `${name} at ${size}`);
    };
    // The room list.
    const idx = await newPage(w, hgt);
    await idx.goto(base + '/');
    await idx.locator('.room-card[data-room="demo"]').waitFor({ timeout: T });
    await fits(idx, 'index', [['.room-card[data-room="demo"]', 'xy'], ['header.top a[href="/admin"]', 'xy']]);
    // The watch page: title, chat input, send, gift bar and the coin balance all on the first screen.
    const v = await viewer('demo', [w, hgt]);
    await v.waitForFunction(() => /^\d/.test(document.getElementById('balance').textContent) && document.querySelector('#gifts .gift-btn'), null, { timeout: T });
    await fits(v, 'room', [['#title', 'xy'], ['#video', 'xy'], ['#input', 'xy'], ['#sendBtn', 'xy'], ['#gifts .gift-btn', 'xy'], ['#balance', 'xy'], ['#like', 'xy']]);
    const title = await v.evaluate(() => {
      const t = document.getElementById('title');
      return { text: t.textContent, width: t.getBoundingClientRect().width, full: t.scrollWidth };
    });
    assert.equal(title.text, 'OnAir demo room');
    assert.ok(title.width >= 60, `the room title keeps room to be read (${title.width}px)`);
    // The studio after the demo login: "Watch page" and "Log out" reachable, nothing wider than the screen.
    const st = await newPage(w, hgt);
    await st.goto(`${base}/studio/demo`);
    await st.click('#demoLogin');
    await st.locator('#console').waitFor({ state: 'visible', timeout: T });
    await st.locator('#push .mono').first().waitFor({ timeout: T });
    await fits(st, 'studio', [['#title', 'xy'], ['#watchLink', 'xy'], ['#logout', 'xy'], ['#push', 'x'], ['#lotteryForm', 'x']]);
    await st.locator('#composer #input').scrollIntoViewIfNeeded();
    const sl = await layout(st, [['#composer #input', 'xy'], ['#composer button', 'xy']]);
    assert.deepEqual(sl.bad, [], `studio chat at ${size}`);
    // The admin console: the rooms table reads word by word.
    const ad = await newPage(w, hgt);
    await ad.goto(`${base}/admin#identifier=administrator&usersig=${encodeURIComponent(adminSig)}`);
    await ad.locator('#roomRows tr[data-room="demo"]').waitFor({ timeout: T });
    await fits(ad, 'admin', [['#logout', 'xy'], ['#roomRows tr[data-room="demo"]', 'xy'], ['#roomRows tr[data-room="demo"] button.danger', 'xy'], ['#createRoom button', 'xy']]);
    assert.deepEqual(await brokenWords(ad, '#roomRows'), [], 'no word in the rooms table is broken over lines');
    for (const p of [idx, v, st, ad]) await p.context().close();
  });
}

test('a fresh page has an empty console: no blind polling of streams that do not exist', async () => {
  // Nothing is live yet (the demo room is upcoming): the pages must not ask for a
  // stream, its stats or its snapshot, and must log nothing, through several of their
  // refresh periods (room list 5 s, studio 3 s).
  const room = (await adminApi('GET', '/api/v1/rooms/demo')).json;
  assert.notEqual(room.state, 'live');
  const idx = await newPage();
  await idx.goto(base + '/');
  const v = await viewer();
  const st = await newPage();
  await st.goto(`${base}/studio/demo`);
  await st.click('#demoLogin');
  await st.locator('#health', { hasText: 'no publisher' }).waitFor({ timeout: T });
  const ad = await newPage();
  await ad.goto(`${base}/admin#identifier=administrator&usersig=${encodeURIComponent(adminSig)}`);
  await ad.locator('#roomRows tr[data-room="demo"]').waitFor({ timeout: T });
  await idx.waitForTimeout(11000);
  for (const p of [idx, v, st, ad]) {
    const asked = p.requests.filter((u) => /\/api\/v1\/streams\/|snapshot\.jpg|\/live\//.test(u));
    assert.deepEqual(asked, [], `${p.url()} asked for a stream that does not exist`);
    assert.deepEqual(p.errors, [], `${p.url()}`);
  }
  for (const p of [idx, v, st, ad]) await p.context().close();
});

test('assets are served with content types and ETags (304 on revalidation)', async () => {
  const r = await fetch(`${base}/sdk/onair.js`);
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type'), /javascript/);
  const etag = r.headers.get('etag');
  assert.ok(etag);
  assert.equal((await fetch(`${base}/sdk/onair.js`, { headers: { 'If-None-Match': etag } })).status, 304);
  assert.match((await fetch(`${base}/assets/style.css`)).headers.get('content-type'), /text\/css/);
  assert.match((await fetch(`${base}/room/anything`)).headers.get('content-type'), /text\/html/);
  assert.equal((await fetch(`${base}/assets/nope.js`)).status, 404);
  assert.equal((await fetch(`${base}/assets/../Cargo.toml`)).status, 404);
});

test('two viewers chat with each other; text is never parsed as HTML; danmaku shows it', async () => {
  const a = await viewer();
  const b = await viewer();
  assert.notEqual(a.userId, b.userId, 'two tabs are two guests');
  await say(a, 'hello from A');
  await seesText(b, 'hello from A');
  await b.locator('.danmaku .dm', { hasText: 'hello from A' }).first().waitFor({ timeout: T });
  await say(b, 'hi A, B here 😀');
  await seesText(a, 'hi A, B here 😀');
  const evil = '<img src=x onerror="window.__xss=1"><b>bold</b>';
  await say(a, evil);
  await seesText(b, evil);
  assert.equal(await b.evaluate(() => window.__xss), undefined);
  assert.equal(await b.locator('#chat b').count(), 0);
  await shot(b, 'room');
  assert.deepEqual([...a.errors, ...b.errors], []);
  await a.context().close();
  await b.context().close();
});

test('the studio mutes a viewer: the viewer input is disabled with the remaining time', async () => {
  const v = await viewer();
  await say(v, 'please mute me');
  const studio = await newPage(1280, 1000);
  await studio.goto(`${base}/studio/demo`);
  await studio.click('#demoLogin');
  await studio.locator('#console').waitFor({ state: 'visible', timeout: T });
  await studio.locator('#push .mono').first().waitFor({ timeout: T });
  assert.match(await studio.locator('#push .mono').first().textContent(), /^rtmp:\/\//);
  const line = studio.locator(`#chat .msg[data-from="${v.userId}"]`).first();
  await line.waitFor({ timeout: T });
  await line.locator('[data-act="mute"]').click();
  await v.waitForFunction(() => document.getElementById('input').disabled, null, { timeout: T });
  assert.match(await v.locator('#mutedNote').textContent(), /muted for (9|10):\d\d/);
  await shot(studio, 'studio');
  await shot(v, 'room-muted');
  // Unmute from the studio's list: the input comes back.
  await studio.locator('#blocked [data-act="unmute"]').first().click();
  await v.waitForFunction(() => !document.getElementById('input').disabled, null, { timeout: T });
  // Recall: the message disappears for the viewer.
  await studio.locator(`#chat .msg[data-from="${v.userId}"] [data-act="recall"]`).first().click();
  await seesText(v, '(message recalled)');
  // Kick: the viewer sees the notice.
  await studio.locator(`#chat .msg[data-from="${v.userId}"]`).first().waitFor({ timeout: T }).catch(() => {});
  await say(v, 'kick me');
  await studio.locator(`#chat .msg[data-from="${v.userId}"]:not(.recalled) [data-act="kick"]`).first().click();
  await v.locator('#overlay', { hasText: 'removed' }).waitFor({ timeout: T });
  assert.deepEqual(v.errors, []);
  await v.context().close();
});

test('the studio adds a relay destination, shows it with its key masked and removes it', async () => {
  const studio = await newPage(1280, 1000);
  await studio.goto(`${base}/studio/demo`);
  await studio.click('#demoLogin');
  await studio.locator('#console').waitFor({ state: 'visible', timeout: T });
  await studio.fill('#relayUrl', 'rtmp://127.0.0.1:9/live');
  await studio.fill('#relayKey', 'abcdefghijklmnop1234');
  await studio.click('#relayForm button');
  const row = studio.locator('#relays tr', { hasText: '****1234' });
  await row.waitFor({ timeout: T });
  assert.equal(await studio.locator('#relayKey').inputValue(), '', 'the key is not kept in the form');
  assert.doesNotMatch(await studio.locator('#relays').textContent(), /abcdefghijklmnop/);
  // The demo room is not live: the destination waits for the stream.
  assert.match(await row.textContent(), /idle/);
  await row.locator('button').click();
  await studio.locator('#relays tr').first().waitFor({ state: 'detached', timeout: T });
  assert.deepEqual(studio.errors, []);
  await studio.context().close();
});

test('the studio runs a lottery from chat and answers a co-host request', async (t) => {
  if (!(await hasBusiness())) return t.skip('lotteries are not in this build');
  const v = await viewer();
  const studio = await newPage(1280, 1000);
  await studio.goto(`${base}/studio/demo`);
  await studio.click('#demoLogin');
  await studio.locator('#console').waitFor({ state: 'visible', timeout: T });
  await studio.fill('#lotKeyword', 'lucky');
  await studio.click('#lotteryForm button');
  await v.locator('#chat .msg.sys', { hasText: 'Lottery! Send “lucky”' }).waitFor({ timeout: T });
  await say(v, 'I feel lucky');
  await studio.locator(`#chat .msg[data-from="${v.userId}"]`, { hasText: 'I feel lucky' }).waitFor({ timeout: T });
  await studio.locator('#lottery button', { hasText: 'Draw now' }).click();
  const nick = await v.evaluate(() => window.onair.credentials.nick);
  await v.locator('#chat .msg.sys', { hasText: `drawn: ${nick}` }).waitFor({ timeout: T });
  await studio.locator('#lottery [data-status="drawn"]', { hasText: nick }).waitFor({ timeout: T });
  // Co-hosting: the viewer asks, the anchor accepts, the guest's page goes on air by
  // itself (no address to copy; this browser has no camera: cohost.test.mjs has one).
  await v.click('#cohost');
  const row = studio.locator('#cohost tr', { hasText: v.userId });
  await row.waitFor({ timeout: T });
  await row.locator('[data-act="accept"]').click();
  await v.locator('#cohostStage').waitFor({ timeout: T });
  await shot(studio, 'studio-lottery');
  assert.deepEqual([...v.errors, ...studio.errors], []);
  await v.context().close();
  await studio.context().close();
});

test('the SDK reconnects by itself and resumes the messages it missed', async () => {
  const a = await viewer();
  const b = await viewer();
  await b.evaluate(() => {
    window.onair.minBackoffMs = 1500; // long enough for A to send while B is away
    window.onair._ws.close();
  });
  await b.waitForFunction(() => window.onair.state === 'reconnecting', null, { timeout: T });
  assert.equal(await b.locator('#reconnecting').isVisible(), true);
  await say(a, 'sent while B was away');
  await seesText(b, 'sent while B was away');
  await b.waitForFunction(() => window.onair.state === 'connected', null, { timeout: T });
  assert.equal(await b.locator('#reconnecting').isVisible(), false);
  await say(b, 'B is back');
  await seesText(a, 'B is back');
  await a.context().close();
  await b.context().close();
});

test('the watch page survives a server restart and resumes the chat', async () => {
  const a = await viewer();
  const b = await viewer();
  // While the server is down the browser itself logs each refused reconnect: provoked here.
  for (const p of [a, b]) p.allow(/WebSocket connection to '.*\/ws' failed: .*ERR_CONNECTION_REFUSED/);
  await say(a, 'before the restart');
  await seesText(b, 'before the restart');
  await stopServer();
  await b.waitForFunction(() => window.onair.state === 'reconnecting', null, { timeout: T });
  assert.equal(await b.locator('#reconnecting').isVisible(), true);
  await shot(b, 'room-reconnecting');
  assert.equal(await spawnServer(), base, 'same address after the restart');
  await a.waitForFunction(() => window.onair.state === 'connected' && window.onair.roomId, null, { timeout: 30000 });
  await b.waitForFunction(() => window.onair.state === 'connected' && window.onair.roomId, null, { timeout: 30000 });
  await say(a, 'after the restart');
  await seesText(b, 'after the restart');
  assert.equal(await b.locator('#chat .msg .text', { hasText: 'before the restart' }).count(), 1, 'no duplicate after the resume');
  await a.context().close();
  await b.context().close();
});

test('the SDK batches like clicks into few like ops', async (t) => {
  if (!(await hasBusiness())) return t.skip('likes are not in this build');
  const a = await viewer();
  const b = await viewer();
  const ops = await a.evaluate(async () => {
    const sent = [];
    const orig = window.onair._ws.send.bind(window.onair._ws);
    window.onair._ws.send = (f) => { if (f.includes('"like"')) sent.push(JSON.parse(f).count); orig(f); };
    for (let i = 0; i < 10; i++) document.getElementById('like').click();
    await new Promise((r) => setTimeout(r, 800));
    return sent;
  });
  assert.ok(ops.length >= 1 && ops.length <= 2, `10 clicks → ${ops.length} like ops`);
  assert.equal(ops.reduce((x, y) => x + y, 0), 10);
  await b.waitForFunction(() => Number(document.getElementById('likes').textContent) >= 10, null, { timeout: T });
  await a.context().close();
  await b.context().close();
});

test('a gift appears in the other viewer with its combo', async (t) => {
  if (!(await hasBusiness())) return t.skip('gifts are not in this build');
  let gifts = (await adminApi('GET', '/api/v1/gifts')).json.gifts ?? [];
  if (!gifts.length) {
    assert.equal((await adminApi('PUT', '/api/v1/gifts/rose', { name: 'Rose', price: 1, icon: '🌹', animation: '' })).status, 200);
    gifts = (await adminApi('GET', '/api/v1/gifts')).json.gifts;
  }
  const a = await viewer();
  const b = await viewer();
  const top = await adminApi('POST', `/api/v1/users/${a.userId}/wallet/topup`, { amount: 1000, idempotencyKey: `e2e-${a.userId}` });
  assert.equal(top.status, 200, JSON.stringify(top.json));
  await a.reload();
  await a.waitForFunction(() => window.onair?.state === 'connected' && document.querySelector('#gifts .gift-btn'), null, { timeout: T });
  await a.locator('#gifts .gift-btn').first().click();
  await a.locator('#gifts .gift-btn').first().click();
  await b.locator('#giftfx .combo').first().waitFor({ timeout: T });
  await b.waitForFunction(() => [...document.querySelectorAll('#giftfx .combo .times')].some((e) => e.textContent === '×2'), null, { timeout: T });
  await b.locator('#chat .msg.gift').first().waitFor({ timeout: T });
  await shot(b, 'room-gift');
  await a.context().close();
  await b.context().close();
});

test('gifts have shipped SVG icons (or the catalog icon URL), and a big gift fills the stage', async (t) => {
  if (!(await hasBusiness())) return t.skip('gifts are not in this build');
  // A catalog entry with its own icon URL (here one of the shipped pictures, by URL).
  assert.equal((await adminApi('PUT', '/api/v1/gifts/crownurl', { name: 'Crown', price: 2, icon: '/assets/gifts/crown.svg', animation: '' })).status, 200);
  const a = await viewer();
  const b = await viewer();
  const c = await newPage(1280, 800, { reducedMotion: 'reduce' });
  await c.goto(`${base}/room/demo`);
  await c.waitForFunction(() => window.onair?.state === 'connected' && window.onair.roomId, null, { timeout: T });
  await a.waitForFunction(() => document.querySelectorAll('#gifts .gift-btn img.gicon').length >= 2, null, { timeout: T });
  const icons = await a.evaluate(async () => {
    const imgs = [...document.querySelectorAll('#gifts .gift-btn img.gicon')];
    await Promise.all(imgs.map((i) => (i.complete ? null : new Promise((r) => i.addEventListener('load', r, { once: true })))));
    return imgs.map((i) => ({ gift: i.closest('.gift-btn').dataset.gift, src: new URL(i.src).pathname, w: i.naturalWidth }));
  });
  for (const i of icons) {
    assert.match(i.src, /^\/assets\/gifts\/[a-z]+\.svg$/, `${i.gift}: a shipped SVG`);
    assert.ok(i.w > 0, `${i.gift}: the picture loaded`);
  }
  assert.equal(icons.find((i) => i.gift === 'crownurl')?.src, '/assets/gifts/crown.svg', 'the catalog icon URL is used');
  assert.equal(icons.find((i) => i.gift === 'rocket')?.src, '/assets/gifts/rocket.svg', 'the demo rocket (emoji icon) gets its SVG');
  // A rocket (100 coins) is a big gift: the other viewers get the stage animation.
  await a.locator('#gifts .gift-btn[data-gift="rocket"]').click();
  await b.locator('#stage .bigfx[data-gift="rocket"] img.hero').waitFor({ timeout: T });
  await b.waitForTimeout(700);
  await b.locator('#stage').screenshot({ path: join(artifacts, 'room-big-gift.png') });
  const moving = await b.evaluate(() => getComputedStyle(document.querySelector('.bigfx .hero')).animationName);
  assert.equal(moving, 'launch');
  // With reduced motion it is a fade, without rays or sparks.
  await c.locator('#stage .bigfx[data-gift="rocket"]').waitFor({ timeout: T });
  const calm = await c.evaluate(() => ({
    hero: getComputedStyle(document.querySelector('.bigfx .hero')).animationName,
    rays: getComputedStyle(document.querySelector('.bigfx .rays')).display,
  }));
  assert.deepEqual(calm, { hero: 'calm', rays: 'none' });
  // A small gift is not.
  await a.locator('#gifts .gift-btn[data-gift="rose"]').click();
  await b.locator('#giftfx .combo img.gicon[src="/assets/gifts/rose.svg"]').first().waitFor({ timeout: T });
  await b.waitForFunction(() => !document.querySelector('.bigfx'), null, { timeout: T });
  await a.context().close();
  await b.context().close();
  await c.context().close();
});

test('the state banner follows the live state', async (t) => {
  const probe = await adminApi('POST', '/api/v1/rooms/demo/state', { state: 'live' });
  if (probe.status === 404 && probe.json.code === 10003) return t.skip('live states are not in this build');
  const v = await viewer();
  const banner = async (state, re) => {
    await v.waitForFunction((s) => document.getElementById('state').className.includes(s), state, { timeout: T });
    if (re) await v.locator('#banner', { hasText: re }).waitFor({ state: 'visible', timeout: T });
  };
  await banner('live');
  assert.equal((await adminApi('POST', '/api/v1/rooms/demo/state', { state: 'paused' })).status, 200);
  await banner('paused', /Paused/);
  assert.equal((await adminApi('POST', '/api/v1/rooms/demo/state', { state: 'ended' })).status, 200);
  await banner('ended', /ended/);
  await shot(v, 'room-ended');
  // An upcoming room counts down to its scheduled start.
  assert.equal((await adminApi('POST', '/api/v1/rooms', { roomId: 'soon', name: 'Soon', owner: 'anchor2' })).status, 201);
  await adminApi('PUT', '/api/v1/rooms/soon/schedule', { scheduledAt: Math.floor(Date.now() / 1000) + 3600 });
  const w = await viewer('soon');
  await w.locator('#banner', { hasText: 'Starting soon' }).waitFor({ timeout: T });
  assert.match(await w.locator('#countdown').textContent(), /^(59:\d\d|1:00:00)$/);
  await shot(w, 'room-upcoming');
  await v.context().close();
  await w.context().close();
});

test('danmaku never overlap, and the toggle clears them', async () => {
  const v = await viewer();
  const overlaps = await v.evaluate(async () => {
    for (let i = 0; i < 40; i++) window.danmaku.add(`comment number ${i} ${'~'.repeat(i % 7)}`);
    const found = [];
    for (let sample = 0; sample < 6; sample++) {
      await new Promise((r) => setTimeout(r, 400));
      const rects = [...document.querySelectorAll('.danmaku .dm')].map((e) => e.getBoundingClientRect());
      for (let i = 0; i < rects.length; i++)
        for (let j = i + 1; j < rects.length; j++) {
          const a = rects[i], b = rects[j];
          if (a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom) found.push([i, j]);
        }
    }
    return { found, shown: document.querySelectorAll('.danmaku .dm').length };
  });
  assert.ok(overlaps.shown > 3, `several comments on screen (${overlaps.shown})`);
  assert.deepEqual(overlaps.found, []);
  await shot(v, 'room-danmaku');
  await v.click('#dmOn');
  assert.equal(await v.locator('.danmaku .dm').count(), 0);
  await v.context().close();
});

test('the watch page fits a phone screen', async () => {
  const p = await viewer('demo', [390, 844]);
  const overflow = await p.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `horizontal overflow of ${overflow}px`);
  assert.ok(await p.locator('#input').isVisible());
  await shot(p, 'room-phone');
  await p.context().close();
});

test('the admin console lists, creates and destroys rooms', async () => {
  const p = await newPage(1280, 900);
  await p.goto(`${base}/admin#identifier=administrator&usersig=${encodeURIComponent(adminSig)}`);
  await p.locator('#roomRows tr[data-room="demo"]').waitFor({ timeout: T });
  await p.fill('#newId', 'made-in-admin');
  await p.fill('#newName', 'Made in the admin console');
  await p.fill('#newOwner', 'anchor3');
  await p.click('#createRoom button');
  await p.locator('#roomRows tr[data-room="made-in-admin"]').waitFor({ timeout: T });
  await shot(p, 'admin');
  p.once('dialog', (d) => d.accept());
  await p.locator('#roomRows tr[data-room="made-in-admin"] button.danger').click();
  await p.locator('#roomRows tr[data-room="made-in-admin"]').waitFor({ state: 'detached', timeout: T });
  // Sensitive words: the list is in force at once; a broadcast reaches a viewer.
  const v = await viewer();
  await p.click('[data-tab="words"]');
  await p.fill('#words', 'forbiddenword');
  await p.click('#saveWords');
  await p.locator('#wordCount', { hasText: '1 words in force' }).waitFor({ timeout: T });
  await say(v, 'this has a forbiddenword in it');
  await v.locator('.toast', { hasText: 'blocked word' }).waitFor({ timeout: T });
  assert.equal(await v.inputValue('#input'), 'this has a forbiddenword in it', 'the refused text stays in the input');
  await p.click('[data-tab="broadcast"]');
  await p.fill('#bcText', 'Maintenance at midnight');
  await p.click('#bcSend');
  await v.locator('#chat .msg.sys', { hasText: '📢 Maintenance at midnight' }).waitFor({ timeout: T });
  await v.context().close();
  await p.click('[data-tab="config"]');
  await p.locator('#cfg', { hasText: '"enabled": true' }).waitFor({ timeout: T });
  assert.equal(await p.locator('#cfg', { hasText: 'secret_key' }).count(), 1);
  assert.doesNotMatch(await p.locator('#cfg').textContent(), /[0-9a-f]{32}/, 'no secret in the config view');
  await p.click('[data-tab="stats"]');
  await p.locator('#statTotals .card').first().waitFor({ timeout: T });
  await shot(p, 'admin-stats');
  assert.deepEqual(p.errors, []);
  await p.context().close();
});

test('an unknown demo role is refused', async () => {
  // This server runs in demo mode; the switch itself is covered by the Rust tests.
  const r = await fetch(`${base}/api/v1/demo/guest`, { method: 'POST', body: '{"role":"admin"}' });
  assert.equal(r.status, 400);
});

// ---- glass-to-glass latency: a clock in the picture, read back in the page ----

test('glass-to-glass: the MediaSource player shows a clock pushed by ffmpeg within 3 s (target 1.5 s)', async (t) => {
  if (spawnSync('ffmpeg', ['-version']).status !== 0) return t.skip('no ffmpeg');
  const probe = await fetch(`${base}/live/clock.json`);
  if (probe.status === 404 && (await probe.text()).includes('no such endpoint')) return t.skip('live media is not in this build');
  assert.equal((await adminApi('POST', '/api/v1/rooms', { roomId: 'clock', name: 'Clock', owner: 'anchor-clock' })).status, 201);
  const push = (await adminApi('GET', '/api/v1/rooms/clock/push-url')).json;
  // The MediaSource player (the default where WebRTC does not work; WebRTC's own
  // latency is bench/webrtc/g2g.mjs), and (to record the difference) the browser's own HLS.
  const pages = [['mse', await viewer('clock?player=mse')]];
  if (process.env.ONAIR_LATENCY_NATIVE) pages.push(['native HLS', await viewer('clock?player=hls')]);
  const ff = pushClock(push.url);
  try {
    await pages[0][1].waitForFunction(() => window.onair.room?.state === 'live', null, { timeout: 20000 }).catch((e) => {
      throw new Error(`the room did not go live (${e.message}); ffmpeg said: ${ff.err.trim() || 'nothing'}`);
    });
    const results = await Promise.all(pages.map(async ([name, page]) => {
      await page.waitForFunction(() => document.getElementById('video').currentTime > 0.5, null, { timeout: 30000 });
      const r = await measureInPage(page, Number(process.env.ONAIR_LATENCY_SECS) || 10, 3);
      const mode = await page.evaluate(() => window.player.mode);
      await page.locator('#video').screenshot({ path: join(artifacts, `latency-${name.replace(/\W+/g, '-')}.png`) });
      return { name, mode, ...r };
    }));
    for (const r of results) {
      const line = r.lat.length ? `median ${pct(r.lat, 0.5)} ms, p10 ${pct(r.lat, 0.1)}, p90 ${pct(r.lat, 0.9)}, max ${r.lat.at(-1)}` : 'nothing read';
      console.log(`glass-to-glass ${r.name} (${r.mode}): ${line}; ${r.lat.length} frames read, ${r.bad} unreadable; median ${r.behind.toFixed(2)} s behind the buffered edge; ${r.stalls} stalls; playback rates ${r.rates.join('/')}`);
    }
    const def = results[0];
    assert.equal(def.mode, 'mse', '?player=mse plays MediaSource');
    assert.ok(def.lat.length >= 100, `frames read back (${def.lat.length}, ${def.bad} unreadable)`);
    assert.ok(def.bad <= def.lat.length / 10, `few unreadable frames (${def.bad} of ${def.bad + def.lat.length})`);
    assert.ok(pct(def.lat, 0.5) <= 3000, `median glass-to-glass ${pct(def.lat, 0.5)} ms ≤ 3000 ms`);
    // The same stream in the embeddable player, in an <iframe> of a page from elsewhere.
    const host = await newPage(800, 500);
    await host.setContent(`<h1>Another site</h1><iframe src="${base}/assets/embed.html?room=clock&player=mse" width="640" height="360" allow="autoplay; fullscreen"></iframe>`);
    const frame = host.frames().find((f) => f.url().includes('/assets/embed.html'));
    assert.ok(frame, 'the player page loads in the iframe');
    await frame.waitForFunction(() => document.getElementById('video').currentTime > 1, null, { timeout: 30000 });
    assert.equal(await frame.evaluate(() => window.player.mode), 'mse');
    assert.equal(await frame.locator('#banner').isVisible(), false, 'no banner over the playing stream');
    await host.screenshot({ path: join(artifacts, 'embed-iframe.png') });
    await host.context().close();
  } finally {
    ff.stop();
  }
  for (const [, page] of pages) await page.context().close();
});

test('ffmpeg pushes a test stream and the watch page plays it', async (t) => {
  if (spawnSync('ffmpeg', ['-version']).status !== 0) return t.skip('no ffmpeg');
  const probe = await fetch(`${base}/live/demo.json`);
  if (probe.status === 404 && (await probe.text()).includes('no such endpoint')) return t.skip('live media is not in this build');
  // A fresh room (the demo room may have ended in an earlier test) and its push address
  // from the studio's endpoint, as OBS would get it.
  assert.equal((await adminApi('POST', '/api/v1/rooms', { roomId: 'onstage', name: 'On stage', owner: 'anchor-live' })).status, 201);
  const pushRes = await adminApi('GET', '/api/v1/rooms/onstage/push-url');
  const push = pushRes.json;
  assert.equal(pushRes.status, 200, JSON.stringify(push));
  // `?player=mse`: MediaSource + live fMP4 (the default where WebRTC does not work);
  // `?player=hls` takes the browser's own HLS (what iOS Safari without MediaSource gets),
  // which this Chromium also has; the default page takes WebRTC (WHEP) where it works.
  const v = await viewer('onstage?player=mse');
  const m = await viewer('onstage?player=hls');
  const d = await viewer('onstage');
  const ff = spawn('ffmpeg', ['-v', 'error', '-re', '-f', 'lavfi', '-i', 'testsrc2=size=640x360:rate=25', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=44100',
    '-c:v', 'libx264', '-preset', 'ultrafast', '-tune', 'zerolatency', '-g', '25', '-pix_fmt', 'yuv420p', '-c:a', 'aac', '-t', '60', '-f', 'flv', push.url], { stdio: ['ignore', 'ignore', 'pipe'] });
  let ffErr = '';
  ff.stderr.on('data', (d) => (ffErr += d));
  try {
    // The room follows the stream: live on publish. The push address comes from the
    // studio endpoint with the default keys, so this also checks that the RTMP server
    // accepts what the studio hands out.
    await v.waitForFunction(() => window.onair.room?.state === 'live', null, { timeout: 20000 }).catch((e) => {
      throw new Error(`the room did not go live on publish (${e.message}); ffmpeg said: ${ffErr.trim() || 'nothing'}; push URL ${push.url}`);
    });
    // The mode is picked once the stream is on this server (whether it has a WHEP
    // endpoint is known only then), which can be a moment after the room goes live.
    for (const [page, want] of [[v, 'mse'], [m, 'hls']]) {
      await page.waitForFunction(() => window.player.mode, null, { timeout: 15000 }).catch(() => {});
      assert.equal(await page.evaluate(() => window.player.mode), want, `?player=${want} plays with ${want}`);
    }
    for (const [page, name] of [[v, 'room-live'], [m, 'room-live-hls'], [d, 'room-live-default']]) {
      await page.waitForFunction(() => document.getElementById('video').currentTime > 1, null, { timeout: 30000 });
      const t0 = await page.evaluate(() => document.getElementById('video').currentTime);
      await page.waitForTimeout(1500);
      const t1 = await page.evaluate(() => document.getElementById('video').currentTime);
      assert.ok(t1 > t0 + 0.5, `${name}: currentTime advances (${t0} → ${t1})`);
      assert.equal(await page.locator('#banner').isVisible(), false, `${name}: no banner over a playing stream`);
      const brightness = await page.evaluate(() => {
        const video = document.getElementById('video');
        const c = document.createElement('canvas');
        c.width = 64;
        c.height = 36;
        const g = c.getContext('2d');
        g.drawImage(video, 0, 0, 64, 36);
        const d = g.getImageData(0, 0, 64, 36).data;
        let sum = 0;
        for (let i = 0; i < d.length; i += 4) sum += d[i] + d[i + 1] + d[i + 2];
        return sum / (d.length / 4) / 3;
      });
      assert.ok(brightness > 30, `${name}: the picture is not black (mean ${brightness.toFixed(1)})`);
      const behind = await page.evaluate(() => {
        const video = document.getElementById('video');
        return video.buffered.length ? video.buffered.end(video.buffered.length - 1) - video.currentTime : -1;
      });
      console.log(`# ${name}: ${behind.toFixed(2)} s behind the buffered live edge; player log: ${await page.evaluate(() => window.player?.log.join(' | '))}`);
      // The latency figure shows once a tick has measured it (WebRTC or buffer-based).
      await page.waitForFunction(() => document.getElementById('playerLatency').textContent.length > 0, null, { timeout: 5000 });
      console.log(`# ${name}: latency figure "${await page.locator('#playerLatency').textContent()}" (${await page.evaluate(() => window.player.mode)})`);
      await page.locator('#video').screenshot({ path: join(artifacts, `${name}-video.png`) });
      await shot(page, name);
    }
    // The room list shows the live room's thumbnail once the stream has had time to get
    // one (and asks for none before: see the console test).
    const idx = await newPage();
    await idx.goto(base + '/');
    const thumb = idx.locator('.room-card[data-room="onstage"] .thumb img');
    await idx.waitForFunction(() => {
      const img = document.querySelector('.room-card[data-room="onstage"] .thumb img');
      return img && img.complete && img.naturalWidth > 0 && !img.classList.contains('pending');
    }, null, { timeout: 30000 });
    assert.match(await thumb.getAttribute('src'), /^\/live\/onstage\/snapshot\.jpg/);
    await shot(idx, 'index-live');
    await idx.context().close();
    // The studio and the admin console draw the stream's health history as charts.
    const st = await newPage(1280, 1000);
    await st.goto(`${base}/studio/onstage#identifier=administrator&usersig=${encodeURIComponent(adminSig)}`);
    await st.locator('#monitor svg.spark path.spark-line').first().waitFor({ timeout: T });
    assert.ok((await st.locator('#monitor svg.spark').count()) >= 6, 'six studio charts');
    await shot(st, 'studio-monitor');
    await st.context().close();
    const ad = await newPage(1280, 1000);
    await ad.goto(`${base}/admin#identifier=administrator&usersig=${encodeURIComponent(adminSig)}`);
    await ad.click('#tabs [data-tab="streams"]');
    await ad.locator('#streamRows svg.spark path.spark-line').first().waitFor({ timeout: T });
    await shot(ad, 'admin-streams');
    await ad.context().close();
  } finally {
    ff.kill('SIGINT');
  }
  // The stream stops: the room pauses and the banner says so.
  await v.locator('#banner', { hasText: 'Paused' }).waitFor({ timeout: 20000 });
  // No publisher within the grace (3 s here): ended; the recording plays as the replay
  // (the room moves on to `replay`, or the ended banner offers it).
  for (const [page, name] of [[v, 'room-replay'], [m, 'room-replay-hls']]) {
    await page.waitForFunction(() => ['ended', 'replay'].includes(window.onair.room?.state), null, { timeout: 30000 });
    await page.locator('#replayBtn').or(page.locator('#banner.hidden[data-state="replay"]')).first().waitFor({ state: 'attached', timeout: 20000 });
    if (await page.locator('#replayBtn').count()) {
      await shot(page, `${name}-offer`);
      await page.click('#replayBtn');
    }
    await page.waitForFunction(() => document.getElementById('video').currentTime > 1, null, { timeout: 30000 });
    assert.match(await page.evaluate(() => window.player.log.join(' | ')), /replay/);
    assert.equal(await page.locator('#banner').isVisible(), false, `${name}: no banner over the replay`);
    await shot(page, name);
  }
  await v.context().close();
  await m.context().close();
  await d.context().close();
});
