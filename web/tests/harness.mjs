// What the browser tests share: the server binary they run, free ports, starting and
// stopping `onair serve` on a config, Debian's chromium, and going live from the studio.
//
// ONAIR_BIN overrides the binary (default: $CARGO_TARGET_DIR or target, /debug/onair);
// CHROMIUM the browser (default /usr/bin/chromium).

import { spawn } from 'node:child_process';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { createServer } from 'node:net';
import { chromium } from 'playwright-core';

export const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const bin = process.env.ONAIR_BIN || join(process.env.CARGO_TARGET_DIR ? resolve(repo, process.env.CARGO_TARGET_DIR) : join(repo, 'target'), 'debug/onair');

/** Chromium flags for WebRTC tests: a fake camera and microphone, no permission prompt. */
export const FAKE_MEDIA = ['--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream'];

/** A free TCP port on loopback (for listeners the config names). */
export function freePort() {
  return new Promise((ok) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

/**
 * Runs `binary serve --config cfg`. Resolves with `{ server, base }` once the banner says
 * where it listens; `onLine` sees every banner line before that (e.g. to pick up a URL).
 * Fails when the binary exits first or says nothing within 30 s.
 */
export function startOnair(cfg, onLine = () => {}, binary = bin) {
  const server = spawn(binary, ['serve', '--config', cfg], { env: { ...process.env, ONAIR_LOG: 'warn' }, stdio: ['ignore', 'pipe', 'inherit'] });
  const lines = createInterface({ input: server.stdout });
  return new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error('onair did not start within 30 s')), 30000);
    server.once('exit', (code) => fail(new Error(`onair exited with ${code}`)));
    lines.on('line', (l) => {
      onLine(l);
      const m = /^listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(l);
      if (m) {
        clearTimeout(timer);
        ok({ server, base: m[1] });
      }
    });
  });
}

/** SIGTERM and wait for the exit (nothing when it is not running). */
export async function stopOnair(server) {
  if (!server || server.exitCode !== null) return;
  const exited = new Promise((r) => server.once('exit', r));
  server.kill('SIGTERM');
  await exited;
}

/** Debian's chromium, headless, with `args` besides the ones every test needs. */
export function launchChromium(args = []) {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run', '--autoplay-policy=no-user-gesture-required', ...args],
  });
}

/** The demo anchor in `page` goes live from the studio's "Go live from this browser"
 * (WHIP, 360p) on the server at `base`; resolves once the studio says it is connected. */
export async function goLiveFromStudio(page, base) {
  await page.goto(`${base}/studio/demo`);
  await page.click('#demoLogin');
  await page.locator('#console').waitFor({ state: 'visible', timeout: 20000 });
  await page.selectOption('#webSize', '360');
  await page.click('#webLive');
  await page.locator('#webStats', { hasText: 'connected' }).waitFor({ timeout: 20000 });
}
