// Glass-to-glass latency: a clock burned into the picture, read back where it is shown.
// Shared by the browser test (e2e.test.mjs) and the WebRTC latency bench
// (bench/webrtc/g2g.mjs).
import { spawn } from 'node:child_process';
/** The picture: 320×180, 8×5 blocks of 40×36 px, black or white: 32 bits of the wall clock (ms mod 2³²) and an 8-bit check. */
export const CLOCK = { w: 320, h: 180, cols: 8, rows: 5 };

/** One rgb24 frame showing `ms` (the time it is made: the "glass" on the camera side). */
export function clockFrame(ms) {
  const v = ms >>> 0;
  const bits = [];
  for (let i = 31; i >= 0; i--) bits.push((v >>> i) & 1);
  const check = (((v >>> 24) + ((v >>> 16) & 255) + ((v >>> 8) & 255) + (v & 255)) & 255) ^ 0xa5;
  for (let i = 7; i >= 0; i--) bits.push((check >> i) & 1);
  const { w, h, cols } = CLOCK;
  const bw = w / cols;
  const bh = h / CLOCK.rows;
  const buf = Buffer.alloc(w * h * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const bit = bits[Math.floor(y / bh) * cols + Math.floor(x / bw)];
      buf.fill(bit ? 235 : 16, (y * w + x) * 3, (y * w + x) * 3 + 3);
    }
  }
  return buf;
}

/**
 * Publishes the clock over RTMP to `url` with ffmpeg (x264 ultrafast/zerolatency, 25 fps,
 * 1 s GOP, AAC): every 40 ms one picture made at that moment, and 40 ms of a 440 Hz
 * tone made here too (into fd 3), so both streams are timed by one clock as a real
 * encoder's are. (ffmpeg's own `-re` sine next to piped pictures holds the video back
 * by ~0.4 s: BENCHMARKS.md.) `ONAIR_LATENCY_VIDEO_ONLY=1` sends no audio.
 */
export function pushClock(url) {
  const withAudio = !process.env.ONAIR_LATENCY_VIDEO_ONLY;
  const ff = spawn('ffmpeg', ['-v', 'error', '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-s', `${CLOCK.w}x${CLOCK.h}`, '-r', '25', '-i', 'pipe:0',
    ...(withAudio ? ['-f', 's16le', '-ar', '44100', '-ac', '1', '-i', 'pipe:3'] : []),
    '-c:v', 'libx264', '-preset', 'ultrafast', '-tune', 'zerolatency', '-g', '25', '-pix_fmt', 'yuv420p', '-crf', '18', ...(withAudio ? ['-c:a', 'aac'] : ['-an']),
    '-f', 'flv', url], { stdio: ['pipe', 'ignore', 'pipe', 'pipe'] });
  ff.err = '';
  ff.stderr.on('data', (d) => (ff.err += d));
  ff.stdin.on('error', () => {});
  ff.stdio[3].on('error', () => {});
  let sample = 0;
  const tone = () => {
    const b = Buffer.alloc(1764 * 2); // 40 ms at 44.1 kHz
    for (let i = 0; i < 1764; i++, sample++) b.writeInt16LE(Math.round(Math.sin((2 * Math.PI * 440 * sample) / 44100) * 8000), i * 2);
    return b;
  };
  const t0 = Date.now();
  let n = 0;
  const tick = () => {
    if (ff.exitCode !== null || ff.stdin.destroyed) return;
    ff.stdin.write(clockFrame(Date.now()));
    if (withAudio) ff.stdio[3].write(tone());
    n += 1;
    ff.timer = setTimeout(tick, Math.max(0, t0 + n * 40 - Date.now()));
  };
  tick();
  ff.stop = () => {
    clearTimeout(ff.timer);
    ff.stdin.end();
    ff.stdio[3].end();
    ff.kill('SIGINT');
  };
  return ff;
}

/**
 * In the page: every frame the video presents (requestVideoFrameCallback) is drawn to a
 * canvas, its clock read back and compared with Date.now() — the same machine's clock.
 * Collects for `secs` seconds after `warmup` seconds of playback; resolves with the sorted
 * latencies (ms) and how many frames could not be read.
 */
export function measureInPage(page, secs, warmup, videoId = 'video') {
  return page.evaluate(async ({ secs, warmup, C, videoId }) => {
    const v = document.getElementById(videoId);
    const c = document.createElement('canvas');
    c.width = C.w;
    c.height = C.h;
    const g = c.getContext('2d', { willReadFrequently: true });
    const bw = C.w / C.cols;
    const bh = C.h / C.rows;
    const read = () => {
      g.drawImage(v, 0, 0, C.w, C.h);
      const d = g.getImageData(0, 0, C.w, C.h).data;
      const bits = [];
      for (let r = 0; r < C.rows; r++)
        for (let k = 0; k < C.cols; k++) {
          let sum = 0;
          for (let dy = -4; dy <= 4; dy += 2)
            for (let dx = -4; dx <= 4; dx += 2) sum += d[(Math.round(r * bh + bh / 2 + dy) * C.w + Math.round(k * bw + bw / 2 + dx)) * 4 + 1];
          bits.push(sum / 25 > 125 ? 1 : 0);
        }
      let v32 = 0;
      for (let i = 0; i < 32; i++) v32 = (v32 * 2 + bits[i]) >>> 0;
      let check = 0;
      for (let i = 32; i < 40; i++) check = check * 2 + bits[i];
      const want = (((v32 >>> 24) + ((v32 >>> 16) & 255) + ((v32 >>> 8) & 255) + (v32 & 255)) & 255) ^ 0xa5;
      return check === want ? v32 : null;
    };
    while (!(v.currentTime > 0 && v.readyState >= 2)) await new Promise((r) => setTimeout(r, 50));
    await new Promise((r) => setTimeout(r, warmup * 1000));
    const lat = [];
    const behind = [];
    let bad = 0;
    let stalls = 0;
    const rates = new Set();
    v.addEventListener('waiting', () => (stalls += 1));
    const end = Date.now() + secs * 1000;
    await new Promise((done) => {
      const frame = () => {
        const shown = read();
        const now = Date.now();
        if (shown === null) bad += 1;
        else lat.push(((now >>> 0) - shown + 2 ** 32) % 2 ** 32);
        if (v.buffered.length) behind.push(v.buffered.end(v.buffered.length - 1) - v.currentTime);
        rates.add(v.playbackRate);
        if (now < end) v.requestVideoFrameCallback(frame);
        else done();
      };
      v.requestVideoFrameCallback(frame);
    });
    behind.sort((a, b) => a - b);
    return { lat: lat.sort((a, b) => a - b), bad, behind: behind[Math.floor(behind.length / 2)] ?? -1, stalls, rates: [...rates].sort() };
  }, { secs, warmup, C: CLOCK, videoId });
}

/** The `p` quantile of sorted `xs`. */
export const pct = (xs, p) => xs[Math.min(xs.length - 1, Math.floor((xs.length - 1) * p))];

/**
 * In a page: draws the clock (the same blocks as `clockFrame`) into a canvas every 40 ms
 * at the moment it is drawn, for `canvas.captureStream`. Pass to `page.evaluate`; returns
 * the canvas. The browser-side twin of `clockFrame` (a WHIP publisher's camera).
 */
export function clockCanvasInPage(C) {
  const c = document.createElement('canvas');
  c.width = C.w;
  c.height = C.h;
  const g = c.getContext('2d');
  const bw = C.w / C.cols;
  const bh = C.h / C.rows;
  const draw = () => {
    const v = Date.now() >>> 0;
    const bits = [];
    for (let i = 31; i >= 0; i--) bits.push((v >>> i) & 1);
    const check = (((v >>> 24) + ((v >>> 16) & 255) + ((v >>> 8) & 255) + (v & 255)) & 255) ^ 0xa5;
    for (let i = 7; i >= 0; i--) bits.push((check >> i) & 1);
    for (let r = 0; r < C.rows; r++)
      for (let k = 0; k < C.cols; k++) {
        g.fillStyle = bits[r * C.cols + k] ? 'rgb(235,235,235)' : 'rgb(16,16,16)';
        g.fillRect(k * bw, r * bh, bw, bh);
      }
  };
  draw();
  window.clockTimer = setInterval(draw, 40);
  return c;
}
