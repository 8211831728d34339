// The room list: rooms by popularity with a thumbnail, state and online count,
// refreshed every few seconds.
import { h, $, fmtCount, STATE_LABEL } from '/assets/app.js';

const list = $('rooms');
const filter = $('filter');
/** @type {Map<string, HTMLElement>} cards by room id, kept so thumbnails do not flicker */
const cards = new Map();

async function load() {
  const q = new URLSearchParams({ sort: 'popularity' });
  if (filter.value) q.set('state', filter.value);
  let rooms = [];
  try {
    const res = await fetch(`/api/v1/rooms?${q}`);
    rooms = (await res.json()).rooms ?? [];
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
    update(card, r);
    if (list.children[i] !== card) list.insertBefore(card, list.children[i] ?? null);
  });
  for (const [id, card] of cards) if (!seen.has(id)) { card.remove(); cards.delete(id); }
}

function makeCard(r) {
  const img = h('img', { alt: '', loading: 'lazy' });
  const thumb = h('div', { class: 'thumb' }, h('span', { class: 'ph', text: (r.name || r.roomId).charAt(0).toUpperCase() }), img,
    h('span', { class: 'badge' }), h('span', { class: 'viewers' }));
  img.addEventListener('error', () => img.classList.add('hidden'));
  img.addEventListener('load', () => img.classList.remove('hidden'));
  return h('a', { class: 'room-card', href: `/room/${encodeURIComponent(r.roomId)}`, dataset: { room: r.roomId } }, thumb,
    h('div', { class: 'meta' }, h('div', { class: 'name' }), h('div', { class: 'dim intro' })));
}

function update(card, r) {
  const state = r.state || '';
  const badge = card.querySelector('.badge');
  badge.className = `badge ${state}`;
  badge.textContent = STATE_LABEL[state] ?? state;
  card.querySelector('.viewers').textContent = `👁 ${fmtCount(r.online ?? 0)}${r.likes ? `  ❤ ${fmtCount(r.likes)}` : ''}`;
  card.querySelector('.name').textContent = r.name || r.roomId;
  card.querySelector('.intro').textContent = r.introduction || (r.owner ? `by ${r.owner}` : '');
  const img = card.querySelector('img');
  const stream = r.stream || r.roomId;
  // Live rooms get a fresh snapshot each refresh; others keep the last one.
  const src = `/live/${encodeURIComponent(stream)}/snapshot.jpg${state === 'live' ? `?t=${Math.floor(Date.now() / 10000)}` : ''}`;
  if (img.getAttribute('src') !== src) img.setAttribute('src', src);
}

filter.addEventListener('change', load);
load();
setInterval(load, 5000);
