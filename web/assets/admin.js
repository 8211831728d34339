// The admin console /admin: rooms, room admins, sensitive words, broadcast, gifts and
// wallets, callbacks/config (read-only), statistics. Talks to the native API with an
// app admin's UserSig in the X-OnAir-Identifier / X-OnAir-UserSig headers.
import { h, $, toast, client, loadCreds, saveCreds, credsFromHash, fmtCount, fmtDuration, STATE_LABEL } from '/assets/app.js';
import { randomKey } from '/sdk/onair.js';
import { giftImg } from '/assets/gifts.js';
import { monitorPanel } from '/assets/charts.js';

const onair = await client();
const enc = encodeURIComponent;
let rooms = [];

async function start() {
  const creds = credsFromHash() || loadCreds('admin');
  if (!creds) return $('login').classList.remove('hidden');
  onair.credentials = creds;
  try {
    await onair.api('GET', '/api/v1/admin/config');
  } catch (e) {
    toast(`Login failed: ${e.message}`, 'error');
    saveCreds('admin', null);
    onair.credentials = null;
    return $('login').classList.remove('hidden');
  }
  saveCreds('admin', creds);
  $('who').replaceChildren(h('i', { class: 'ico ico-user' }), ` ${creds.userId}`);
  $('logout').classList.remove('hidden');
  $('console').classList.remove('hidden');
  await loadRooms();
  setInterval(loadRooms, 5000);
}

$('login').addEventListener('submit', (ev) => {
  ev.preventDefault();
  saveCreds('admin', { userId: $('loginUser').value.trim(), userSig: $('loginSig').value.trim() });
  location.reload();
});
$('logout').addEventListener('click', () => {
  saveCreds('admin', null);
  location.reload();
});

// ---- tabs ----
const loaders = { admins: loadAdmins, words: loadWords, gifts: loadGifts, config: loadConfig, stats: loadStats, streams: loadStreams };
$('tabs').addEventListener('click', (ev) => {
  const tab = ev.target.closest('button')?.dataset.tab;
  if (!tab) return;
  for (const b of $('tabs').children) b.classList.toggle('on', b.dataset.tab === tab);
  for (const p of document.querySelectorAll('[data-pane]')) p.classList.toggle('hidden', p.dataset.pane !== tab);
  loaders[tab]?.();
});

const fail = (e) => toast(e.message, 'error');

// ---- rooms ----
async function loadRooms() {
  try {
    rooms = (await onair.rooms()).rooms ?? [];
  } catch (e) {
    return fail(e);
  }
  $('roomRows').replaceChildren(...rooms.map((r) => h('tr', { dataset: { room: r.roomId } },
    h('td', {}, h('div', { text: r.name || r.roomId }), h('div', { class: 'dim mono', text: r.roomId })),
    h('td', { text: r.owner }),
    h('td', {}, h('span', { class: `badge ${r.state || ''}`, text: STATE_LABEL[r.state || ''] ?? r.state })),
    h('td', { class: 'wide-only', text: fmtCount(r.online ?? 0) }),
    h('td', {}, h('div', { class: 'row' }, h('a', { class: 'pill', href: `/room/${enc(r.roomId)}`, target: '_blank', text: 'Watch' }),
      h('a', { class: 'pill', href: `/studio/${enc(r.roomId)}`, target: '_blank', text: 'Studio' }),
      h('button', { class: 'small danger', text: 'Destroy', onclick: () => destroy(r.roomId) }))))));
  for (const sel of [$('adminRoom'), $('notifyRoom')]) {
    const cur = sel.value;
    sel.replaceChildren(...rooms.map((r) => h('option', { value: r.roomId, text: r.name ? `${r.name} (${r.roomId})` : r.roomId })));
    if (cur) sel.value = cur;
  }
}

async function destroy(id) {
  if (!confirm(`Destroy room ${id}? Everyone in it is sent out.`)) return;
  try {
    await onair.api('DELETE', `/api/v1/rooms/${enc(id)}`);
    toast(`Room ${id} destroyed`);
    loadRooms();
  } catch (e) {
    fail(e);
  }
}

$('createRoom').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const body = { name: $('newName').value.trim(), owner: $('newOwner').value.trim() };
  if ($('newId').value.trim()) body.roomId = $('newId').value.trim();
  try {
    const r = await onair.api('POST', '/api/v1/rooms', body);
    toast(`Room ${r.roomId} created`);
    ev.target.reset();
    loadRooms();
  } catch (e) {
    fail(e);
  }
});

// ---- room admins ----
async function loadAdmins() {
  const id = $('adminRoom').value;
  if (!id) return;
  try {
    const r = await onair.api('GET', `/api/v1/rooms/${enc(id)}/admins`);
    $('adminRows').replaceChildren(...(r.admins ?? []).map((u) => h('tr', {}, h('td', { text: u }),
      h('td', {}, h('button', { class: 'small danger', text: 'Remove', onclick: () => onair.api('DELETE', `/api/v1/rooms/${enc(id)}/admins`, { users: [u] }).then(loadAdmins, fail) })))));
  } catch (e) {
    fail(e);
  }
}
$('adminRoom').addEventListener('change', loadAdmins);
$('addAdmin').addEventListener('click', async () => {
  const u = $('adminUser').value.trim();
  if (!u) return;
  try {
    await onair.api('POST', `/api/v1/rooms/${enc($('adminRoom').value)}/admins`, { users: [u] });
    $('adminUser').value = '';
    loadAdmins();
  } catch (e) {
    fail(e);
  }
});

// ---- sensitive words ----
async function loadWords() {
  try {
    const r = await onair.api('GET', '/api/v1/filter');
    $('words').value = (r.words ?? []).join('\n');
    if (r.action) $('wordAction').value = r.action;
    $('wordCount').textContent = `${r.count ?? 0} words in force`;
  } catch (e) {
    fail(e);
  }
}
$('saveWords').addEventListener('click', async () => {
  const words = $('words').value.split('\n').map((w) => w.trim()).filter(Boolean);
  try {
    const r = await onair.api('PUT', '/api/v1/filter', { action: $('wordAction').value, words });
    toast(`${r.count} words in force`);
    loadWords();
  } catch (e) {
    fail(e);
  }
});
$('clearWords').addEventListener('click', () => onair.api('DELETE', '/api/v1/filter').then(loadWords, fail));

// ---- broadcast ----
$('bcSend').addEventListener('click', async () => {
  const text = $('bcText').value.trim();
  if (!text) return;
  try {
    const r = await onair.api('POST', '/api/v1/broadcast', { body: [{ MsgType: 'TIMTextElem', MsgContent: { Text: text } }] });
    toast(`Broadcast to ${r.rooms ?? 'all'} rooms`);
    $('bcText').value = '';
  } catch (e) {
    fail(e);
  }
});
$('notifySend').addEventListener('click', async () => {
  const content = $('notifyText').value.trim();
  if (!content) return;
  try {
    await onair.api('POST', `/api/v1/rooms/${enc($('notifyRoom').value)}/notification`, { content });
    toast('Sent');
    $('notifyText').value = '';
  } catch (e) {
    fail(e);
  }
});

// ---- gifts and wallets ----
async function loadGifts() {
  try {
    const r = await onair.gifts();
    $('giftRows').replaceChildren(...(r.gifts ?? []).map((g) => h('tr', {}, h('td', { class: 'mono', text: g.giftId }), h('td', {}, giftImg(g, 'gicon-sm'), ` ${g.name}`),
      h('td', {}, h('i', { class: 'ico-coin' }), ` ${g.price}`), h('td', {}, h('button', { class: 'small danger', text: 'Delete', onclick: () => onair.api('DELETE', `/api/v1/gifts/${enc(g.giftId)}`).then(loadGifts, fail) })))));
  } catch (e) {
    $('giftRows').replaceChildren(h('tr', {}, h('td', { class: 'dim', text: e.status === 404 ? 'Gifts are not available on this server yet.' : e.message })));
  }
}
$('giftForm').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  try {
    await onair.api('PUT', `/api/v1/gifts/${enc($('giftId').value.trim())}`, { name: $('giftName').value.trim(), price: Number($('giftPrice').value), icon: $('giftIcon').value.trim(), animation: $('giftAnim').value.trim() });
    ev.target.reset();
    loadGifts();
  } catch (e) {
    fail(e);
  }
});
$('topupForm').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  try {
    const w = await onair.api('POST', `/api/v1/users/${enc($('topUser').value.trim())}/wallet/topup`, { amount: Number($('topAmount').value), idempotencyKey: randomKey() });
    showJson(w);
  } catch (e) {
    fail(e);
  }
});
$('showWallet').addEventListener('click', async () => {
  try {
    showJson(await onair.api('GET', `/api/v1/users/${enc($('topUser').value.trim())}/wallet`));
  } catch (e) {
    fail(e);
  }
});
function showJson(v) {
  $('walletOut').textContent = JSON.stringify(v, null, 2);
  $('walletOut').classList.remove('hidden');
}

// ---- config ----
async function loadConfig() {
  try {
    const r = await onair.api('GET', '/api/v1/admin/config');
    const cb = r.config?.callback ?? {};
    const kv = [['SDKAppID', r.sdkAppId], ['Callback URL', cb.url || '(off)'], ['Callback token', cb.token || '(none)'], ['Demo mode', String(r.config?.demo?.enabled ?? false)]];
    $('cbSummary').replaceChildren(...kv.flatMap(([k, v]) => [h('span', { class: 'k', text: k }), h('span', { class: 'mono', text: String(v) })]));
    $('cfg').textContent = JSON.stringify(r.config, null, 2);
  } catch (e) {
    fail(e);
  }
}

// ---- statistics ----
async function loadStats() {
  const totals = { rooms: rooms.length, online: 0, messages: 0, likes: 0, gifts: 0, giftValue: 0 };
  const rows = await Promise.all(rooms.map(async (r) => {
    let s = {};
    try {
      s = await onair.api('GET', `/api/v1/rooms/${enc(r.roomId)}/stats`);
    } catch { /* not available yet */ }
    totals.online += r.online ?? 0;
    for (const k of ['messages', 'likes', 'gifts', 'giftValue']) totals[k] += s[k] ?? 0;
    const cell = (v) => h('td', { text: v === undefined ? '–' : String(v) });
    return h('tr', {}, h('td', { text: r.name || r.roomId }), cell(r.online ?? 0), cell(s.peakOnline), cell(s.messages), cell(s.likes ?? r.likes), cell(s.gifts), h('td', { text: s.watchSeconds !== undefined ? fmtDuration(s.watchSeconds) : '–' }));
  }));
  $('statRows').replaceChildren(...rows);
  try {
    const m = await (await fetch('/metrics')).text();
    const sum = (name) => m.split('\n').filter((l) => l.startsWith(name)).reduce((a, l) => a + (parseFloat(l.split(' ').pop()) || 0), 0);
    totals['ws connections'] = sum('onair_ws_connections');
  } catch { /* metrics off */ }
  $('statTotals').replaceChildren(...Object.entries(totals).map(([k, v]) => h('div', { class: 'card' }, h('div', { class: 'dim', text: k }), h('div', { class: 'stat', text: fmtCount(v) }))));
}

// ---- streams: health charts and the watermark ----
async function loadStreams() {
  try {
    const { streams = [] } = await (await fetch('/api/v1/streams')).json();
    const panels = await Promise.all(streams.map(async (st) => {
      const r = await fetch(`/api/v1/streams/${enc(st.name)}/history`);
      const body = r.ok ? monitorPanel(await r.json()) : h('p', { class: 'dim', text: 'no history yet' });
      return h('div', { class: 'card', style: 'margin-bottom:8px' }, h('h3', { class: 'mono', text: st.name }), body);
    }));
    $('streamRows').replaceChildren(...(panels.length ? panels : [h('p', { class: 'dim', text: 'no live streams' })]));
    const w = (await onair.api('GET', '/api/v1/admin/watermark')).watermark;
    $('wmNow').textContent = w ? `In use: ${w.width}×${w.height}, ${w.position}, scale ${w.scale}, opacity ${w.opacity}` : 'No watermark.';
  } catch (e) {
    fail(e);
  }
}

$('wmForm').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const file = $('wmFile').files[0];
  if (!file) return;
  const q = new URLSearchParams({ position: $('wmPos').value, scale: $('wmScale').value, opacity: $('wmOpacity').value });
  const creds = onair.credentials;
  const r = await fetch(`/api/v1/admin/watermark?${q}`, {
    method: 'PUT',
    headers: { 'Content-Type': 'image/png', 'X-OnAir-Identifier': creds.userId, 'X-OnAir-UserSig': creds.userSig },
    body: file,
  });
  const v = await r.json().catch(() => ({}));
  if (r.ok) toast('Watermark set');
  else toast(v.message || `HTTP ${r.status}`, 'error');
  loadStreams();
});
$('wmClear').addEventListener('click', async () => {
  try {
    await onair.api('DELETE', '/api/v1/admin/watermark');
    toast('Watermark removed');
    loadStreams();
  } catch (e) {
    fail(e);
  }
});

start();
