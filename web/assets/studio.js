// The anchor console /studio/{id}: push address, live state and stream health, chat
// with inline moderation, notice, lottery, co-host requests, statistics.
import { h, $, toast, webConfig, client, loadCreds, saveCreds, credsFromHash, roomIdFromPath, fmtCount, fmtDuration, copy, STATE_LABEL } from '/assets/app.js';
import { broadcastCard } from '/assets/studio-broadcast.js';
import { messageLine, systemLine, appendLine, markRecalled, eventText, toMs } from '/assets/chat.js';
import { monitorPanel } from '/assets/charts.js';
import { watch, LAYOUTS } from '/assets/cohost.js';

const PERMANENT = 4294967295;
const roomId = roomIdFromPath();
const cfg = await webConfig();
const onair = await client();
let room = null;
$('watchLink').href = `/room/${encodeURIComponent(roomId)}`;
document.title = `Studio — ${roomId}`;

onair.on('connection', ({ state }) => {
  $('conn').className = `conn ${state}`;
  $('conn').textContent = state;
  $('reconnecting').classList.toggle('hidden', state !== 'reconnecting');
});
onair.on('kickedOut', ({ message }) => toast(`Logged out: ${message || 'this account logged in elsewhere'}`, 'error'));

// ---- login ----
async function start() {
  let creds = credsFromHash() || loadCreds('studio');
  if (!creds) return showLogin();
  try {
    await onair.login(creds);
    saveCreds('studio', creds);
    const { room: r, history, you } = await onair.join(roomId);
    if (you.role !== 'Owner' && you.role !== 'Admin') {
      toast(`${creds.userId} is not the owner or an admin of this room`, 'error');
      await onair.leave().catch(() => {});
      return showLogin();
    }
    room = r;
    $('login').classList.add('hidden');
    $('console').classList.remove('hidden');
    $('logout').classList.remove('hidden');
    $('chat').replaceChildren(...history.map(line).filter(Boolean));
    renderRoom();
    $('notice').value = room.notification || '';
    $('introduction').value = room.introduction || '';
    loadPush();
    loadChatOverlay();
    broadcastCard(onair, roomId);
    refresh();
    setInterval(refresh, 3000);
  } catch (e) {
    toast(`Login failed: ${e.message}`, 'error');
    saveCreds('studio', null);
    showLogin();
  }
}

function showLogin() {
  $('login').classList.remove('hidden');
  $('console').classList.add('hidden');
  $('demoLogin').classList.toggle('hidden', !cfg.demo || roomId !== cfg.demoRoom);
}

$('demoLogin').addEventListener('click', async () => {
  try {
    saveCreds('studio', await onair.demoGuest({ role: 'anchor' }));
    location.reload();
  } catch (e) {
    toast(e.message, 'error');
  }
});
$('login').addEventListener('submit', (ev) => {
  ev.preventDefault();
  saveCreds('studio', { userId: $('loginUser').value.trim(), userSig: $('loginSig').value.trim() });
  location.reload();
});
$('logout').addEventListener('click', () => {
  saveCreds('studio', null);
  location.reload();
});

// ---- room header and state ----
function renderRoom() {
  $('title').textContent = room.name || room.roomId;
  $('online').textContent = fmtCount(room.online ?? 0);
  $('likes').textContent = fmtCount(room.likes ?? 0);
  const s = room.state || '';
  $('state').className = `badge ${s}`;
  $('state').textContent = STATE_LABEL[s] ?? s;
  $('muteAll').checked = !!room.muteAll;
  $('slow').value = String(room.slowMode ?? 0);
  if (![...$('slow').options].some((o) => o.value === $('slow').value)) $('slow').append(h('option', { text: String(room.slowMode) }));
  for (const b of document.querySelectorAll('[data-state]')) b.classList.toggle('on', b.dataset.state === s);
}

for (const b of document.querySelectorAll('[data-state]')) {
  b.addEventListener('click', async () => {
    try {
      const r = await onair.setState(b.dataset.state, roomId);
      room = { ...room, ...r };
      renderRoom();
    } catch (e) {
      toast(e.status === 404 ? 'Live states are not available on this server yet' : `Cannot switch: ${e.message}`, 'error');
    }
  });
}
$('schedBtn').addEventListener('click', async () => {
  const v = $('schedAt').value;
  if (!v) return;
  try {
    await onair.api('PUT', `/api/v1/rooms/${encodeURIComponent(roomId)}/schedule`, { scheduledAt: Math.floor(new Date(v).getTime() / 1000) });
    toast('Schedule saved');
  } catch (e) {
    toast(e.message, 'error');
  }
});

// ---- push address ----
async function loadPush() {
  const box = $('push');
  try {
    const p = await onair.api('GET', `/api/v1/rooms/${encodeURIComponent(roomId)}/push-url`);
    const field = (k, v, secret = false) => {
      const val = h('span', { class: `mono${secret ? ' secret' : ''}`, text: v });
      box.append(h('span', { class: 'k', text: k }), h('span', { class: 'row' }, val, h('button', { class: 'small', type: 'button', text: 'Copy', onclick: () => copy(v, `${k} copied`) })));
    };
    box.replaceChildren();
    field('Server', p.server);
    field('Stream key', p.streamKey, true);
    field('Full URL', p.url, true);
    box.append(h('span', { class: 'k', text: 'Valid until' }), h('span', { text: new Date(p.expireAt * 1000).toLocaleString() }));
  } catch (e) {
    box.replaceChildren(h('span', { class: 'dim', text: `No push address: ${e.message}` }));
  }
}

// ---- go live from this browser (WHIP) ----
const web = { pc: null, media: null, location: null, timer: null, last: null };

async function webLive() {
  if (web.pc) return;
  $('webLive').disabled = true;
  try {
    const p = await onair.api('GET', `/api/v1/rooms/${encodeURIComponent(roomId)}/push-url`);
    if (!p.whip) throw new Error('this server has no WHIP endpoint');
    const height = Number($('webSize').value);
    const video = { height: { ideal: height }, width: { ideal: Math.round((height * 16) / 9) }, frameRate: { ideal: 30 } };
    const media = $('webSource').value === 'screen'
      ? new MediaStream([...(await navigator.mediaDevices.getDisplayMedia({ video })).getVideoTracks(), ...(await navigator.mediaDevices.getUserMedia({ audio: true })).getAudioTracks()])
      : await navigator.mediaDevices.getUserMedia({ video, audio: true });
    web.media = media;
    $('webPreview').srcObject = media;
    $('webPreview').classList.remove('hidden');
    const pc = new RTCPeerConnection();
    web.pc = pc;
    for (const track of media.getTracks()) {
      const t = pc.addTransceiver(track, { direction: 'sendonly' });
      if (track.kind === 'video') {
        const params = t.sender.getParameters();
        params.encodings = [{ maxBitrate: Number($('webKbps').value) * 1000 }];
        // A new resolution is a new SPS, which LL-HLS/fMP4 (one init segment per
        // publish) cannot follow: let the browser drop frames rather than pixels.
        params.degradationPreference = 'maintain-resolution';
        await t.sender.setParameters(params).catch(() => {});
      }
    }
    await pc.setLocalDescription(await pc.createOffer());
    const res = await fetch(p.whip, { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: pc.localDescription.sdp });
    const text = await res.text();
    if (res.status !== 201) throw new Error(`WHIP ${res.status}: ${text}`);
    web.location = res.headers.get('location');
    await pc.setRemoteDescription({ type: 'answer', sdp: text });
    pc.addEventListener('connectionstatechange', () => {
      if (pc.connectionState === 'failed') {
        toast('The browser stream was cut', 'error');
        webStop();
      }
    });
    $('webLive').classList.add('hidden');
    $('webStop').classList.remove('hidden');
    web.timer = setInterval(webStats, 1000);
    toast('Live from this browser');
  } catch (e) {
    toast(`Cannot go live from the browser: ${e.message}`, 'error');
    webStop();
  } finally {
    $('webLive').disabled = false;
  }
}

async function webStats() {
  if (!web.pc) return;
  let bytes = 0, rtt = null, fps = null, w = null, h2 = null;
  (await web.pc.getStats()).forEach((s) => {
    if (s.type === 'outbound-rtp' && s.kind === 'video') {
      bytes = s.bytesSent ?? 0;
      fps = s.framesPerSecond ?? null;
      w = s.frameWidth ?? null;
      h2 = s.frameHeight ?? null;
    }
    if (s.type === 'candidate-pair' && s.nominated && s.currentRoundTripTime !== undefined) rtt = s.currentRoundTripTime;
  });
  const now = performance.now();
  const kbps = web.last ? Math.round(((bytes - web.last.bytes) * 8) / (now - web.last.at)) : 0;
  web.last = { bytes, at: now };
  const parts = [`${web.pc.connectionState}`, `${kbps} kbit/s`];
  if (w) parts.push(`${w}×${h2}`);
  if (fps) parts.push(`${Math.round(fps)} fps`);
  if (rtt !== null) parts.push(`RTT ${Math.round(rtt * 1000)} ms`);
  $('webStats').textContent = parts.join(' · ');
}

async function webStop() {
  clearInterval(web.timer);
  if (web.location) fetch(web.location, { method: 'DELETE', keepalive: true }).catch(() => {});
  web.pc?.close();
  for (const t of web.media?.getTracks() ?? []) t.stop();
  Object.assign(web, { pc: null, media: null, location: null, timer: null, last: null });
  $('webPreview').srcObject = null;
  $('webPreview').classList.add('hidden');
  $('webStats').textContent = '';
  $('webLive').classList.remove('hidden');
  $('webStop').classList.add('hidden');
}
$('webLive').addEventListener('click', webLive);
$('webStop').addEventListener('click', webStop);
// Leaving the page ends the session at once (else the server notices within 30 s).
window.addEventListener('pagehide', () => { if (web.location) webStop(); });

// ---- chat with moderation ----
function line(m) {
  return messageLine(m, {
    actions: (msg) => {
      if (msg.from === onair.userId) return [act('Recall', () => onair.recall(msg.seq))];
      return [
        act('Mute 10m', () => onair.mute([msg.from], 600), `Muted ${msg.from} for 10 minutes`),
        act('Kick', () => onair.kick([msg.from], 'kicked by the anchor'), `Kicked ${msg.from}`),
        act('Ban', () => onair.ban([msg.from], 86400, 'banned by the anchor'), `Banned ${msg.from} for a day`, 'danger'),
        act('Recall', () => onair.recall(msg.seq)),
      ];
    },
  });
}

function act(label, fn, done = '', cls = '') {
  return h('button', {
    class: `small ${cls}`,
    type: 'button',
    text: label,
    dataset: { act: label.split(' ')[0].toLowerCase() },
    onclick: async () => {
      try {
        await fn();
        if (done) toast(done);
        refreshBlocked();
      } catch (e) {
        toast(e.message, 'error');
      }
    },
  });
}

onair.on('message', (m) => appendLine($('chat'), line(m)));
onair.on('recall', (e) => markRecalled($('chat'), e.seq));
onair.on('event', (e) => {
  const t = eventText(e);
  if (t) appendLine($('chat'), systemLine(t));
  if (e.type === 'muted') appendLine($('chat'), systemLine(e.mutedUntil ? `${e.userId} muted${e.mutedUntil >= PERMANENT ? '' : ` for ${fmtDuration(e.mutedUntil - Date.now() / 1000)}`}` : `${e.userId} can chat again`));
  if (e.type === 'kicked') appendLine($('chat'), systemLine(`${e.userId} removed${e.reason ? ` (${e.reason})` : ''}`));
  if (e.type === 'gift') appendLine($('chat'), systemLine(`Gift: ${e.nick || e.from}: ${e.name || e.giftId} ×${e.combo ?? e.count}${e.end ? ' (combo end)' : ''}`));
  if (e.type === 'lottery') renderLottery(e);
  if (e.type === 'cohost') refreshCohost();
  if (onair.room) {
    room = { ...room, ...onair.room };
    renderRoom();
  }
});
$('composer').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const text = $('input').value.trim();
  if (!text) return;
  $('input').value = '';
  try {
    await onair.sendText(text);
  } catch (e) {
    $('input').value = text;
    toast(e.message, 'error');
  }
});
$('muteAll').addEventListener('change', (e) => onair.muteAll(e.target.checked).catch((err) => toast(err.message, 'error')));
$('slow').addEventListener('change', (e) => onair.slowMode(Number(e.target.value)).catch((err) => toast(err.message, 'error')));

// ---- notice ----
const saveProfile = async (patch, what) => {
  try {
    const r = await onair.api('PATCH', `/api/v1/rooms/${encodeURIComponent(roomId)}`, patch);
    room = { ...room, ...r };
    toast(`${what} saved`);
  } catch (e) {
    toast(e.status === 403 ? `Only an app admin may change the ${what.toLowerCase()} on this server` : e.message, 'error');
  }
};
$('saveNotice').addEventListener('click', () => saveProfile({ notification: $('notice').value }, 'Notice'));
$('saveIntro').addEventListener('click', () => saveProfile({ introduction: $('introduction').value }, 'Introduction'));
$('notice').addEventListener('input', () => ($('noticeLen').textContent = `${new TextEncoder().encode($('notice').value).length} / 300 bytes`));

// ---- lottery ----
let lottery = null;
$('lotteryForm').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const body = { keyword: $('lotKeyword').value.trim(), durationSecs: Number($('lotDuration').value), winners: Number($('lotWinners').value) };
  if (Number($('lotLevel').value) > 0) body.minLevel = Number($('lotLevel').value);
  try {
    renderLottery(await onair.startLottery(body, roomId));
  } catch (e) {
    toast(e.status === 404 ? 'Lotteries are not available on this server yet' : e.message, 'error');
  }
});
let lotteryTimer = null;
function renderLottery(l) {
  lottery = l;
  const box = $('lottery');
  clearInterval(lotteryTimer);
  const status = h('div', { class: 'kv' });
  const running = l.status === 'running' && l.phase !== 'drawn';
  status.dataset.status = running ? 'running' : 'drawn';
  const left = h('span');
  const tick = () => (left.textContent = running ? fmtDuration((toMs(l.endsAt) - Date.now()) / 1000) : 'drawn');
  tick();
  if (running) lotteryTimer = setInterval(tick, 1000);
  status.append(h('span', { class: 'k', text: 'Keyword' }), h('span', { text: l.keyword }), h('span', { class: 'k', text: 'Time left' }), left,
    h('span', { class: 'k', text: 'Entrants' }), h('span', { text: String(l.entrants ?? 0) }));
  if (!running) status.append(h('span', { class: 'k', text: 'Winners' }), h('span', { text: (l.winners ?? []).map((w) => w.nick || w.userId).join(', ') || '—' }),
    h('span', { class: 'k', text: 'Seed' }), h('span', { class: 'mono', text: l.seed ?? '' }));
  box.replaceChildren(status, running ? h('button', { type: 'button', text: 'Draw now', onclick: () => onair.drawLottery(l.lotteryId).then(renderLottery, (e) => toast(e.message, 'error')) }) : '');
}

// ---- periodic: members, blocked users, co-host, stats, stream health ----
async function refresh() {
  refreshMembers();
  refreshBlocked();
  refreshCohost();
  refreshStats();
  refreshHealth();
}

async function refreshMembers() {
  try {
    const r = await onair.members(50);
    $('members').replaceChildren(...(r.members ?? []).map((m) => h('tr', {}, h('td', { text: m.nick || m.userId }), h('td', { class: 'dim mono', text: m.userId }),
      h('td', {}, m.userId === onair.userId ? '' : act('Mute 10m', () => onair.mute([m.userId], 600), `Muted ${m.userId}`), m.userId === onair.userId ? '' : act('Kick', () => onair.kick([m.userId]), `Kicked ${m.userId}`)))));
  } catch { /* keep the last list */ }
}

async function refreshBlocked() {
  try {
    const [mutes, bans] = await Promise.all([onair.mutes(), onair.bans()]);
    const rows = [
      ...(mutes.muted ?? []).map((m) => h('tr', {}, h('td', { text: m.userId }), h('td', { class: 'dim', text: m.mutedUntil >= PERMANENT ? 'muted' : `muted ${fmtDuration(m.mutedUntil - Date.now() / 1000)}` }), h('td', {}, act('Unmute', () => onair.mute([m.userId], 0))))),
      ...(bans.bans ?? []).map((b) => h('tr', {}, h('td', { text: b.userId }), h('td', { class: 'dim', text: `banned${b.reason ? ` (${b.reason})` : ''}` }), h('td', {}, act('Unban', () => onair.unban([b.userId]))))),
    ];
    $('blocked').replaceChildren(...(rows.length ? rows : [h('tr', {}, h('td', { class: 'dim', text: 'nobody' }))]));
  } catch { /* keep */ }
}

/** Nicks of co-host requesters, from their `requested` events (the list has ids only). */
const cohostNames = new Map();
onair.on('cohost', (e) => e.phase === 'requested' && e.nick && cohostNames.set(e.userId, e.nick));

/** Guests on air: a tile each, playing their stream over WHEP (sub-second). */
const guestTiles = new Map();
function syncGuestTiles(picture) {
  const want = new Map((picture ?? []).map((g) => [g.stream, g.userId]));
  for (const [stream, t] of guestTiles) {
    if (!want.has(stream)) {
      t.session.stop();
      t.el.remove();
      guestTiles.delete(stream);
    }
  }
  for (const [stream, user] of want) {
    if (guestTiles.has(stream)) continue;
    const video = h('video', { autoplay: true, playsinline: true, 'data-stream': stream });
    const el = h('figure', { class: 'guest-tile' }, video, h('figcaption', { text: cohostNames.get(user) ?? user }));
    $('guestTiles').append(el);
    guestTiles.set(stream, { el, session: watch(stream, video) });
  }
}
onair.on('cohost', (e) => {
  if (e.picture) syncGuestTiles(e.picture);
  if (e.layout) $('cohostLayout').value = e.layout;
});
$('cohostLayout').replaceChildren(...LAYOUTS.map(([v, label]) => h('option', { value: v, text: label })));
$('cohostLayout').addEventListener('change', async () => {
  try {
    await onair.api('POST', `/api/v1/rooms/${encodeURIComponent(roomId)}/cohost/layout`, { layout: $('cohostLayout').value });
  } catch (e) {
    toast(`Layout not changed: ${e.message}`, 'error');
  }
});
window.guestTiles = guestTiles;

async function refreshCohost() {
  try {
    const r = await onair.api('GET', `/api/v1/rooms/${encodeURIComponent(roomId)}/cohost`);
    const base = `/api/v1/rooms/${encodeURIComponent(roomId)}/cohost/`;
    const call = (u, what) => () => onair.api('POST', `${base}${encodeURIComponent(u)}/${what}`).then(refreshCohost);
    const rows = [
      ...(r.requests ?? []).map((q) => h('tr', {}, h('td', { text: cohostNames.has(q.userId) ? `${cohostNames.get(q.userId)} (${q.userId})` : q.userId }), h('td', {}, act('Accept', call(q.userId, 'accept')), act('Refuse', call(q.userId, 'refuse'))))),
      ...(r.active ?? []).map((a) => h('tr', {}, h('td', { text: `${a.userId} (on air)` }), h('td', {}, act('End', call(a.userId, 'end'))))),
    ];
    $('cohost').replaceChildren(...(rows.length ? rows : [h('tr', {}, h('td', { class: 'dim', text: 'no requests' }))]));
    if (r.layout) $('cohostLayout').value = r.layout;
    syncGuestTiles(r.picture);
  } catch (e) {
    $('cohost').replaceChildren(h('tr', {}, h('td', { class: 'dim', text: e.status === 404 ? 'co-hosting is not available on this server yet' : e.message })));
  }
}

async function refreshStats() {
  const box = $('stats');
  try {
    const s = await onair.api('GET', `/api/v1/rooms/${encodeURIComponent(roomId)}/stats`);
    box.replaceChildren(...Object.entries(s).flatMap(([k, v]) => [h('span', { class: 'k', text: k }), h('span', { text: k === 'watchSeconds' ? fmtDuration(v) : typeof v === 'number' && !Number.isInteger(v) ? v.toFixed(1) : String(v) })]));
  } catch {
    box.replaceChildren(h('span', { class: 'k', text: 'online' }), h('span', { text: String(room?.online ?? 0) }));
  }
  try {
    const lb = await onair.leaderboard(roomId, 5);
    $('leaders').replaceChildren(...(lb.entries ?? []).map((e, i) => h('tr', {}, h('td', { text: `${i + 1}. ${e.nick || e.userId}` }), h('td', {}, h('i', { class: 'ico-coin' }), ` ${e.total}`))));
  } catch { /* not available */ }
}

/**
 * Set when the stream's stats answered 404 although the room said live (set live by
 * hand, or the publisher just left): not asked again until the room's `stream` event
 * says a publisher arrived, so the console is not a column of 404s.
 */
let streamMissing = false;
onair.on('stream', (e) => {
  if (e.phase === 'published') streamMissing = false;
  refreshHealth();
});

async function refreshHealth() {
  const box = $('health');
  const stream = room?.stream || roomId;
  const noPublisher = () => box.replaceChildren(h('span', { class: 'k', text: 'Stream' }), h('span', { class: 'dim', text: `“${stream}”: no publisher` }));
  // The room follows its stream (live on publish, paused when it stops): only a live
  // room has a stream to ask about.
  if (room?.state !== 'live' || streamMissing) {
    $('monitor').replaceChildren();
    return noPublisher();
  }
  try {
    const r = await fetch(`/api/v1/streams/${encodeURIComponent(stream)}`);
    if (r.status === 404) {
      streamMissing = true;
      return noPublisher();
    }
    const s = await r.json();
    const rows = [];
    const add = (k, v) => v !== undefined && v !== null && v !== '' && rows.push(h('span', { class: 'k', text: k }), h('span', { text: String(v) }));
    const pick = (...keys) => keys.map((k) => s[k]).find((x) => x !== undefined && x !== null);
    add('Stream', stream);
    add('Codecs', [pick('videoCodec', 'video_codec'), pick('audioCodec', 'audio_codec')].filter(Boolean).join(' + ') || undefined);
    const w = pick('width');
    const fps = pick('videoFps', 'video_fps');
    add('Video', [w && `${w}×${pick('height')}`, fps && `${Math.round(fps)} fps`].filter(Boolean).join(' · ') || undefined);
    const bps = pick('bitrateBps', 'bitrate_bps');
    add('Bitrate', bps !== undefined ? `${Math.round(bps / 1000)} kbit/s` : undefined);
    const secs = pick('publishSecs', 'publish_secs');
    add('On air for', secs !== undefined ? fmtDuration(secs) : undefined);
    const viewers = pick('viewers');
    const total = pick('viewersTotal');
    const split = viewers && typeof viewers === 'object'
      ? Object.entries(viewers).filter(([, n]) => n > 0).map(([k, n]) => `${k} ${n}`).join(', ')
      : '';
    add('Viewers', total !== undefined ? `${total}${split ? ` (${split})` : ''}` : viewers);
    add('Encoder', pick('encoder'));
    box.replaceChildren(...rows);
    refreshMonitor(stream);
  } catch {
    box.replaceChildren(h('span', { class: 'k', text: 'Stream' }), h('span', { class: 'dim', text: 'health not available' }));
  }
}

/** The stream's health history as small charts, and its alerts. */
async function refreshMonitor(stream) {
  try {
    const r = await fetch(`/api/v1/streams/${encodeURIComponent(stream)}/history`);
    if (!r.ok) return $('monitor').replaceChildren();
    $('monitor').replaceChildren(monitorPanel(await r.json()));
  } catch { /* keep the last charts */ }
}

// ---- chat in the picture: the room's chat burned into `{stream}_chat` ----
async function loadChatOverlay() {
  try {
    const v = await onair.api('GET', `/api/v1/rooms/${encodeURIComponent(roomId)}/chat-overlay`);
    $('chatOverlay').checked = !!v.enabled;
    $('chatOverlay').disabled = !v.available;
    $('chatOut').textContent = v.available ? (v.output ? `→ ${v.output}` : '(set a stream first)') : '(needs ffmpeg on the server)';
  } catch { /* not available */ }
}

$('chatOverlay').addEventListener('change', async (ev) => {
  try {
    const v = await onair.api('PUT', `/api/v1/rooms/${encodeURIComponent(roomId)}/chat-overlay`, { enabled: ev.target.checked });
    toast(v.enabled ? `Chat is burned into ${v.output}` : 'Chat in the picture is off');
  } catch (e) {
    ev.target.checked = !ev.target.checked;
    toast(e.message, 'error');
  }
});

start();
window.onair = onair;
