// Glass-to-decoder latency of OnAir's outputs without a browser (BENCHMARKS.md, "Web
// player: glass-to-glass"): the same clock as the browser test, drawn in Node and
// pushed by ffmpeg over RTMP, read back by a second ffmpeg decoding a play URL.
//   node latency-probe.mjs PUSH_URL PLAY_URL [SECONDS]
//   PLAY_URL: rtmp://HOST:1935/live/S, http://HOST:8080/live/S.mp4 or .flv
//   NOAUDIO=1: push video only; AUDIO=lavfi: ffmpeg's -re tone; DELAY=MS: start MS after ffmpeg.
// The decoding ffmpeg adds its own buffering (HTTP-FLV reads worse here than RTMP), so
// compare like with like; the browser test measures what viewers get.
import { spawn } from 'node:child_process';
const [push, play, secs = '12'] = process.argv.slice(2);
const W = 320, H = 180, COLS = 8, ROWS = 5;
function frame(ms) {
  const v = ms >>> 0; const bits = [];
  for (let i = 31; i >= 0; i--) bits.push((v >>> i) & 1);
  const check = (((v >>> 24) + ((v >>> 16) & 255) + ((v >>> 8) & 255) + (v & 255)) & 255) ^ 0xa5;
  for (let i = 7; i >= 0; i--) bits.push((check >> i) & 1);
  const buf = Buffer.alloc(W * H * 3);
  for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) buf.fill(bits[Math.floor(y / (H / ROWS)) * COLS + Math.floor(x / (W / COLS))] ? 235 : 16, (y * W + x) * 3, (y * W + x) * 3 + 3);
  return buf;
}
// Audio: a 440 Hz tone made here too, 40 ms of it with every picture, into a second pipe
// (fd 3), so both streams are timed by the same clock as a real encoder's would be.
// AUDIO=lavfi uses ffmpeg's own `-re` sine instead (which holds the video back).
const mode = process.env.NOAUDIO ? 'none' : process.env.AUDIO === 'lavfi' ? 'lavfi' : 'pipe';
const audio = { none: [], lavfi: ['-re', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=44100'], pipe: ['-f', 's16le', '-ar', '44100', '-ac', '1', '-i', 'pipe:3'] }[mode];
const ff = spawn('ffmpeg', ['-v', 'error', '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-s', `${W}x${H}`, '-r', '25', '-i', 'pipe:0', ...audio,
  '-c:v', 'libx264', '-preset', 'ultrafast', '-tune', 'zerolatency', '-g', '25', '-pix_fmt', 'yuv420p', '-crf', '18', ...(audio.length ? ['-c:a', 'aac'] : ['-an']), '-f', 'flv', push], { stdio: ['pipe', 'ignore', 'inherit', 'pipe'] });
ff.stdio[3].on('error', () => {});
let sample = 0;
function tone() {
  const b = Buffer.alloc(1764 * 2);
  for (let i = 0; i < 1764; i++, sample++) b.writeInt16LE(Math.round(Math.sin((2 * Math.PI * 440 * sample) / 44100) * 8000), i * 2);
  return b;
}
ff.stdin.on('error', () => {});
if (process.env.DELAY) await new Promise((r) => setTimeout(r, Number(process.env.DELAY)));
const t0 = Date.now(); let n = 0; let timer;
const tick = () => { ff.stdin.write(frame(Date.now())); if (mode === 'pipe') ff.stdio[3].write(tone()); n++; timer = setTimeout(tick, Math.max(0, t0 + n * 40 - Date.now())); };
tick();
await new Promise((r) => setTimeout(r, 3000));
const dec = spawn('ffmpeg', ['-v', 'error', '-fflags', 'nobuffer', '-flags', 'low_delay', '-probesize', '32768', '-analyzeduration', '0', '-i', play, '-an', '-f', 'rawvideo', '-pix_fmt', 'gray', '-s', `${W}x${H}`, 'pipe:1'], { stdio: ['ignore', 'pipe', 'inherit'] });
let acc = Buffer.alloc(0); const lat = []; let bad = 0; const start = Date.now();
dec.stdout.on('data', (d) => {
  acc = Buffer.concat([acc, d]);
  while (acc.length >= W * H) {
    const f = acc.subarray(0, W * H); acc = acc.subarray(W * H);
    const now = Date.now();
    const bits = [];
    for (let r = 0; r < ROWS; r++) for (let k = 0; k < COLS; k++) bits.push(f[Math.round(r * 36 + 18) * W + Math.round(k * 40 + 20)] > 125 ? 1 : 0);
    let v = 0; for (let i = 0; i < 32; i++) v = (v * 2 + bits[i]) >>> 0;
    let c = 0; for (let i = 32; i < 40; i++) c = c * 2 + bits[i];
    if (c !== ((((v >>> 24) + ((v >>> 16) & 255) + ((v >>> 8) & 255) + (v & 255)) & 255) ^ 0xa5)) { bad++; continue; }
    if (now - start > 3000) lat.push(((now >>> 0) - v + 2 ** 32) % 2 ** 32);
  }
});
await new Promise((r) => setTimeout(r, (Number(secs) + 3) * 1000));
dec.kill('SIGKILL'); clearTimeout(timer); ff.stdin.end(); ff.stdio[3].end(); ff.kill('SIGINT');
lat.sort((a, b) => a - b);
const p = (q) => lat[Math.floor((lat.length - 1) * q)];
console.log(`${play}: ${lat.length} frames, ${bad} unreadable; median ${p(0.5)} ms, p10 ${p(0.1)}, p90 ${p(0.9)}, min ${lat[0]}, max ${lat.at(-1)}`);
process.exit(0);
