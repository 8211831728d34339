// WebRTC glass-to-glass latency and time to first frame in Chromium, on loopback
// (BENCHMARKS.md "WebRTC: glass-to-glass latency and time to first frame").
//
//   node bench/webrtc/g2g.mjs [SECONDS=20] [JOINS=10]
//
// Starts `onair` (ONAIR_BIN, default target/release/onair) on free ports, then:
//  1. WHIP → WHEP: a Chromium page draws a clock (wall-clock ms in 8×5 black/white
//     blocks, web/tests/clock.mjs) into a canvas every 40 ms and publishes
//     `canvas.captureStream(25)` (+ a WebAudio tone) over WHIP; a second page plays the
//     stream over WHEP and reads the clock back from every presented frame
//     (requestVideoFrameCallback → canvas), against Date.now() — one machine, one clock.
//  2. RTMP → WHEP: the same clock drawn in Node and encoded by ffmpeg (x264 ultrafast
//     zerolatency, 1 s GOP, AAC), pushed over RTMP, played over WHEP the same way.
// For each, JOINS fresh viewers measure the time from the WHEP POST to their first
// presented frame. Prints one line per figure; percentiles over every frame read.
// Needs ffmpeg, Debian's chromium (CHROMIUM) and web/tests' node_modules (npm ci there).
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLOCK, clockCanvasInPage, measureInPage, pushClock, pct } from '../../web/tests/clock.mjs';
import { freePort, launchChromium, repo, startOnair, stopOnair } from '../../web/tests/harness.mjs';

const secs = Number(process.argv[2] ?? 20);
const joins = Number(process.argv[3] ?? 10);
const bin = process.env.ONAIR_BIN || join(repo, 'target/release/onair');

const dir = mkdtempSync(join(tmpdir(), 'onair-g2g-'));
const [http, rtmp] = [await freePort(), await freePort()];
writeFileSync(join(dir, 'onair.toml'), `data_dir = ${JSON.stringify(join(dir, 'data'))}\n[http]\nlisten = "127.0.0.1:${http}"\n` +
  // Every interface: Chromium gathers no loopback candidates of its own.
  `[rtmp]\nlisten = "127.0.0.1:${rtmp}"\n[webrtc]\nlisten = "0.0.0.0:0"\n`);
let whipUrl, rtmpUrl;
const { server, base } = await startOnair(join(dir, 'onair.toml'), (l) => {
  whipUrl ??= /^\s*WHIP publish\s+(\S+)/.exec(l)?.[1];
  rtmpUrl ??= /^\s*RTMP push\s+(\S+)/.exec(l)?.[1];
}, bin);
const browser = await launchChromium();

async function page() {
  const p = await (await browser.newContext()).newPage();
  await p.goto(`${base}/healthz`);
  return p;
}

async function waitLive(up) {
  const deadline = Date.now() + 20000;
  for (;;) {
    const r = await fetch(`${base}/api/v1/streams/test`);
    if (up ? r.ok && (await r.json()).videoCodec === 'h264' : r.status === 404) return;
    if (Date.now() > deadline) throw new Error(`stream did not go ${up ? 'live' : 'away'}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A WHEP viewer in `p`: a <video id="video"> playing `test`; resolves with POST → first presented frame, ms. */
function whepViewer(p) {
  return p.evaluate(async () => {
    const v = document.createElement('video');
    v.id = 'video';
    v.muted = true;
    v.autoplay = true;
    v.playsInline = true;
    document.body.append(v);
    const pc = new RTCPeerConnection();
    pc.addTransceiver('video', { direction: 'recvonly' });
    pc.addTransceiver('audio', { direction: 'recvonly' });
    const media = new MediaStream();
    pc.addEventListener('track', (e) => media.addTrack(e.track));
    await pc.setLocalDescription(await pc.createOffer());
    const t0 = performance.now();
    const res = await fetch('/whep/test', { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: pc.localDescription.sdp });
    if (res.status !== 201) throw new Error(`WHEP ${res.status}: ${await res.text()}`);
    await pc.setRemoteDescription({ type: 'answer', sdp: await res.text() });
    v.srcObject = media;
    v.play().catch(() => {});
    window.whep = { pc, location: res.headers.get('location') };
    return new Promise((done) => v.requestVideoFrameCallback(() => done(Math.round(performance.now() - t0))));
  });
}

async function measure(name) {
  await waitLive(true);
  // Let the stream run a moment, as a viewer joining a running stream would find it.
  await new Promise((r) => setTimeout(r, 2000));
  const v = await page();
  const first = await whepViewer(v);
  const r = await measureInPage(v, secs, 2);
  await v.context().close();
  const ttff = [first];
  for (let i = 1; i < joins; i++) {
    const p = await page();
    ttff.push(await whepViewer(p));
    await p.evaluate(() => fetch(window.whep.location, { method: 'DELETE' }));
    await p.context().close();
    // Joins land anywhere in the GOP.
    await new Promise((r) => setTimeout(r, 370));
  }
  ttff.sort((a, b) => a - b);
  const lat = r.lat;
  console.log(`${name}: glass-to-glass over ${lat.length} frames (${r.bad} unreadable, ${r.stalls} stalls): ` +
    `p50 ${pct(lat, 0.5)} ms, p90 ${pct(lat, 0.9)}, p99 ${pct(lat, 0.99)}, min ${lat[0]}, max ${lat.at(-1)}`);
  console.log(`${name}: time to first frame (WHEP POST → first presented frame), ${ttff.length} joins: ` +
    `p50 ${pct(ttff, 0.5)} ms, p90 ${pct(ttff, 0.9)}, max ${ttff.at(-1)}`);
}

try {
  // 1. WHIP → WHEP: Chromium publishes the clock from a canvas.
  const pub = await page();
  const whip = new URL(whipUrl);
  await pub.evaluate(`window.clockCanvas = (${clockCanvasInPage.toString()})(${JSON.stringify(CLOCK)})`);
  const status = await pub.evaluate(async (path) => {
    const stream = window.clockCanvas.captureStream(25);
    const ac = new AudioContext();
    const osc = ac.createOscillator();
    const dst = ac.createMediaStreamDestination();
    osc.connect(dst);
    osc.start();
    const pc = new RTCPeerConnection();
    pc.addTransceiver(stream.getVideoTracks()[0], { direction: 'sendonly' });
    pc.addTransceiver(dst.stream.getAudioTracks()[0], { direction: 'sendonly' });
    await pc.setLocalDescription(await pc.createOffer());
    const res = await fetch(path, { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: pc.localDescription.sdp });
    if (res.status !== 201) return `${res.status} ${await res.text()}`;
    await pc.setRemoteDescription({ type: 'answer', sdp: await res.text() });
    window.whip = { pc, location: res.headers.get('location') };
    return 201;
  }, whip.pathname + whip.search);
  if (status !== 201) throw new Error(`WHIP: ${status}`);
  await measure('WHIP → WHEP');
  await pub.evaluate(() => fetch(window.whip.location, { method: 'DELETE' }));
  await pub.context().close();
  await waitLive(false);

  // 2. RTMP → WHEP: ffmpeg pushes the clock.
  const ff = pushClock(rtmpUrl);
  try {
    await measure('RTMP → WHEP');
  } finally {
    ff.stop();
  }
} finally {
  await browser.close();
  await stopOnair(server);
  rmSync(dir, { recursive: true, force: true });
}
