// The room list: rooms by popularity with a thumbnail, state and online count,
// refreshed every few seconds.
import { h, $, fmtCount, STATE_LABEL } from '/assets/app.js';

const list = $('rooms');
const filter = $('filter');
/** @type {Map<string, HTMLElement>} cards by room id, kept so thumbnails do not flicker */
const cards = new Map();

/** Streams on the air now, by name (`GET /api/v1/streams` is 200 even when none is). */
async function liveStreams() {
  try {
    const res = await fetch('/api/v1/streams');
    if (!res.ok) return new Map();
    return new Map(((await res.json()).streams ?? []).map((s) => [s.name, s]));
  } catch {
    return new Map();
  }
}

async function load() {
  const q = new URLSearchParams({ sort: 'popularity' });
  if (filter.value) q.set('state', filter.value);
  let rooms = [];
  let streams;
  try {
    const res = await fetch(`/api/v1/rooms?${q}`);
    [rooms, streams] = await Promise.all([res.json().then((j) => j.rooms ?? []), liveStreams()]);
  } catch {
    return;
  }
  // Servers without popularity sort answer in their own order: sort here too.
  if (filter.value) rooms = rooms.filter((r) => r.state === filter.value);
  rooms.sort((a, b) => (b.popularity ?? 0) - (a.popularity ?? 0) || (b.online ?? 0) - (a.online ?? 0));
  $('empty').classList.toggle('hidden', rooms.length > 0);
  const seen = new Set();
  rooms.forEach((r, i) => {
    seen.add(r.roomId);
    let card = cards.get(r.roomId);
    if (!card) {
      card = makeCard(r);
      cards.set(r.roomId, card);
    }
    update(card, r, streams.get(r.stream || r.roomId));
    if (list.children[i] !== card) list.insertBefore(card, list.children[i] ?? null);
  });
  for (const [id, card] of cards) if (!seen.has(id)) { card.remove(); cards.delete(id); }
}

/** A live stream's first thumbnail is taken ~`[media] snapshot_secs` (10 s) after it starts. */
const FIRST_SNAPSHOT_SECS = 15;
/** Streams whose snapshot failed to load, until when (ms): not asked again meanwhile. */
const noSnapshot = new Map();

function makeCard(r) {
  // Transparent, not display:none, until a picture loads: a lazy image that is not laid out never loads.
  const img = h('img', { alt: '', loading: 'lazy', class: 'pending' });
  const thumb = h('div', { class: 'thumb' }, h('span', { class: 'ph', text: (r.name || r.roomId).charAt(0).toUpperCase() }), img,
    h('span', { class: 'badge' }), h('span', { class: 'viewers' }));
  img.addEventListener('error', () => {
    img.classList.add('pending');
    noSnapshot.set(img.dataset.stream, Date.now() + 60_000);
  });
  img.addEventListener('load', () => img.classList.remove('pending'));
  return h('a', { class: 'room-card', href: `/room/${encodeURIComponent(r.roomId)}`, dataset: { room: r.roomId } }, thumb,
    h('div', { class: 'meta' }, h('div', { class: 'name' }), h('div', { class: 'dim intro' })));
}

/**
 * The thumbnail to show, or '' for none. Only a stream that exists and has been on the
 * air long enough to have one is asked for (a blind request is a 404 in the console
 * for every room that never streamed); a server that names the snapshot in the room
 * or the stream stats (`snapshot`) is taken at its word.
 */
function snapshotUrl(r, s) {
  const named = r.snapshot || s?.snapshot;
  if (typeof named === 'string') return named;
  const stream = r.stream || r.roomId;
  if (!s || (s.publishSecs ?? 0) < FIRST_SNAPSHOT_SECS || (noSnapshot.get(stream) ?? 0) > Date.now()) return '';
  // A fresh one each refresh while live (the server takes one every 10 s).
  return `/live/${encodeURIComponent(stream)}/snapshot.jpg?t=${Math.floor(Date.now() / 10000)}`;
}

function update(card, r, stream) {
  const state = r.state || '';
  const badge = card.querySelector('.badge');
  badge.className = `badge ${state}`;
  badge.textContent = STATE_LABEL[state] ?? state;
  const viewers = card.querySelector('.viewers');
  viewers.replaceChildren(h('i', { class: 'ico ico-eye', 'aria-label': 'online' }), ` ${fmtCount(r.online ?? 0)}`, r.likes ? `  ❤ ${fmtCount(r.likes)}` : '');
  card.querySelector('.name').textContent = r.name || r.roomId;
  card.querySelector('.intro').textContent = r.introduction || (r.owner ? `by ${r.owner}` : '');
  const img = card.querySelector('img');
  img.dataset.stream = r.stream || r.roomId;
  const src = snapshotUrl(r, stream);
  // Without a new one the last picture stays (no flicker when a stream ends).
  if (src && img.getAttribute('src') !== src) img.setAttribute('src', src);
}

filter.addEventListener('change', load);
load();
setInterval(load, 5000);
