// WebRTC in a real browser: Debian's chromium with fake camera and microphone publishes
// over WHIP to the real `onair` binary; another context plays the stream over WHEP and
// decodes frames (`getStats` framesDecoded rising); ffprobe reads the same stream over
// HTTP-FLV with H.264 and AAC (the Opus → AAC bridge). Then an ffmpeg RTMP push plays
// over WHEP in the browser (AAC → Opus for its audio), and again with every UDP candidate
// taken out of the answer, so that Chromium must reach the server over ICE-TCP (on in this
// server's config). Last, the UI: the studio's "Go
// live from this browser" publishes the demo room over WHIP and the watch page plays it
// over WHEP by default (with a latency figure); a watch page whose WHEP request fails
// falls back to MediaSource within seconds.
//
// ONAIR_BIN overrides the binary (see harness.mjs).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FAKE_MEDIA, freePort, goLiveFromStudio, launchChromium, startOnair, stopOnair } from './harness.mjs';

const haveFfmpeg = spawnSync('ffmpeg', ['-version']).status === 0 && spawnSync('ffprobe', ['-version']).status === 0;

let server, base, whipTest, rtmpTest, browser, dir;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'onair-webrtc-'));
  const cfg = join(dir, 'onair.toml');
  const [http, rtmp] = [await freePort(), await freePort()];
  // Every interface: Chromium gathers no loopback candidates of its own.
  writeFileSync(cfg, `data_dir = ${JSON.stringify(join(dir, 'data'))}\n[demo]\nenabled = true\n[http]\nlisten = "127.0.0.1:${http}"\n` +
    `[rtmp]\nlisten = "127.0.0.1:${rtmp}"\n[webrtc]\nlisten = "0.0.0.0:0"\nice_tcp = true\n`);
  ({ server, base } = await startOnair(cfg, (l) => {
    const whip = /^\s*WHIP publish\s+(\S+)/.exec(l);
    if (whip) whipTest = whip[1];
    const push = /^\s*RTMP push\s+(\S+)/.exec(l);
    if (push) rtmpTest = push[1];
  }));
  browser = await launchChromium(FAKE_MEDIA);
});

after(async () => {
  await browser?.close();
  await stopOnair(server);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** A page on the server's origin (so `fetch` of /whip and /whep is same-origin). */
async function page() {
  const ctx = await browser.newContext();
  const p = await ctx.newPage();
  await p.goto(`${base}/healthz`);
  return p;
}

async function waitLive(name, what = (s) => s.videoCodec === 'h264') {
  const deadline = Date.now() + 15000;
  for (;;) {
    const r = await fetch(`${base}/api/v1/streams/${name}`);
    const s = r.ok ? await r.json() : null;
    if (s && what(s)) return s;
    assert.ok(Date.now() < deadline, `${name} did not go live: ${JSON.stringify(s)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Plays `name` over WHEP in a page; returns framesDecoded after `ms`, sampled twice, and audio
 * packets. `tcpOnly`: every UDP candidate is removed from the answer (a network that blocks
 * UDP), and the result also says which candidates carry the media. */
async function playWhep(p, name, tcpOnly = false) {
  return p.evaluate(async ([name, tcpOnly]) => {
    const pc = new RTCPeerConnection();
    pc.addTransceiver('video', { direction: 'recvonly' });
    pc.addTransceiver('audio', { direction: 'recvonly' });
    await pc.setLocalDescription(await pc.createOffer());
    const t0 = performance.now();
    const res = await fetch(`/whep/${name}`, { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: pc.localDescription.sdp });
    if (res.status !== 201) throw new Error(`WHEP ${res.status}: ${await res.text()}`);
    let answer = await res.text();
    const candidates = answer.split('\r\n').filter((l) => l.startsWith('a=candidate:'));
    if (tcpOnly) {
      answer = answer.split('\r\n').filter((l) => !(l.startsWith('a=candidate:') && l.split(' ')[2].toLowerCase() === 'udp')).join('\r\n');
    }
    await pc.setRemoteDescription({ type: 'answer', sdp: answer });
    const stats = async () => {
      let frames = 0, audio = 0, codec = '';
      (await pc.getStats()).forEach((s) => {
        if (s.type === 'inbound-rtp' && s.kind === 'video') frames = s.framesDecoded ?? 0;
        if (s.type === 'inbound-rtp' && s.kind === 'audio') audio = s.packetsReceived ?? 0;
        if (s.type === 'codec' && s.mimeType?.startsWith('video/')) codec = s.mimeType;
      });
      return { frames, audio, codec };
    };
    let first = null;
    while (performance.now() - t0 < 8000) {
      const s = await stats();
      if (s.frames > 0 && first === null) first = performance.now() - t0;
      if (first !== null && performance.now() - t0 > first + 1500) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const a = await stats();
    await new Promise((r) => setTimeout(r, 1500));
    const b = await stats();
    // The candidates of the pair ICE selected (the transport's, or the nominated one).
    const report = await pc.getStats();
    let pairId = null;
    report.forEach((s) => { if (s.type === 'transport' && s.selectedCandidatePairId) pairId = s.selectedCandidatePairId; });
    let pair = pairId ? report.get(pairId) : null;
    if (!pair) report.forEach((s) => { if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') pair = s; });
    const selected = pair ? {
      local: report.get(pair.localCandidateId)?.protocol,
      remote: report.get(pair.remoteCandidateId)?.protocol,
      localTcpType: report.get(pair.localCandidateId)?.tcpType,
    } : null;
    window.whepPc = pc;
    return { firstFrameMs: first, a, b, selected, candidates, location: res.headers.get('location') };
  }, [name, tcpOnly]);
}

test('chromium publishes over WHIP; another context plays over WHEP; HTTP-FLV has H.264 + AAC', { skip: !haveFfmpeg && 'no ffmpeg' }, async () => {
  assert.ok(whipTest, 'the banner prints a signed WHIP URL');
  const pub = await page();
  const url = new URL(whipTest);
  const published = await pub.evaluate(async (path) => {
    const media = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 360 }, audio: true });
    const pc = new RTCPeerConnection();
    for (const track of media.getTracks()) pc.addTransceiver(track, { direction: 'sendonly' });
    await pc.setLocalDescription(await pc.createOffer());
    const res = await fetch(path, { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: pc.localDescription.sdp });
    if (res.status !== 201) return { status: res.status, text: await res.text() };
    await pc.setRemoteDescription({ type: 'answer', sdp: await res.text() });
    window.whipPc = pc;
    return { status: 201, location: res.headers.get('location') };
  }, url.pathname + url.search);
  assert.equal(published.status, 201, JSON.stringify(published));
  const live = await waitLive('test', (s) => s.videoCodec === 'h264' && s.audioCodec === 'aac');
  assert.ok(live.webrtc.some((s) => s.role === 'publish' && s.state === 'connected'), JSON.stringify(live.webrtc));

  const viewer = await page();
  const played = await playWhep(viewer, 'test');
  console.log('WHIP → WHEP in chromium:', JSON.stringify(played));
  assert.ok(played.firstFrameMs !== null, 'decoded a first frame');
  assert.ok(played.b.frames > played.a.frames + 10, `framesDecoded rises: ${played.a.frames} → ${played.b.frames}`);
  assert.ok(played.b.audio > 0, 'Opus packets arrive');

  // The same stream over HTTP-FLV: H.264 and AAC for ffprobe.
  const probe = spawnSync('ffprobe', ['-v', 'error', '-rw_timeout', '8000000', '-read_intervals', '%+2', '-show_entries', 'stream=codec_name', '-of', 'csv=p=0', `${base}/live/test.flv`], { timeout: 20000 });
  const codecs = String(probe.stdout).trim().split('\n').sort();
  assert.deepEqual(codecs, ['aac', 'h264'], String(probe.stderr));

  const del = await fetch(base + published.location, { method: 'DELETE' });
  assert.equal(del.status, 200);
  const deadline = Date.now() + 10000;
  while ((await fetch(`${base}/api/v1/streams/test`)).status !== 404) {
    assert.ok(Date.now() < deadline, 'stream ended after DELETE');
    await new Promise((r) => setTimeout(r, 200));
  }
  await pub.context().close();
  await viewer.context().close();
});

/** ffmpeg pushing a 640x360 test pattern with a tone to the banner's RTMP URL for 25 s. */
function pushTestPattern() {
  return spawn('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-nostdin', '-re', '-f', 'lavfi', '-i', 'testsrc2=size=640x360:rate=30',
    '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=44100', '-c:v', 'libx264', '-preset', 'ultrafast', '-tune', 'zerolatency',
    '-profile:v', 'baseline', '-g', '30', '-b:v', '500k', '-c:a', 'aac', '-t', '25', '-f', 'flv', rtmpTest], { stdio: 'ignore' });
}

test('an ffmpeg RTMP push plays over WHEP in chromium', { skip: !haveFfmpeg && 'no ffmpeg' }, async () => {
  assert.ok(rtmpTest, 'the banner prints a signed RTMP URL');
  const ff = pushTestPattern();
  try {
    await waitLive('test', (s) => s.videoCodec === 'h264' && s.gopFrames > 0);
    const viewer = await page();
    const played = await playWhep(viewer, 'test');
    console.log('RTMP → WHEP in chromium:', JSON.stringify(played));
    assert.ok(played.firstFrameMs !== null, 'decoded a first frame');
    assert.ok(played.b.frames > played.a.frames + 10, `framesDecoded rises: ${played.a.frames} → ${played.b.frames}`);
    assert.ok(played.b.audio > 0, 'Opus packets arrive (AAC → Opus bridge)');
    await viewer.context().close();
  } finally {
    ff.kill('SIGKILL');
  }
});

test('with the UDP candidates taken out, chromium plays over ICE-TCP', { skip: !haveFfmpeg && 'no ffmpeg' }, async () => {
  // The previous test's push must have ended (one publisher per stream).
  const gone = Date.now() + 10000;
  while ((await fetch(`${base}/api/v1/streams/test`)).status !== 404) {
    assert.ok(Date.now() < gone, 'the previous push ended');
    await new Promise((r) => setTimeout(r, 200));
  }
  const ff = pushTestPattern();
  try {
    await waitLive('test', (s) => s.videoCodec === 'h264' && s.gopFrames > 0);
    const viewer = await page();
    const played = await playWhep(viewer, 'test', true);
    console.log('RTMP → WHEP over ICE-TCP in chromium:', JSON.stringify(played));
    assert.ok(played.candidates.some((l) => / tcp \d+ .* typ host tcptype passive/i.test(l)), `a TCP candidate in ${played.candidates}`);
    assert.ok(played.firstFrameMs !== null, 'decoded a first frame');
    assert.ok(played.b.frames > played.a.frames + 10, `framesDecoded rises: ${played.a.frames} → ${played.b.frames}`);
    assert.deepEqual([played.selected?.local, played.selected?.remote], ['tcp', 'tcp'], JSON.stringify(played.selected));
    // The server says so too.
    const deadline = Date.now() + 5000;
    for (;;) {
      const s = await (await fetch(`${base}/api/v1/streams/test`)).json();
      if (s.webrtc.some((x) => x.role === 'play' && x.transport === 'tcp')) break;
      assert.ok(Date.now() < deadline, `transport tcp in ${JSON.stringify(s.webrtc)}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    await viewer.context().close();
  } finally {
    ff.kill('SIGKILL');
  }
});

test('the studio goes live from the browser over WHIP; the watch page plays it over WHEP', async () => {
  const ctx = await browser.newContext();
  const st = await ctx.newPage();
  const errors = [];
  st.on('pageerror', (e) => errors.push(e.message));
  await goLiveFromStudio(st, base);
  await st.locator('#webStop').waitFor({ state: 'visible' });
  await waitLive('demo');

  const vctx = await browser.newContext();
  const v = await vctx.newPage();
  v.on('pageerror', (e) => errors.push(e.message));
  // No `?player=`: WebRTC is the default where the stream lists a WHEP endpoint.
  await v.goto(`${base}/room/demo`);
  await v.waitForFunction(() => window.player?.mode === 'whep' && window.player.pc, null, { timeout: 20000 });
  const frames = () => v.evaluate(async () => {
    let n = 0;
    (await window.player.pc.getStats()).forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'video') n = s.framesDecoded ?? 0;
    });
    return n;
  });
  const deadline = Date.now() + 15000;
  while ((await frames()) === 0) {
    assert.ok(Date.now() < deadline, `the watch page decodes no frame; log ${JSON.stringify(await v.evaluate(() => window.player.log))}`);
    await v.waitForTimeout(200);
  }
  const a = await frames();
  await v.waitForTimeout(1500);
  const b = await frames();
  console.log(`studio WHIP → watch page WHEP: framesDecoded ${a} → ${b}`);
  assert.ok(b > a + 10, `framesDecoded rises: ${a} → ${b}`);
  // The latency figure: WebRTC's estimate, in ms.
  await v.waitForFunction(() => /^WebRTC · \d+ ms$/.test(document.getElementById('playerLatency').textContent), null, { timeout: 5000 });
  const lat = await v.evaluate(() => window.player.latency);
  console.log(`watch page latency figure: ${JSON.stringify(lat)}, first frame ${await v.evaluate(() => window.player.firstFrameMs)} ms`);
  assert.ok(lat.ms >= 0 && lat.ms < 2000, JSON.stringify(lat));

  // A viewer whose WHEP request fails (a proxy that refuses it, say) falls back to
  // MediaSource by itself and plays.
  const fctx = await browser.newContext();
  const f = await fctx.newPage();
  f.on('pageerror', (e) => errors.push(e.message));
  await f.route('**/whep/**', (route) => route.fulfill({ status: 503, contentType: 'text/plain', body: 'no WebRTC here' }));
  await f.goto(`${base}/room/demo`);
  await f.waitForFunction(() => window.player?.mode === 'mse' && document.getElementById('video').currentTime > 0.5, null, { timeout: 25000 });
  const flog = await f.evaluate(() => window.player.log.join(' | '));
  assert.match(flog, /WHEP: failed: WHEP 503/, flog);
  await fctx.close();
  const stats = await st.locator('#webStats').textContent();
  assert.match(stats, /kbit\/s/, stats);

  await st.click('#webStop');
  const end = Date.now() + 10000;
  while ((await fetch(`${base}/api/v1/streams/demo`)).status !== 404) {
    assert.ok(Date.now() < end, 'Stop ends the stream');
    await new Promise((r) => setTimeout(r, 200));
  }
  assert.deepEqual(errors, [], 'no uncaught errors');
  await ctx.close();
  await vctx.close();
});
