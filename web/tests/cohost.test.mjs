// Co-hosting in a real browser: Debian's chromium with a fake camera and microphone. The
// anchor goes live from the studio (WHIP); a viewer on the watch page asks to co-host;
// the anchor accepts in the studio; the guest's page goes on air by itself (WHIP with
// the signed URL from the `cohost` event, no URL to copy) and plays the anchor's own
// feed over WHEP; the studio shows the guest's tile decoding frames over WHEP; the
// room's stream becomes the server's mix (an ffmpeg child): its statistics show the
// mixer's encoder. The guest leaves: the tile goes, the room's stream is the anchor's.
//
// ONAIR_BIN overrides the binary (see harness.mjs).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FAKE_MEDIA, freePort, goLiveFromStudio, launchChromium, startOnair, stopOnair } from './harness.mjs';

const haveFfmpeg = spawnSync('ffmpeg', ['-version']).status === 0;

let server, base, browser, dir;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'onair-cohost-'));
  const cfg = join(dir, 'onair.toml');
  const [http, rtmp] = [await freePort(), await freePort()];
  // Every interface: Chromium gathers no loopback candidates of its own.
  writeFileSync(cfg, `data_dir = ${JSON.stringify(join(dir, 'data'))}\n[demo]\nenabled = true\n[http]\nlisten = "127.0.0.1:${http}"\n` +
    `[rtmp]\nlisten = "127.0.0.1:${rtmp}"\n[webrtc]\nlisten = "0.0.0.0:0"\n[media]\nrecord = false\nsnapshot_secs = 0\n`);
  ({ server, base } = await startOnair(cfg));
  browser = await launchChromium(FAKE_MEDIA);
});

after(async () => {
  await browser?.close();
  await stopOnair(server);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function until(what, f, ms = 20000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v) return v;
    assert.ok(Date.now() < deadline, `timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

const stream = async (name) => {
  const r = await fetch(`${base}/api/v1/streams/${name}`);
  return r.ok ? r.json() : null;
};

/** framesDecoded of a peer connection reached through `expr` in the page. */
const decoded = (page, expr) => page.evaluate(async (expr) => {
  // eslint-disable-next-line no-new-func
  const pc = new Function(`return ${expr}`)();
  if (!pc) return 0;
  let n = 0;
  (await pc.getStats()).forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'video') n = s.framesDecoded ?? 0;
  });
  return n;
}, expr);

test('a guest on the watch page goes on air after the anchor accepts; the studio shows their tile; viewers get the mix', { skip: !haveFfmpeg && 'no ffmpeg' }, async () => {
  const errors = [];
  const actx = await browser.newContext();
  const st = await actx.newPage();
  st.on('pageerror', (e) => errors.push(`studio: ${e.message}`));
  await goLiveFromStudio(st, base);
  await until('the anchor is live', async () => (await stream('demo'))?.videoCodec === 'h264');

  const gctx = await browser.newContext();
  const g = await gctx.newPage();
  g.on('pageerror', (e) => errors.push(`watch page: ${e.message}`));
  await g.goto(`${base}/room/demo`);
  await g.locator('#cohost').waitFor({ state: 'visible', timeout: 20000 });
  await g.waitForFunction(() => window.onair?.userId, null, { timeout: 20000 });
  const guest = await g.evaluate(() => window.onair.userId);
  await g.click('#cohost');

  // The anchor accepts from the studio's co-host card.
  const accept = st.locator('#cohost button', { hasText: 'Accept' });
  await until('the request reaches the studio', async () => (await accept.count()) > 0);
  await accept.first().click();

  // The guest's page goes on air by itself and plays the anchor's own feed.
  await g.locator('#cohostStage').waitFor({ state: 'visible', timeout: 20000 });
  const guestStream = `demo-cohost-${guest.replace(/[^A-Za-z0-9_-]/g, '_')}`.slice(0, 64);
  await until('the guest publishes over WHIP', async () => (await stream(guestStream))?.videoCodec === 'h264');
  await until('the guest decodes the anchor over WHEP', async () => (await decoded(g, 'window.cohostOnAir.anchor?.pc')) > 5);

  // The studio shows the guest's tile, decoding frames over WHEP.
  await until('a guest tile in the studio', async () => st.evaluate((s) => window.guestTiles?.has(s), guestStream));
  const tile = `window.guestTiles.get(${JSON.stringify(guestStream)})?.session.pc`;
  await until('the tile decodes frames', async () => (await decoded(st, tile)) > 5);
  const a = await decoded(st, tile);
  await st.waitForTimeout(1500);
  const b = await decoded(st, tile);
  console.log(`studio guest tile over WHEP: framesDecoded ${a} → ${b}`);
  assert.ok(b > a + 10, `the tile's framesDecoded rises: ${a} → ${b}`);

  // Every other viewer gets the server's mix on the room's stream.
  await until('the mixer publishes', async () => (await stream('demo.mix'))?.videoCodec === 'h264', 30000);
  await until('the layout control shows the layout', async () => (await st.locator('#cohostLayout').inputValue()) === 'side-by-side');

  // The guest leaves: the tile goes and the mix ends.
  await g.locator('#cohostStage button', { hasText: 'Leave' }).click();
  await until('the tile goes', async () => !(await st.evaluate((s) => window.guestTiles.has(s), guestStream)));
  await until('the mix ends', async () => (await stream('demo.mix')) === null, 20000);
  assert.deepEqual(errors, [], 'no uncaught errors');
  await actx.close();
  await gctx.close();
});
