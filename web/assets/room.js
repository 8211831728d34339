// The watch page /room/{id}: player, danmaku, chat, likes, gifts, state banners.
import { h, $, toast, webConfig, client, loadCreds, saveCreds, roomIdFromPath, fmtDuration, fmtCount, safeUrl, STATE_LABEL } from '/assets/app.js';
import { randomKey, FACES, bodyText } from '/sdk/onair.js';
import { Player } from '/assets/player.js';
import { Danmaku } from '/assets/danmaku.js';
import { messageLine, systemLine, appendLine, markRecalled, eventText, giftOf, giftLine } from '/assets/chat.js';
import { giftImg, isBig, bigGift } from '/assets/gifts.js';
import { publishCamera, watch } from '/assets/cohost.js';

const PERMANENT = 4294967295;
const roomId = roomIdFromPath();
const cfg = await webConfig();
const onair = await client();
const player = new Player($('video'), (s) => {
  $('playerStatus').textContent = s === 'playing' ? '' : s;
  playing = s === 'playing';
  renderBanner();
});
// A media edge pulls a stream on its first request: there, ask for it without looking
// in the stream list first (`mediaEdge` in the page config; absent = not an edge).
player.checkStreams = !cfg.mediaEdge;
const danmaku = new Danmaku($('danmaku'));
let room = null;
let you = { mutedUntil: 0, role: 'Anonymous' };
let likes = 0;
let playing = false;
let removed = false;
let gifts = [];
let lastStarted = '';

document.title = `OnAir — ${roomId}`;

// ---- connection state ----
onair.on('connection', ({ state }) => {
  const c = $('conn');
  c.className = `conn ${state}`;
  c.textContent = state === 'connected' ? 'connected' : state;
  $('reconnecting').classList.toggle('hidden', state !== 'reconnecting');
  $('sendBtn').disabled = state !== 'connected' || $('input').disabled;
});
onair.on('kickedOut', ({ message }) => overlay('You are watching somewhere else', message || 'This account logged in on another tab or device.'));
onair.on('removed', ({ reason, bannedUntil }) => {
  removed = true;
  player.stop();
  const until = bannedUntil ? (bannedUntil >= PERMANENT ? ' You are banned from this room.' : ` You are banned until ${new Date(bannedUntil * 1000).toLocaleString()}.`) : '';
  overlay('You were removed from this room', `${reason ? `Reason: ${reason}.` : ''}${until}`);
});
onair.on('error', (e) => console.warn('OnAir:', e));

// ---- login: stored per tab, a demo guest in demo mode, else anonymous ----
async function ensureLogin() {
  let creds = loadCreds('viewer');
  for (let attempt = 0; attempt < 2; attempt++) {
    if (!creds && cfg.demo) {
      try {
        creds = await onair.demoGuest();
        saveCreds('viewer', creds);
      } catch (e) {
        console.warn('no demo guest', e);
      }
    }
    if (!creds) break;
    try {
      await onair.login(creds);
      break;
    } catch (e) {
      // A stored login from another server or app: drop it (a demo server mints a new one).
      saveCreds('viewer', null);
      onair.credentials = null;
      creds = null;
      if (!cfg.demo) toast(`Login failed: ${e.message}`, 'error');
    }
  }
  renderMe();
}

function renderMe() {
  const me = onair.credentials;
  $('me').replaceChildren(...(me ? [h('i', { class: 'ico ico-user' }), ` ${me.nick || me.userId}`] : ['Log in']));
}

$('me').addEventListener('click', async () => {
  if (onair.credentials) {
    const nick = prompt('Your name in the chat', onair.credentials.nick || onair.credentials.userId);
    if (!nick) return;
    try {
      await onair.setProfile({ nick });
      saveCreds('viewer', { ...loadCreds('viewer'), ...onair.credentials });
      renderMe();
    } catch (e) {
      toast(e.message, 'error');
    }
    return;
  }
  const userId = prompt('User id');
  const userSig = userId && prompt('UserSig for ' + userId);
  if (!userId || !userSig) return;
  saveCreds('viewer', { userId, userSig });
  location.reload();
});

// ---- room ----
async function enter() {
  try {
    const { room: r, history, you: y } = await onair.join(roomId);
    room = r;
    you = y;
    $('chat').replaceChildren();
    for (const m of history) showMessage(m, false);
    renderRoom();
    renderYou();
  } catch (e) {
    if (e.code === 10010) overlay('No such room', `There is no room “${roomId}”.`, true);
    else if (e.code === 10007) overlay('You cannot enter this room', e.message);
    else {
      toast(`Could not join: ${e.message}`, 'error');
      setTimeout(enter, 3000);
    }
  }
}

onair.on('joined', ({ room: r, you: y, resumed }) => {
  room = r;
  you = y;
  renderRoom();
  renderYou();
  if (resumed) appendLine($('chat'), systemLine('Reconnected.'));
});

function renderRoom() {
  if (!room) return;
  $('title').textContent = room.name || room.roomId;
  document.title = `${room.name || room.roomId} — OnAir`;
  $('online').textContent = fmtCount(room.online ?? 0);
  const n = $('notice');
  n.textContent = room.notification || '';
  n.classList.toggle('hidden', !room.notification);
  $('intro').textContent = room.introduction || '';
  if (typeof room.likes === 'number') likes = Math.max(likes, room.likes);
  $('likes').textContent = fmtCount(likes);
  renderState();
}

// ---- quality (the room's ABR ladder) ----
/** Offers the stream's live renditions (`/live/{stream}.json`) besides "auto". */
async function loadQualities(stream) {
  try {
    // Only a stream that is on this server (a room set live by hand has none): no 404s.
    if (!(await player.onAir(stream))) return $('qualityBox').classList.add('hidden');
    const r = await fetch(`/live/${encodeURIComponent(stream)}.json`, { cache: 'no-store' });
    const names = r.ok ? ((await r.json()).renditions ?? []).map((x) => x.stream.slice(stream.length + 1)) : [];
    const sel = $('quality');
    sel.replaceChildren(h('option', { value: '', text: 'auto' }), ...names.map((n) => h('option', { value: n, text: n })));
    sel.value = names.includes(player.quality) ? player.quality : '';
    $('qualityBox').classList.toggle('hidden', names.length === 0);
  } catch {
    $('qualityBox').classList.add('hidden');
  }
}
$('quality').addEventListener('change', (e) => {
  player.quality = e.target.value || null;
  if (room?.state === 'live') player.playLive(room.stream || roomId);
});

// ---- live state ----
function renderState() {
  const state = room?.state || '';
  const b = $('state');
  b.className = `badge ${state}`;
  b.textContent = STATE_LABEL[state] ?? state;
  const stream = room.stream || roomId;
  const want = state === 'live' ? `live:${stream}` : state === 'replay' && room.replayUrl ? `replay:${room.replayUrl}` : '';
  if (want !== lastStarted && !removed) {
    lastStarted = want;
    playing = false;
    if (state === 'live') {
      player.playLive(stream);
      loadQualities(stream);
      // Renditions start a few seconds after their source.
      setTimeout(() => loadQualities(stream), 8000);
    } else if (want) player.playReplay(safeUrl(room.replayUrl));
    else player.stop();
  }
  renderBanner();
}

let countdownTimer = null;
function renderBanner() {
  const banner = $('banner');
  const state = room?.state || '';
  clearInterval(countdownTimer);
  const show = (...children) => {
    banner.replaceChildren(h('div', {}, ...children));
    banner.classList.remove('hidden');
    banner.dataset.state = state;
  };
  if (state === 'upcoming') {
    const at = room.scheduledAt || 0;
    const cd = h('div', { class: 'countdown', id: 'countdown' });
    const tick = () => {
      const left = at - Date.now() / 1000;
      cd.textContent = at ? (left > 0 ? fmtDuration(left) : 'any moment now') : '';
    };
    tick();
    if (at) countdownTimer = setInterval(tick, 1000);
    show(h('div', { class: 'big', text: 'Starting soon' }), at ? h('div', { class: 'dim', text: `Starts ${new Date(at * 1000).toLocaleString()}` }) : null, cd);
  } else if (state === 'paused') show(h('div', { class: 'big', text: '‖ Paused' }), h('div', { class: 'dim', text: 'The anchor will be right back.' }));
  else if (state === 'ended' && lastStarted.startsWith('replay:')) {
    // The viewer chose the replay from the ended banner.
    banner.classList.add('hidden');
    banner.dataset.state = state;
  } else if (state === 'ended') {
    show(h('div', { class: 'big', text: 'This live has ended' }), h('div', { class: 'dim', text: room.replayUrl ? 'A replay is available.' : 'Thanks for watching!' }),
      room.replayUrl ? h('button', { class: 'primary', id: 'replayBtn', text: '▶ Watch the replay', onclick: () => { lastStarted = `replay:${room.replayUrl}`; player.playReplay(safeUrl(room.replayUrl)); renderBanner(); } }) : null);
  } else if (state === 'live' && !playing) show(h('div', { class: 'big', text: '● LIVE' }), h('div', { class: 'dim', text: $('playerStatus').textContent || 'connecting to the stream…' }));
  else if (state === 'live' || (state === 'replay' && room.replayUrl)) {
    banner.classList.add('hidden');
    banner.dataset.state = state;
  } else show(h('div', { class: 'big', text: state === 'replay' ? 'Replay' : 'Not live right now' }), h('div', { class: 'dim', text: state === 'replay' ? 'The replay is being prepared.' : 'Stay in the chat — the anchor may go live soon.' }));
}

// ---- messages and events ----
function showMessage(m, live = true) {
  appendLine($('chat'), messageLine(m));
  if (live && !giftOf(m)) danmaku.add(bodyText(m.body), m.from === onair.userId);
}

onair.on('message', (m) => showMessage(m));
onair.on('event', (e) => {
  const line = eventText(e);
  if (line) appendLine($('chat'), systemLine(line));
  if (room && ['online', 'enter', 'quit', 'profile', 'muteAll', 'like', 'state'].includes(e.type)) {
    // The SDK keeps `onair.room` current; mirror it.
    room = { ...room, ...onair.room };
    renderRoom();
    renderYou();
  }
});
onair.on('enter', (e) => {
  for (const u of (e.users ?? []).slice(0, 3)) if (u.userId !== onair.userId) appendLine($('chat'), systemLine(`${u.nick || u.userId} joined`));
});
onair.on('recall', (e) => markRecalled($('chat'), e.seq));
onair.on('you', (y) => {
  you = y;
  renderYou();
});
onair.on('like', (e) => {
  const mine = e.userId && e.userId === onair.userId;
  if (typeof e.total === 'number') likes = Math.max(e.total, likes);
  $('likes').textContent = fmtCount(likes);
  if (!mine) for (let i = 0; i < Math.min(e.delta ?? 1, 6); i++) setTimeout(heart, i * 120);
});
// Gifts are drawn from the server's events only (a message can look like a gift).
onair.on('gift', (e) => {
  comboFx(e);
  appendLine($('chat'), giftLine(e));
});
onair.on('state', (e) => {
  // The recording's URL is in the room JSON (set while paused or ended); fetch it when
  // the event does not carry it.
  if ((e.state === 'replay' || e.state === 'ended') && !e.replayUrl) {
    onair.getRoom(roomId).then((r) => {
      room = { ...room, ...r };
      renderRoom();
    }, () => {});
  }
});
onair.on('stream', (e) => {
  if (e.phase === 'published' && room?.state === 'live') {
    lastStarted = '';
    renderState();
  }
});
onair.on('cohost', (e) => {
  if (e.userId === onair.userId && e.phase === 'refused') toast('The anchor declined your co-host request');
  if (e.userId !== onair.userId) return;
  if (e.phase === 'accepted' && e.whipUrl) goOnAir(e);
  else if (e.phase === 'accepted' && e.pushUrl) overlay('You are co-hosting', `Push your stream to: ${e.pushUrl}`);
  // On air: the anchor's own feed exists now (the server copies it while mixing).
  if (e.phase === 'live' && onAir.box && !onAir.anchor) onAir.anchor = watch(onAir.anchorStream, $('cohostAnchor'));
  if (e.phase === 'ended') leaveAir(e.reason === 'dropped' ? 'Your camera stream was lost: you left the co-host' : 'The co-host ended');
});
onair.on('destroyed', () => overlay('This room was closed', 'The room no longer exists.', true));

// ---- composer, mute state ----
let muteTimer = null;
function renderYou() {
  clearInterval(muteTimer);
  const input = $('input');
  const note = $('mutedNote');
  const staff = you.role === 'Owner' || you.role === 'Admin';
  const set = (disabled, text) => {
    input.disabled = disabled;
    $('sendBtn').disabled = disabled;
    $('emojiBtn').disabled = disabled;
    note.textContent = text;
    note.classList.toggle('hidden', !text);
    input.placeholder = disabled ? 'You cannot chat right now' : 'Say something…';
  };
  if (!onair.credentials) return set(true, 'Watching anonymously: log in to chat.');
  if (removed) return set(true, 'You were removed from this room.');
  const until = you.mutedUntil || 0;
  if (until && until >= PERMANENT) return set(true, 'You are muted in this room.');
  if (until > Date.now() / 1000) {
    const tick = () => {
      const left = until - Date.now() / 1000;
      if (left <= 0) {
        you = { ...you, mutedUntil: 0 };
        renderYou();
        return;
      }
      set(true, `You are muted for ${fmtDuration(left)}`);
    };
    tick();
    muteTimer = setInterval(tick, 1000);
    return;
  }
  if (room?.muteAll && !staff) return set(true, 'The host muted the chat.');
  set(false, '');
}

$('composer').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const input = $('input');
  const text = input.value.trim();
  if (!text) return;
  input.value = '';
  try {
    const ack = await onair.sendText(text);
    if (ack.dropReason) toast(ack.dropReason === 'FrequencyLimit' ? 'The room is busy: your message was not shown' : `Not delivered (${ack.dropReason})`);
  } catch (e) {
    input.value = text;
    if (e.code === 10017 && /muted/i.test(e.message) && you.mutedUntil === 0) you = { ...you, mutedUntil: Date.now() / 1000 + 60 };
    toast(e.code === 80001 ? 'That message contains a blocked word.' : e.message, 'error');
    renderYou();
  }
});

const pop = $('emojiPop');
for (const f of FACES) pop.append(h('button', { type: 'button', text: f, onclick: () => { const i = $('input'); i.value += f; i.focus(); pop.classList.add('hidden'); } }));
$('emojiBtn').addEventListener('click', () => pop.classList.toggle('hidden'));

// ---- danmaku controls ----
$('dmOn').addEventListener('change', (e) => danmaku.setEnabled(e.target.checked));
$('dmDensity').addEventListener('change', (e) => danmaku.setDensity(Number(e.target.value)));
$('unmute').addEventListener('click', () => {
  const v = $('video');
  v.muted = !v.muted;
  v.play().catch(() => {});
  $('unmute').replaceChildren(h('i', { class: `ico ${v.muted ? 'ico-sound-off' : 'ico-sound-on'}` }), h('span', { class: 'wide-only', text: ' Sound' }));
});

// ---- likes ----
function heart() {
  // The shipped heart in a few hues (no emoji font needed).
  const el = h('img', { class: 'heart', src: '/assets/gifts/heart.svg', alt: '' });
  el.style.setProperty('--dx', `${Math.round(Math.random() * 60 - 30)}px`);
  el.style.filter = `hue-rotate(${[0, 20, -25, 40, -50][Math.floor(Math.random() * 5)]}deg)`;
  $('hearts').append(el);
  el.addEventListener('animationend', () => el.remove());
}
$('like').addEventListener('click', () => {
  if (!onair.credentials) return toast('Log in to like');
  onair.like();
  likes += 1;
  $('likes').textContent = fmtCount(likes);
  heart();
});
onair.on('likeSent', ({ count, accepted }) => {
  if (accepted < count) likes -= count - accepted;
});

// ---- gifts ----
async function loadGifts() {
  try {
    gifts = (await onair.gifts()).gifts ?? [];
  } catch {
    gifts = [];
  }
  const box = $('gifts');
  box.replaceChildren();
  if (!gifts.length) {
    $('giftbar').classList.add('hidden');
    return;
  }
  for (const g of gifts) {
    box.append(h('button', { class: 'gift-btn', title: `${g.name} (${g.price} coins)`, dataset: { gift: g.giftId }, onclick: () => sendGift(g) },
      giftImg(g), h('span', { text: g.name }), h('span', { class: 'price' }, h('i', { class: 'ico-coin' }), String(g.price))));
  }
  refreshBalance();
}


async function refreshBalance() {
  if (!onair.credentials) return;
  try {
    const w = await onair.wallet();
    $('balance').textContent = fmtCount(w.balance ?? 0);
  } catch {
    $('balance').textContent = '–';
  }
}

async function sendGift(g) {
  if (!onair.credentials) return toast('Log in to send gifts');
  const count = Number($('giftCount').value) || 1;
  try {
    const r = await onair.sendGift(g.giftId, count, { roomId, idempotencyKey: randomKey() });
    if (typeof r.balance === 'number') $('balance').textContent = fmtCount(r.balance);
  } catch (e) {
    toast(e.status === 402 ? 'Not enough coins' : `Gift failed: ${e.message}`, 'error');
  }
}

/** Combo animation: one card per combo, its counter bumping with each event. */
const combos = new Map();
function comboFx(e) {
  const key = e.comboId || `${e.from}:${e.giftId}`;
  let c = combos.get(key);
  if (!c) {
    if (e.end) return;
    const times = h('span', { class: 'times' });
    const el = h('div', { class: 'combo', dataset: { combo: key } }, avatarOrIcon(e), h('div', {}, h('div', { class: 'who', text: e.nick || e.from }), h('div', { class: 'what', text: `sent ${e.name || e.giftId}` })), times);
    $('giftfx').append(el);
    while ($('giftfx').children.length > 4) $('giftfx').firstChild.remove();
    c = { el, times, timer: null };
    combos.set(key, c);
    // The first event of an expensive send fills the stage (once per combo).
    const g = catalogGift(e);
    if (isBig(g, e.count ?? 1)) bigGift($('stage'), g, e);
  }
  const total = e.combo ?? e.count ?? 1;
  c.times.textContent = `×${total}`;
  c.times.classList.remove('bump');
  void c.times.offsetWidth;
  c.times.classList.add('bump');
  clearTimeout(c.timer);
  const finish = () => {
    c.el.classList.add('ending');
    setTimeout(() => c.el.remove(), 800);
    combos.delete(key);
  };
  c.timer = setTimeout(finish, e.end ? 1500 : 4000);
  if (e.from === onair.userId) refreshBalance();
}
function avatarOrIcon(e) {
  return giftImg(catalogGift(e));
}
/** A gift event's gift: the event's fields (price, icon, animation at the time of sending), the catalog's where it has none. */
function catalogGift(e) {
  const g = gifts.find((x) => x.giftId === e.giftId) ?? {};
  return { ...g, giftId: e.giftId, name: e.name || g.name, price: e.price ?? g.price, icon: e.icon || g.icon, animation: e.animation || g.animation };
}

// ---- co-host ----
$('cohost').addEventListener('click', async () => {
  try {
    await onair.requestCohost(roomId);
    toast('Request sent to the anchor');
  } catch (e) {
    toast(e.status === 404 ? 'Co-hosting is not available on this server' : e.message, 'error');
  }
});

/** The guest's side of a co-host: camera out over WHIP, the anchor in over WHEP. */
const onAir = { cam: null, anchor: null, box: null, anchorStream: '' };
async function goOnAir(e) {
  if (onAir.box) return;
  const self = h('video', { muted: true, autoplay: true, playsinline: true, id: 'cohostSelf' });
  const anchor = h('video', { autoplay: true, playsinline: true, id: 'cohostAnchor' });
  const status = h('span', { class: 'dim', text: 'starting your camera…' });
  const leave = h('button', { class: 'small', text: 'Leave' });
  onAir.box = h('div', { class: 'cohost-stage', id: 'cohostStage' }, anchor, self, h('div', { class: 'row' }, status, leave));
  document.body.append(onAir.box);
  leave.addEventListener('click', () => {
    onair.api('POST', `/api/v1/rooms/${encodeURIComponent(roomId)}/cohost/${encodeURIComponent(onair.userId)}/end`).catch(() => {});
    leaveAir('You left the co-host');
  });
  onAir.anchorStream = e.anchorStream;
  try {
    onAir.cam = await publishCamera(e.whipUrl, () => leaveAir('Your camera stream was cut'));
    self.srcObject = onAir.cam.media;
    status.textContent = 'on air';
  } catch (err) {
    toast(`Cannot start your camera: ${err.message}`, 'error');
    status.textContent = 'camera off';
  }
}
function leaveAir(text) {
  if (!onAir.box) return;
  onAir.cam?.stop();
  onAir.anchor?.stop();
  onAir.box.remove();
  Object.assign(onAir, { cam: null, anchor: null, box: null });
  toast(text);
}
window.addEventListener('pagehide', () => { onAir.cam?.stop(); onAir.anchor?.stop(); });

// ---- overlays ----
function overlay(title, text, home = false) {
  document.querySelector('.overlay')?.remove();
  document.body.append(h('div', { class: 'overlay', id: 'overlay', role: 'alertdialog' }, h('div', { class: 'card' },
    h('h2', { text: title }), h('p', { class: 'dim', text }), h('a', { href: '/', class: 'pill', text: home ? '← All rooms' : '← Other rooms' }))));
  renderYou();
}

await ensureLogin();
$('cohost').classList.toggle('hidden', !onair.credentials);
await enter();
loadGifts();
setInterval(refreshBalance, 15000);
// For tests and debugging.
window.onair = onair;
window.player = player;
window.danmaku = danmaku;
window.cohostOnAir = onAir;
