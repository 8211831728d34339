// Co-hosting in real time: a guest's camera out over WHIP, the other side in over WHEP.
// The watch page (guest) and the studio (anchor) both use these two calls; the room's
// other viewers watch the server's mix of everybody through the ordinary player.

/** @typedef {{ pc: RTCPeerConnection, stop: () => void }} Session */

/** POSTs an SDP offer; returns the answer and the session's resource URL. */
async function exchange(url, pc) {
  await pc.setLocalDescription(await pc.createOffer());
  const res = await fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: pc.localDescription.sdp });
  const text = await res.text();
  if (res.status !== 201) throw Object.assign(new Error(`${res.status}: ${text.trim()}`), { status: res.status });
  const location = new URL(res.headers.get('location') ?? url, window.location.href).href;
  await pc.setRemoteDescription({ type: 'answer', sdp: text });
  return location;
}

function session(pc, location) {
  let done = false;
  return {
    pc,
    stop() {
      if (done) return;
      done = true;
      pc.close();
      if (location) fetch(location, { method: 'DELETE', keepalive: true }).catch(() => {});
    },
  };
}

/**
 * Publishes camera + microphone to a signed WHIP URL (the `cohost` accept event's
 * `whipUrl`). `onDrop` is called when the connection fails.
 * @returns {Promise<Session & { media: MediaStream }>}
 */
export async function publishCamera(whipUrl, onDrop = () => {}) {
  const media = await navigator.mediaDevices.getUserMedia({
    video: { width: { ideal: 640 }, height: { ideal: 360 }, frameRate: { ideal: 25 } },
    audio: true,
  });
  const pc = new RTCPeerConnection();
  for (const track of media.getTracks()) {
    const t = pc.addTransceiver(track, { direction: 'sendonly' });
    if (track.kind === 'video') {
      const params = t.sender.getParameters();
      params.encodings = [{ maxBitrate: 800_000 }];
      // A new resolution is a new SPS mid-stream: keep the size, drop frames instead.
      params.degradationPreference = 'maintain-resolution';
      await t.sender.setParameters(params).catch(() => {});
    }
  }
  try {
    const location = await exchange(whipUrl, pc);
    const s = session(pc, location);
    pc.addEventListener('connectionstatechange', () => pc.connectionState === 'failed' && onDrop());
    return { ...s, media, stop() { s.stop(); media.getTracks().forEach((t) => t.stop()); } };
  } catch (e) {
    pc.close();
    media.getTracks().forEach((t) => t.stop());
    throw e;
  }
}

/**
 * Plays `stream` over WHEP into `video`, retrying every second while the stream is
 * not published yet (404) until `stop()` is called.
 * @returns {Session}
 */
export function watch(stream, video) {
  let current = null;
  let stopped = false;
  const attempt = async () => {
    if (stopped) return;
    const pc = new RTCPeerConnection();
    pc.addTransceiver('video', { direction: 'recvonly' });
    pc.addTransceiver('audio', { direction: 'recvonly' });
    const ms = new MediaStream();
    pc.addEventListener('track', (e) => {
      ms.addTrack(e.track);
      video.srcObject = ms;
      video.play().catch(() => {});
    });
    try {
      const location = await exchange(`/whep/${encodeURIComponent(stream)}`, pc);
      current = session(pc, location);
      if (stopped) current.stop();
      pc.addEventListener('connectionstatechange', () => {
        if (pc.connectionState === 'failed' || pc.connectionState === 'closed') {
          current?.stop();
          if (!stopped) setTimeout(attempt, 1000);
        }
      });
    } catch {
      pc.close();
      if (!stopped) setTimeout(attempt, 1000);
    }
  };
  attempt();
  return {
    get pc() { return current?.pc ?? null; },
    stop() {
      stopped = true;
      current?.stop();
    },
  };
}

/** The layouts the server composes, with their labels. */
export const LAYOUTS = [['side-by-side', 'Side by side'], ['pip', 'Picture in picture'], ['grid', '2×2 grid']];
