// The watch page's player. Live, in this order of preference:
//  1. WebRTC (WHEP, `POST /whep/{stream}`): sub-second glass-to-glass, the server's GOP
//     cache (or a PLI to a WebRTC publisher) gives the first keyframe at once. Taken
//     when this browser has RTCPeerConnection and the server lists a WHEP endpoint for
//     the stream (`whep` in `/api/v1/streams`). A UDP port behind a firewall must not
//     leave viewers with nothing: when WHEP fails, or shows no frame within
//     WHEP_FIRST_FRAME_MS, the player falls back to the next mode for that stream.
//  2. MediaSource (or Safari's ManagedMediaSource) fed with OnAir's live fMP4 stream
//     (`/live/{stream}.mp4`), kept near the live edge (~0.7 s glass-to-glass in
//     Chromium, see BENCHMARKS.md "Web player: glass-to-glass"); when that stream is
//     not there, MediaSource fed from the fMP4 HLS playlist.
//  3. The browser's own HLS (`/live/{stream}.m3u8`) only where there is no MediaSource
//     at all (iOS Safari before 17.1): whole segments, several seconds behind.
// `?player=whep|mse|hls` in the page URL forces one (a forced WHEP retries WHEP).
// A latency figure (`#playerLatency` when the page has one, and `player.latency`):
// WebRTC's own estimate (jitter buffer delay + RTT/2, from getStats) or, for
// MediaSource, how far playback is behind the end of what is buffered.
// Replay: the recording's VOD HLS the same way (MediaSource first).

const HLS_MIME = 'application/vnd.apple.mpegurl';
/** Further behind the live edge than this and we jump forward. */
const MAX_LATENCY_S = 3;
/** Where we land after a jump, behind the edge. */
const TARGET_LATENCY_S = 0.8;
/**
 * The least media kept ahead of playback. Parts arrive whole (0.5 s of media at once),
 * so what is ahead swings between its low point, just before a part lands, and that
 * plus a part. When the low point over the last CUSHION_WINDOW_MS stays above this, we
 * are later than we need to be: play a little faster until it is not. (A fixed
 * threshold on the current distance let playback sit ~0.9 s behind for good when it
 * happened to start there.)
 */
const CUSHION_S = 0.25;
const CUSHION_WINDOW_MS = 3000;
/** Further behind than the cushion by this much: catch up faster. */
const FAR_S = 0.5;
const FAR_RATE = 1.1;
/**
 * The stream starts at its last keyframe, up to a GOP (1-2 s) old. During the first
 * START_MS, when more than START_FAR_S is buffered ahead, playback skips to
 * START_BEHIND_S before the edge, as far behind as Chromium settles with audio anyway
 * (seeking closer only made it wait there, with a stall).
 */
const START_MS = 2500;
const START_FAR_S = 1.0;
const START_BEHIND_S = 0.7;
/** How often the edge is checked. */
const EDGE_TICK_MS = 250;
/** The faster rate: 5 % (10 % when far) is hardly audible (browsers keep the pitch). */
const CATCHUP_RATE = 1.05;

/** WHEP must show a first frame within this, or the player falls back. */
const WHEP_FIRST_FRAME_MS = 4000;
/** How often the latency figure is refreshed. */
const LATENCY_TICK_MS = 1000;

/** The MediaSource constructor this browser has: standard, else Safari's managed one. */
export function mediaSourceClass() {
  return globalThis.MediaSource ?? globalThis.ManagedMediaSource ?? null;
}

/**
 * The live playback modes, best first. `available(player)` says whether this browser
 * (and server) can use it; the first available wins unless the URL forces one.
 * WHEP goes here as `{ name: 'whep', available: …, play: (p, stream, gen) => … }` before
 * `mse` when the server offers it (the room or `/live/{s}.json` will say so).
 */
export const MODES = [
  { name: 'whep', available: (p) => !!globalThis.RTCPeerConnection && (p.wantsWhep === true || (!!p.whepOffered && p.whepFailed !== p.live)), play: (p, stream, gen) => p.playWhep(stream, gen) },
  { name: 'mse', available: () => !!mediaSourceClass(), play: (p, stream, gen) => p.playMse(stream, gen) },
  { name: 'hls', available: (p) => !!p.video.canPlayType(HLS_MIME), play: (p, stream, gen) => p.playNativeHls(stream, gen) },
];

/**
 * The live mode to use: the forced one (`?player=NAME`) when available, else the first
 * available. Pure, for tests. @param {{name: string, available: (p: any) => boolean}[]} modes
 * @param {any} player @param {string|null} forced
 */
export function pickMode(modes, player, forced) {
  const f = forced && modes.find((m) => m.name === forced);
  if (f && f.available(player)) return f;
  return modes.find((m) => m.available(player)) ?? null;
}

export class Player {
  /**
   * @param {HTMLVideoElement} video @param {(status: string) => void} [onStatus]
   * @param {{base?: string}} [opts] `base`: the OnAir server (`https://host:8080`) when the
   * page is on another site; default the page's own origin.
   */
  constructor(video, onStatus = () => {}, opts = {}) {
    this.video = video;
    this.base = (opts.base ?? '').replace(/\/$/, '');
    this.onStatus = onStatus;
    this.gen = 0;
    this.retryTimer = null;
    this.edgeTimer = null;
    this.abort = null;
    /** Ask the stream list before requesting a stream (see `onAir`); off on media edges. */
    this.checkStreams = true;
    /** Recent decisions and errors, for debugging (`player.log`). */
    this.log = [];
    /** `?player=whep`: WHEP even where it failed (see MODES). */
    this.wantsWhep = typeof location !== 'undefined' && new URLSearchParams(location.search).get('player') === 'whep';
    /** Whether the server lists a WHEP endpoint for the live stream (see `onAir`). */
    this.whepOffered = false;
    /** The stream WHEP failed for: later tries of it take the next mode. */
    this.whepFailed = null;
    /** The latest latency estimate: `{ mode, ms, how }` or null. */
    this.latency = null;
    this.latencyEl = opts.latencyEl ?? globalThis.document?.getElementById?.('playerLatency') ?? null;
    this.latencyTimer = null;
    this.firstFrameMs = null;
    /** The WHEP session: its peer connection and resource URL (DELETEd on reset). */
    this.pc = null;
    this.whepLocation = null;
    /**
     * Manual quality: a rendition name (`360p`) whose stream (`{stream}_360p`) is played
     * instead of the source; null = auto (the source over MediaSource; native HLS gets the
     * multivariant playlist `/live/{stream}/master.m3u8` and switches by itself).
     */
    this.quality = null;
  }

  note(msg) {
    this.log.push(`${new Date().toISOString().slice(11, 23)} ${msg}`);
    if (this.log.length > 50) this.log.shift();
  }

  /** The forced mode from the page URL (`?player=mse|hls`), or null. */
  forcedMode() {
    return new URLSearchParams(location.search).get('player');
  }

  /**
   * Plays the live stream `stream`, retrying until `stop`. A stream this server does
   * not have (a room set live by hand, a publisher that just left) is not requested:
   * that would be a 404 in the console every retry. We wait for it in the stream list
   * (quietly, every 10 s) or for `playLive` again (the page calls it on the room's
   * `stream` event). @param {string} stream
   */
  async playLive(stream) {
    const gen = this.reset();
    this.live = stream;
    if (this.quality && !stream.endsWith(`_${this.quality}`)) stream = `${stream}_${this.quality}`;
    if (!pickMode(MODES, this, this.forcedMode())) {
      this.onStatus('This browser cannot play live video (no MediaSource, no HLS).');
      return;
    }
    if (!(await this.onAir(stream))) {
      if (gen !== this.gen) return;
      this.note(`live ${stream}: not on this server yet`);
      this.onStatus('waiting for the stream…');
      this.retry(gen, () => this.playLive(stream), 10000);
      return;
    }
    if (gen !== this.gen) return;
    // Picked after `onAir`: whether the stream has a WHEP endpoint is known only now.
    const mode = pickMode(MODES, this, this.forcedMode());
    this.mode = mode.name;
    this.watchLatency(gen);
    mode.play(this, stream, gen);
  }

  /** WHEP did not work for `stream`: note why and go on with the next mode. */
  whepFallback(gen, stream, why) {
    if (gen !== this.gen) return;
    this.note(`WHEP: ${why}`);
    if (this.wantsWhep) {
      this.onStatus('waiting for the stream…');
      this.retry(gen, () => this.playLive(stream));
      return;
    }
    this.whepFailed = stream;
    this.playLive(stream);
  }

  /** Refreshes `latency` (and the page's figure) every LATENCY_TICK_MS while `gen` plays. */
  watchLatency(gen) {
    clearInterval(this.latencyTimer);
    let last = null;
    this.latencyTimer = setInterval(async () => {
      if (gen !== this.gen) return;
      let est = null;
      if (this.mode === 'whep' && this.pc) {
        const r = await whepLatency(this.pc, last).catch(() => null);
        if (r) {
          last = r.totals;
          if (r.ms != null) est = { mode: 'whep', ms: r.ms, how: 'WebRTC jitter buffer + RTT/2' };
        }
      } else if (this.live) {
        const v = this.video;
        const b = v.buffered;
        if (b.length && v.currentTime > 0) est = { mode: this.mode, ms: Math.round((b.end(b.length - 1) - v.currentTime) * 1000), how: 'behind the buffered edge' };
      }
      if (gen !== this.gen) return;
      this.latency = est;
      if (this.latencyEl) {
        this.latencyEl.textContent = est ? `${this.mode === 'whep' ? 'WebRTC' : this.mode.toUpperCase()} · ${est.ms < 1000 ? `${est.ms} ms` : `${(est.ms / 1000).toFixed(1)} s`}` : '';
        this.latencyEl.title = est ? `latency estimate: ${est.how}` : '';
      }
    }, LATENCY_TICK_MS);
  }

  /**
   * Whether this server has the stream now (`GET /api/v1/streams` answers 200 however
   * many there are). Media edges start a pull on the first request for a stream they
   * do not have yet, so there the page sets `checkStreams = false` and we just ask.
   * @param {string} stream
   */
  async onAir(stream) {
    this.whepOffered = false;
    if (!this.checkStreams) return true;
    try {
      const r = await fetch(`${this.base}/api/v1/streams`, { cache: 'no-store' });
      if (!r.ok) return true;
      const found = ((await r.json()).streams ?? []).find((s) => s.name === stream);
      this.whepOffered = !!found?.whep;
      return !!found;
    } catch {
      return true;
    }
  }

  /** The browser's own HLS player (only where there is no MediaSource). */
  playNativeHls(stream, gen) {
    this.note(`live ${stream}: native HLS`);
    const enc = encodeURIComponent(stream);
    this.video.src = this.quality ? `${this.base}/live/${enc}.m3u8` : `${this.base}/live/${enc}/master.m3u8`;
    this.video.addEventListener('error', () => this.retry(gen, () => this.playLive(stream)), { once: true });
    // The browser's own HLS player keeps its own distance to the live edge (seeking
    // towards it is ignored, a faster playbackRate breaks it), so no edge keeping here.
    this.autoplay();
  }

  /**
   * WebRTC (WHEP): one peer connection receiving H.264 + Opus. Falls back (see
   * `whepFallback`) when the offer is refused, the connection fails, or no frame shows
   * within WHEP_FIRST_FRAME_MS. @param {string} stream @param {number} gen
   */
  async playWhep(stream, gen) {
    this.onStatus('connecting');
    this.note(`live ${stream}: WebRTC (WHEP)`);
    const started = performance.now();
    /** WHEP POST → first frame shown, ms (null until then). */
    this.firstFrameMs = null;
    try {
      const pc = new RTCPeerConnection();
      this.pc = pc;
      pc.addTransceiver('video', { direction: 'recvonly' });
      pc.addTransceiver('audio', { direction: 'recvonly' });
      const media = new MediaStream();
      pc.addEventListener('track', (e) => media.addTrack(e.track));
      await pc.setLocalDescription(await pc.createOffer());
      const res = await fetch(`${this.base}/whep/${encodeURIComponent(stream)}`, {
        method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: pc.localDescription.sdp,
      });
      const answer = await res.text();
      if (res.status !== 201) throw Object.assign(new Error(`WHEP ${res.status}: ${answer}`), { status: res.status });
      if (gen !== this.gen) return;
      this.whepLocation = new URL(res.headers.get('location'), this.base || location.href).href;
      await pc.setRemoteDescription({ type: 'answer', sdp: answer });
      pc.addEventListener('connectionstatechange', () => {
        if (gen !== this.gen || !['failed', 'closed'].includes(pc.connectionState)) return;
        this.note(`WHEP ${pc.connectionState}`);
        // Once frames have shown, a drop is the stream's (retry WHEP); before, WHEP's.
        if (this.firstFrameMs != null) {
          this.onStatus('waiting for the stream…');
          this.retry(gen, () => this.playLive(stream));
        } else this.whepFallback(gen, stream, `connection ${pc.connectionState}`);
      });
      const v = this.video;
      const shown = () => {
        if (gen !== this.gen || this.firstFrameMs != null) return;
        this.firstFrameMs = Math.round(performance.now() - started);
        this.note(`WHEP first frame after ${this.firstFrameMs} ms`);
      };
      if (v.requestVideoFrameCallback) v.requestVideoFrameCallback(shown);
      else v.addEventListener('loadeddata', shown, { once: true });
      setTimeout(() => {
        if (gen === this.gen && this.firstFrameMs == null) this.whepFallback(gen, stream, `no frame within ${WHEP_FIRST_FRAME_MS} ms`);
      }, WHEP_FIRST_FRAME_MS);
      v.srcObject = media;
      this.autoplay();
    } catch (e) {
      if (gen !== this.gen) return;
      this.whepFallback(gen, stream, `failed: ${e.message || e}`);
    }
  }

  /** Live fMP4 over MediaSource; the fMP4 HLS playlist over MediaSource if that fails with 404. */
  playMse(stream, gen) {
    const enc = encodeURIComponent(stream);
    this.onStatus('connecting');
    this.note(`live ${stream}: fMP4 over MediaSource`);
    this.fmp4(gen, `${this.base}/live/${enc}.mp4`, stream)
      .catch((e) => {
        if (gen !== this.gen) return;
        this.note(`fMP4 failed: ${e.message || e}; trying HLS over MediaSource`);
        if (e && e.status === 404) return this.hlsMse(gen, `${this.base}/live/${enc}.m3u8`, true);
        throw e;
      })
      .catch((e) => {
        if (gen !== this.gen) return;
        this.note(`live failed: ${e.message || e}`);
        this.onStatus('waiting for the stream…');
        this.retry(gen, () => this.playLive(stream));
      });
  }

  /** Plays a recording (VOD HLS URL): MediaSource where there is one, else native HLS. @param {string} url */
  playReplay(url) {
    const gen = this.reset();
    this.live = null;
    if (url.startsWith('/')) url = this.base + url;
    const forced = this.forcedMode();
    const native = forced === 'hls' ? !!this.video.canPlayType(HLS_MIME) : !mediaSourceClass();
    this.note(`replay ${url}: ${native ? 'native HLS' : 'HLS over MediaSource'}`);
    if (native) {
      this.video.src = url;
      this.autoplay();
      return;
    }
    this.hlsMse(gen, url, false).catch((e) => {
      if (gen === this.gen) this.onStatus(`replay failed: ${e.message || e}`);
    });
  }

  /** Stops playback and every retry. */
  stop() {
    this.reset();
    this.live = null;
  }

  reset() {
    this.gen += 1;
    clearTimeout(this.retryTimer);
    clearInterval(this.edgeTimer);
    clearInterval(this.latencyTimer);
    this.latency = null;
    if (this.latencyEl) this.latencyEl.textContent = '';
    this.abort?.abort();
    this.abort = null;
    if (this.pc) {
      this.pc.close();
      this.pc = null;
      if (this.whepLocation) fetch(this.whepLocation, { method: 'DELETE', keepalive: true }).catch(() => {});
      this.whepLocation = null;
    }
    const v = this.video;
    if (v.srcObject) v.srcObject = null;
    v.pause();
    v.removeAttribute('src');
    v.load();
    return this.gen;
  }

  retry(gen, fn, ms = 2000) {
    if (gen !== this.gen) return;
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => gen === this.gen && fn(), ms);
  }

  autoplay() {
    // Browsers allow autoplay only muted; the page offers an unmute button.
    this.video.muted = true;
    this.video.play().then(() => this.onStatus('playing'), () => this.onStatus('click to play'));
  }

  /** A MediaSource attached to the video, open. */
  async openSource() {
    const MS = mediaSourceClass();
    const ms = new MS();
    // Safari's ManagedMediaSource plays only with remote playback (AirPlay) off or an
    // AirPlay alternative; we have none for a blob URL.
    if (MS !== globalThis.MediaSource) this.video.disableRemotePlayback = true;
    this.video.src = URL.createObjectURL(ms);
    await new Promise((r) => ms.addEventListener('sourceopen', r, { once: true }));
    return ms;
  }

  /** Live fMP4 over one long HTTP response. @param {number} gen @param {string} url @param {string} stream */
  async fmp4(gen, url, stream) {
    this.abort = new AbortController();
    const res = await fetch(url, { signal: this.abort.signal });
    if (!res.ok) throw Object.assign(new Error(`HTTP ${res.status}`), { status: res.status });
    const reader = res.body.getReader();
    // The codec string: a header when the server sends one, else the stream's JSON,
    // else read from the init segment itself.
    let codecs = res.headers.get('x-codecs') || codecsFromType(res.headers.get('content-type')) || '';
    let head = new Uint8Array(0);
    let initEnd = 0;
    while (!initEnd) {
      const { done, value } = await reader.read();
      if (done) throw new Error('stream ended before its init segment');
      head = concat(head, value);
      initEnd = initSegmentEnd(head);
      if (head.length > 4 << 20) throw new Error('no init segment in the first 4 MiB');
    }
    if (!codecs) codecs = await codecsFromJson(this.base, stream);
    if (!codecs) codecs = codecsFromInit(head.subarray(0, initEnd));
    const mime = `video/mp4; codecs="${codecs}"`;
    this.note(`fMP4 ${mime}, init ${initEnd} bytes`);
    if (!mediaSourceClass().isTypeSupported(mime)) throw new Error(`unsupported: ${mime}`);
    if (gen !== this.gen) return;
    const ms = await this.openSource();
    const sb = ms.addSourceBuffer(mime);
    sb.mode = 'segments';
    const failed = this.failure(gen);
    const q = new AppendQueue(sb);
    q.push(head);
    this.autoplay();
    this.keepLiveEdge(gen, sb);
    for (;;) {
      const { done, value } = await Promise.race([reader.read(), failed]);
      if (gen !== this.gen) return;
      if (done) throw new Error('live stream ended');
      q.push(value);
      await q.drained(8);
    }
  }

  /** fMP4 HLS through MediaSource (live: playlist reloads). @param {number} gen @param {string} url @param {boolean} live */
  async hlsMse(gen, url, live) {
    let pl = await fetchPlaylist(url);
    if (pl.variants.length) {
      url = new URL(pl.variants[0], new URL(url, location.href)).href;
      pl = await fetchPlaylist(url);
    }
    if (!pl.map) throw new Error('this playlist is not fMP4 (no EXT-X-MAP); this browser has no native HLS');
    const base = new URL(url, location.href);
    const init = await fetchBytes(new URL(pl.map, base).href);
    const codecs = codecsFromInit(init);
    const mime = `video/mp4; codecs="${codecs}"`;
    if (!mediaSourceClass().isTypeSupported(mime)) throw new Error(`unsupported: ${mime}`);
    if (gen !== this.gen) return;
    const ms = await this.openSource();
    const sb = ms.addSourceBuffer(mime);
    const q = new AppendQueue(sb);
    q.push(init);
    this.autoplay();
    if (live) this.keepLiveEdge(gen, sb);
    let next = live ? Math.max(pl.mediaSequence, pl.mediaSequence + pl.segments.length - 3) : pl.mediaSequence;
    for (;;) {
      for (let i = 0; i < pl.segments.length; i++) {
        const seq = pl.mediaSequence + i;
        if (seq < next) continue;
        const bytes = await fetchBytes(new URL(pl.segments[i], base).href);
        if (gen !== this.gen) return;
        q.push(bytes);
        await q.drained(2);
        next = seq + 1;
      }
      if (pl.ended || !live) break;
      await sleep(Math.max(500, (pl.targetDuration * 1000) / 2));
      if (gen !== this.gen) return;
      pl = await fetchPlaylist(url);
    }
    await q.drained(0);
    while (sb.updating) await new Promise((r) => sb.addEventListener('updateend', r, { once: true }));
    if (ms.readyState === 'open' && gen === this.gen) ms.endOfStream();
  }

  /** Rejects when the video element reports a decode error (a dead MediaSource). */
  failure(gen) {
    return new Promise((_, reject) => {
      this.video.addEventListener('error', () => {
        if (gen === this.gen) reject(new Error(`media error: ${this.video.error?.message || this.video.error?.code}`));
      }, { once: true });
    });
  }

  /** Jumps to near the live edge when playback falls behind; trims old buffer. */
  keepLiveEdge(gen, sb) {
    clearInterval(this.edgeTimer);
    /** Distances to the buffered edge over the last CUSHION_WINDOW_MS. */
    const recent = [];
    const startUntil = performance.now() + START_MS;
    this.edgeTimer = setInterval(() => {
      if (gen !== this.gen) return;
      const v = this.video;
      const b = v.buffered;
      if (!b.length) return;
      const end = b.end(b.length - 1);
      const behind = end - v.currentTime;
      if (this.live && performance.now() < startUntil && v.readyState >= 2 && behind > START_FAR_S) {
        v.currentTime = end - START_BEHIND_S;
        recent.length = 0;
      } else if (behind > MAX_LATENCY_S || v.currentTime < b.start(0)) {
        v.currentTime = Math.max(b.start(b.length - 1), end - TARGET_LATENCY_S);
        recent.length = 0;
      }
      // Drift back towards the edge without a jump (a stall, a slow start leave us a bit
      // behind for good otherwise); only live, replays play at their speed.
      else if (this.live) {
        recent.push(behind);
        if (recent.length > CUSHION_WINDOW_MS / EDGE_TICK_MS) recent.shift();
        const full = recent.length >= CUSHION_WINDOW_MS / EDGE_TICK_MS;
        const low = full && !v.paused ? Math.min(...recent) : 0;
        v.playbackRate = low > CUSHION_S + FAR_S ? FAR_RATE : low > CUSHION_S ? CATCHUP_RATE : 1;
      }
      if (v.paused && v.readyState >= 2 && this.live) v.play().catch(() => {});
      if (v.currentTime > 0 && !v.paused) this.onStatus('playing');
      if (!sb.updating && v.currentTime - b.start(0) > 30) {
        try {
          sb.remove(0, v.currentTime - 10);
        } catch {
          /* the buffer changed under us; next tick */
        }
      }
    }, EDGE_TICK_MS);
  }
}

/**
 * WebRTC's estimate of how late the picture is: the video jitter buffer's mean delay
 * over the last interval (`jitterBufferDelay / jitterBufferEmittedCount`, differences
 * against `last`) plus half the round-trip time of the selected candidate pair.
 * @param {RTCPeerConnection} pc @param {{delay: number, count: number}|null} last
 */
export async function whepLatency(pc, last) {
  const stats = await pc.getStats();
  let video = null;
  let rtt = null;
  stats.forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'video') video = s;
    if (s.type === 'candidate-pair' && s.nominated && s.currentRoundTripTime != null) rtt = s.currentRoundTripTime;
  });
  if (!video || !video.jitterBufferEmittedCount) return null;
  const totals = { delay: video.jitterBufferDelay, count: video.jitterBufferEmittedCount };
  const dc = totals.count - (last?.count ?? 0);
  const jb = dc > 0 ? (totals.delay - (last?.delay ?? 0)) / dc : totals.delay / totals.count;
  return { totals, ms: Math.round((jb + (rtt ?? 0) / 2) * 1000) };
}

/** Serializes appends to a SourceBuffer. */
class AppendQueue {
  constructor(sb) {
    this.sb = sb;
    this.q = [];
    this.waiters = [];
    sb.addEventListener('updateend', () => this.pump());
  }
  push(bytes) {
    this.q.push(bytes);
    this.pump();
  }
  pump() {
    if (this.sb.updating) return;
    const next = this.q.shift();
    if (next) {
      try {
        this.sb.appendBuffer(next);
      } catch (e) {
        if (e.name === 'QuotaExceededError') {
          this.q.unshift(next);
          setTimeout(() => this.pump(), 500);
        } else throw e;
      }
      return;
    }
    for (const w of this.waiters.splice(0)) w();
  }
  /** Resolves once at most `n` chunks wait. @param {number} n */
  drained(n) {
    if (this.q.length <= n) return Promise.resolve();
    return new Promise((r) => this.waiters.push(r));
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function concat(a, b) {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

async function fetchBytes(url) {
  const r = await fetch(url);
  if (!r.ok) throw Object.assign(new Error(`HTTP ${r.status} for ${url}`), { status: r.status });
  return new Uint8Array(await r.arrayBuffer());
}

/** A media playlist's parts we use. @param {string} url */
async function fetchPlaylist(url) {
  const r = await fetch(url, { cache: 'no-store' });
  if (!r.ok) throw Object.assign(new Error(`HTTP ${r.status} for ${url}`), { status: r.status });
  return parsePlaylist(await r.text());
}

/** @param {string} text */
export function parsePlaylist(text) {
  const pl = { variants: [], segments: [], map: '', mediaSequence: 0, targetDuration: 2, ended: false };
  const lines = text.split(/\r?\n/).map((l) => l.trim());
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i];
    if (l.startsWith('#EXT-X-STREAM-INF')) {
      const u = lines.slice(i + 1).find((x) => x && !x.startsWith('#'));
      if (u) pl.variants.push(u);
    } else if (l.startsWith('#EXT-X-MAP:')) pl.map = /URI="([^"]+)"/.exec(l)?.[1] ?? '';
    else if (l.startsWith('#EXT-X-MEDIA-SEQUENCE:')) pl.mediaSequence = parseInt(l.split(':')[1], 10) || 0;
    else if (l.startsWith('#EXT-X-TARGETDURATION:')) pl.targetDuration = parseFloat(l.split(':')[1]) || 2;
    else if (l.startsWith('#EXT-X-ENDLIST')) pl.ended = true;
    else if (l.startsWith('#EXTINF')) {
      const u = lines.slice(i + 1).find((x) => x && !x.startsWith('#'));
      if (u) pl.segments.push(u);
    }
  }
  return pl;
}

/** `codecs` parameter of a content type. @param {string|null} t */
function codecsFromType(t) {
  return /codecs="?([^";]+)"?/i.exec(t || '')?.[1] ?? '';
}

/** `/live/{stream}.json`'s codec string, if the server has one. @param {string} base @param {string} stream */
async function codecsFromJson(base, stream) {
  try {
    const r = await fetch(`${base}/live/${encodeURIComponent(stream)}.json`);
    if (!r.ok) return '';
    const j = await r.json();
    if (typeof j.codecs === 'string') return j.codecs;
    if (Array.isArray(j.codecs)) return j.codecs.join(',');
    return codecsFromType(j.mime || j.mimeType || '');
  } catch {
    return '';
  }
}

/** Iterates the boxes in `buf[start, end)`. */
function* boxes(buf, start, end) {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let p = start;
  while (p + 8 <= end) {
    let size = dv.getUint32(p);
    const type = String.fromCharCode(buf[p + 4], buf[p + 5], buf[p + 6], buf[p + 7]);
    let hdr = 8;
    if (size === 1) {
      if (p + 16 > end) return;
      size = dv.getUint32(p + 8) * 2 ** 32 + dv.getUint32(p + 12);
      hdr = 16;
    } else if (size === 0) size = end - p;
    if (size < hdr) return;
    yield { type, start: p, body: p + hdr, end: p + size };
    p += size;
  }
}

/** The end of the init segment (ftyp…moov) once `buf` holds all of it, else 0. @param {Uint8Array} buf */
export function initSegmentEnd(buf) {
  for (const b of boxes(buf, 0, buf.length)) {
    if (b.end > buf.length) return 0;
    if (b.type === 'moov') return b.end;
  }
  return 0;
}

/** RFC 6381 codec strings of the tracks in an init segment. @param {Uint8Array} init */
export function codecsFromInit(init) {
  const out = [];
  const hex = (n) => n.toString(16).padStart(2, '0');
  const walk = (start, end) => {
    for (const b of boxes(init, start, Math.min(end, init.length))) {
      if (['moov', 'trak', 'mdia', 'minf', 'stbl'].includes(b.type)) walk(b.body, b.end);
      else if (b.type === 'stsd') {
        for (const e of boxes(init, b.body + 8, b.end)) {
          if (e.type === 'avc1' || e.type === 'avc3') {
            const avcC = [...boxes(init, e.body + 78, e.end)].find((x) => x.type === 'avcC');
            out.push(avcC ? `${e.type}.${hex(init[avcC.body + 1])}${hex(init[avcC.body + 2])}${hex(init[avcC.body + 3])}` : 'avc1.42E01E');
          } else if (e.type === 'hvc1' || e.type === 'hev1') out.push(`${e.type}.1.6.L93.B0`);
          else if (e.type === 'mp4a') {
            const esds = [...boxes(init, e.body + 28, e.end)].find((x) => x.type === 'esds');
            out.push(`mp4a.40.${esds ? aacObjectType(init, esds.body + 4, esds.end) : 2}`);
          } else if (e.type === 'Opus') out.push('opus');
        }
      }
    }
  };
  walk(0, init.length);
  return out.join(',') || 'avc1.42E01E,mp4a.40.2';
}

/** The AAC audio object type from an esds descriptor chain (2 = AAC-LC if unreadable). */
function aacObjectType(buf, p, end) {
  // ES_Descriptor (0x03) > DecoderConfigDescriptor (0x04) > DecoderSpecificInfo (0x05).
  const readLen = () => {
    let n = 0;
    for (let i = 0; i < 4 && p < end; i++) {
      const c = buf[p++];
      n = (n << 7) | (c & 0x7f);
      if (!(c & 0x80)) break;
    }
    return n;
  };
  while (p < end) {
    const tag = buf[p++];
    const len = readLen();
    if (tag === 0x03) p += 3;
    else if (tag === 0x04) p += 13;
    else if (tag === 0x05) return buf[p] >> 3 || 2;
    else p += len;
  }
  return 2;
}
