// The studio's broadcast card: relays (restream destinations with their live state),
// a file or recording played as live, the start/pause slate and the room's ABR ladder.
// Every call goes to /api/v1/rooms/{id}/… with the anchor's credentials (the server
// checks the caller manages the room); stream keys come back masked and are never kept
// here after the form is sent.
import { h, $, toast, fmtDuration } from '/assets/app.js';

const LADDERS = {
  none: [],
  '720/480/360': [
    { name: '720p', height: 720, videoKbps: 2500 },
    { name: '480p', height: 480, videoKbps: 1200 },
    { name: '360p', height: 360, videoKbps: 700 },
  ],
  '480/360': [
    { name: '480p', height: 480, videoKbps: 1200 },
    { name: '360p', height: 360, videoKbps: 700 },
  ],
  '360': [{ name: '360p', height: 360, videoKbps: 700 }],
};

const fmtBytes = (n) => (n > 1e6 ? `${(n / 1e6).toFixed(1)} MB` : `${Math.round(n / 1e3)} kB`);

export function broadcastCard(onair, roomId) {
  const base = `/api/v1/rooms/${encodeURIComponent(roomId)}`;
  const call = (method, path, body) => onair.api(method, base + path, body);
  const fail = (e) => toast(e.message, 'error');

  async function refreshRelays() {
    let list = [];
    try {
      list = (await call('GET', '/relays')).relays ?? [];
    } catch {
      return;
    }
    $('relays').replaceChildren(...list.map((r) => h('tr', {},
      h('td', { class: 'mono', text: r.url }),
      h('td', {}, h('span', { class: `badge relay-${r.state}`, text: r.state })),
      h('td', { class: 'dim', text: r.state === 'live' ? `${fmtDuration(r.uptimeSecs)} · ${fmtBytes(r.bytesTotal)}` : (r.lastError || '') }),
      h('td', {}, h('button', { class: 'small', type: 'button', text: 'Remove', onclick: () => call('DELETE', `/relays/${r.id}`).then(refreshRelays, fail) })),
    )));
  }
  $('relayForm').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const body = { url: $('relayUrl').value.trim() };
    if ($('relayKey').value.trim()) body.key = $('relayKey').value.trim();
    try {
      await call('POST', '/relays', body);
      $('relayKey').value = '';
      $('relayUrl').value = '';
      refreshRelays();
    } catch (e) {
      fail(e);
    }
  });

  async function refreshPlayout() {
    try {
      const p = (await call('GET', '/playout')).playout;
      $('playoutState').textContent = p ? `${p.kind} · ${p.state} · ${Math.round(p.positionSecs)} s${p.error ? ` · ${p.error}` : ''}` : 'nothing playing';
    } catch {
      $('playoutState').textContent = '';
    }
  }
  $('playoutForm').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const what = $('playoutWhat').value.trim();
    const item = /^\d[\d-]*$/.test(what) ? { recording: what } : { upload: what };
    try {
      await call('POST', '/playout', { items: [item], loop: $('playoutLoop').checked });
      refreshPlayout();
    } catch (e) {
      fail(e);
    }
  });
  $('playoutStop').addEventListener('click', () => call('DELETE', '/playout').then(refreshPlayout, fail));

  $('slateForm').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const text = $('slateText').value.trim();
    const pausedText = $('slatePaused').value.trim();
    try {
      if (!text && !pausedText) await call('DELETE', '/slate');
      else await call('PUT', '/slate', { text, pausedText });
      toast('Slate saved');
    } catch (e) {
      fail(e);
    }
  });
  call('GET', '/slate').then((r) => {
    $('slateText').value = r.slate?.text ?? '';
    $('slatePaused').value = r.slate?.pausedText ?? '';
  }, () => {});

  $('ladder').addEventListener('change', async (ev) => {
    const pick = ev.target.value;
    try {
      if (pick === 'default') await call('DELETE', '/ladder');
      else await call('PUT', '/ladder', { renditions: LADDERS[pick] });
      toast('Ladder saved');
    } catch (e) {
      fail(e);
    }
  });
  call('GET', '/ladder').then((r) => {
    const names = (r.renditions ?? []).map((x) => x.height).join('/');
    const known = Object.entries(LADDERS).find(([, l]) => l.map((x) => x.height).join('/') === names);
    if (known) $('ladder').value = known[0];
    $('ladderMaster').textContent = r.master;
  }, () => {});

  refreshRelays();
  refreshPlayout();
  setInterval(() => {
    if (document.visibilityState === 'visible') {
      refreshRelays();
      refreshPlayout();
    }
  }, 3000);
}
