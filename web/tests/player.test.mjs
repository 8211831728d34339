// The player's pure parts, without a browser: codec strings read from real fMP4 init
// segments made by ffmpeg (checked against ffprobe), the init segment's end in a
// stream, and playlist parsing.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { codecsFromInit, initSegmentEnd, parsePlaylist, MODES, pickMode, mediaSourceClass } from '../assets/player.js';

const haveFfmpeg = spawnSync('ffmpeg', ['-version']).status === 0 && spawnSync('ffprobe', ['-version']).status === 0;

/** A fragmented MP4 of one second made by ffmpeg with the given codec options. */
function fmp4(args) {
  const r = spawnSync('ffmpeg', ['-v', 'error', '-f', 'lavfi', '-i', 'testsrc2=size=320x180:rate=25', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=44100',
    '-t', '1', ...args, '-movflags', 'frag_keyframe+empty_moov+default_base_moof', '-f', 'mp4', 'pipe:1'], { maxBuffer: 64 << 20 });
  assert.equal(r.status, 0, String(r.stderr));
  return new Uint8Array(r.stdout);
}

/** ffprobe's profile and level of the video stream in `bytes`. */
function probe(bytes) {
  const r = spawnSync('ffprobe', ['-v', 'error', '-select_streams', 'v:0', '-show_entries', 'stream=profile,level', '-of', 'json', '-i', 'pipe:0'], { input: Buffer.from(bytes) });
  return JSON.parse(String(r.stdout)).streams[0];
}

const PROFILE_IDC = { Baseline: 0x42, 'Constrained Baseline': 0x42, Main: 0x4d, High: 0x64 };

for (const [name, args] of [
  ['baseline', ['-c:v', 'libx264', '-profile:v', 'baseline', '-level', '3.0', '-pix_fmt', 'yuv420p', '-c:a', 'aac']],
  ['high', ['-c:v', 'libx264', '-profile:v', 'high', '-level', '4.1', '-pix_fmt', 'yuv420p', '-c:a', 'aac']],
  ['video only', ['-c:v', 'libx264', '-pix_fmt', 'yuv420p', '-an']],
]) {
  test(`codec string of a real init segment: ${name}`, { skip: !haveFfmpeg && 'no ffmpeg' }, () => {
    const bytes = fmp4(args);
    const end = initSegmentEnd(bytes);
    assert.ok(end > 0 && end < bytes.length, 'the init segment ends before the first fragment');
    assert.equal(initSegmentEnd(bytes.subarray(0, end - 1)), 0, 'an incomplete init segment is not taken');
    const codecs = codecsFromInit(bytes.subarray(0, end)).split(',');
    const p = probe(bytes);
    const m = /^avc1\.([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/.exec(codecs[0]);
    assert.ok(m, codecs[0]);
    assert.equal(parseInt(m[1], 16), PROFILE_IDC[p.profile], `profile ${p.profile}`);
    assert.equal(parseInt(m[3], 16), p.level, 'level');
    if (name === 'video only') assert.equal(codecs.length, 1);
    else assert.equal(codecs[1], 'mp4a.40.2', 'AAC-LC');
  });
}

test('garbage is not an init segment and gets the default codecs', () => {
  const junk = new Uint8Array(64).fill(7);
  assert.equal(initSegmentEnd(junk), 0);
  assert.equal(codecsFromInit(junk), 'avc1.42E01E,mp4a.40.2');
  assert.equal(initSegmentEnd(new Uint8Array(0)), 0);
});

test('playlists: media and multivariant', () => {
  const media = parsePlaylist(`#EXTM3U
#EXT-X-VERSION:9
#EXT-X-TARGETDURATION:2
#EXT-X-MEDIA-SEQUENCE:41
#EXT-X-MAP:URI="abc/init.mp4"
#EXT-X-PART:DURATION=0.5,URI="abc/41.0.m4s"
#EXTINF:2.000,
abc/41.m4s
#EXTINF:2.000,
abc/42.m4s
#EXT-X-PRELOAD-HINT:TYPE=PART,URI="abc/43.0.m4s"
`);
  assert.deepEqual(media, { variants: [], segments: ['abc/41.m4s', 'abc/42.m4s'], map: 'abc/init.mp4', mediaSequence: 41, targetDuration: 2, ended: false });
  const vod = parsePlaylist('#EXTM3U\r\n#EXT-X-MAP:URI="init.mp4"\r\n#EXTINF:4,\r\n0.m4s\r\n#EXT-X-ENDLIST\r\n');
  assert.equal(vod.ended, true);
  assert.deepEqual(vod.segments, ['0.m4s']);
  const master = parsePlaylist('#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=800000,CODECS="avc1.42c01e"\nlow/index.m3u8\n');
  assert.deepEqual(master.variants, ['low/index.m3u8']);
});

test('live mode: WHEP first where it works, then MediaSource (or ManagedMediaSource), native HLS only without it; ?player= forces', () => {
  const saved = { ms: globalThis.MediaSource, mms: globalThis.ManagedMediaSource };
  const chromium = { video: { canPlayType: () => 'maybe' } }; // Chromium says "maybe" to HLS
  const noHls = { video: { canPlayType: () => '' } };
  try {
    globalThis.MediaSource = class {};
    delete globalThis.ManagedMediaSource;
    assert.equal(pickMode(MODES, chromium, null).name, 'mse', 'MediaSource wins over native HLS');
    assert.equal(pickMode(MODES, chromium, 'hls').name, 'hls', '?player=hls forces native HLS');
    assert.equal(pickMode(MODES, chromium, 'bogus').name, 'mse', 'an unknown mode is ignored');
    delete globalThis.MediaSource;
    globalThis.ManagedMediaSource = class {};
    assert.equal(mediaSourceClass(), globalThis.ManagedMediaSource, 'iOS 17.1+: the managed one');
    assert.equal(pickMode(MODES, chromium, null).name, 'mse');
    delete globalThis.ManagedMediaSource;
    assert.equal(pickMode(MODES, chromium, null).name, 'hls', 'no MediaSource at all: native HLS');
    assert.equal(pickMode(MODES, chromium, 'mse').name, 'hls', 'forcing MediaSource where there is none falls back');
    assert.equal(pickMode(MODES, noHls, null), null, 'nothing plays');
    // The WebRTC hook: a mode put first wins when available, and is skipped when not.
    const whep = (ok) => [{ name: 'whep', available: () => ok, play: () => {} }, ...MODES];
    globalThis.MediaSource = class {};
    assert.equal(pickMode(whep(true), chromium, null).name, 'whep');
    assert.equal(pickMode(whep(false), chromium, null).name, 'mse');
    // The real WHEP mode: where the browser has RTCPeerConnection and the server listed
    // a WHEP endpoint for the stream, until WHEP failed for it; `?player=whep` insists.
    globalThis.RTCPeerConnection = class {};
    const viewer = (o) => ({ ...chromium, live: 's', ...o });
    assert.equal(pickMode(MODES, viewer({ whepOffered: true }), null).name, 'whep');
    assert.equal(pickMode(MODES, viewer({ whepOffered: false }), null).name, 'mse', 'no WHEP endpoint listed');
    assert.equal(pickMode(MODES, viewer({ whepOffered: true, whepFailed: 's' }), null).name, 'mse', 'WHEP failed for this stream');
    assert.equal(pickMode(MODES, viewer({ whepOffered: true, whepFailed: 'other' }), null).name, 'whep');
    assert.equal(pickMode(MODES, viewer({ whepOffered: true }), 'mse').name, 'mse', '?player=mse');
    assert.equal(pickMode(MODES, viewer({ wantsWhep: true, whepFailed: 's' }), 'whep').name, 'whep', '?player=whep');
    delete globalThis.RTCPeerConnection;
    assert.equal(pickMode(MODES, viewer({ whepOffered: true }), null).name, 'mse', 'no RTCPeerConnection');
  } finally {
    delete globalThis.RTCPeerConnection;
    if (saved.ms) globalThis.MediaSource = saved.ms;
    else delete globalThis.MediaSource;
    if (saved.mms) globalThis.ManagedMediaSource = saved.mms;
    else delete globalThis.ManagedMediaSource;
  }
});
