// The embeddable player (/assets/embed.html?room=ROOM or ?stream=NAME): the watch page's
// player without chat, for an <iframe> on another site. With a room it joins anonymously
// (counted as a viewer, no login) and follows the room's live state by its events, like
// the watch page; with a bare stream it plays that stream while it is on the air.
import { h, $, client, webConfig, safeUrl, STATE_LABEL } from '/assets/app.js';
import { Player } from '/assets/player.js';

const q = new URLSearchParams(location.search);
const roomId = q.get('room') || '';
const bareStream = q.get('stream') || '';
const player = new Player($('video'), (s) => {
  playing = s === 'playing';
  status = s;
  render();
});
// On a media edge, ask for the stream without looking in the stream list (see room.js).
player.checkStreams = !(await webConfig()).mediaEdge;
let room = null;
let playing = false;
let status = '';
let started = '';

$('open').href = roomId ? `/room/${encodeURIComponent(roomId)}` : '/';
$('unmute').addEventListener('click', () => {
  const v = $('video');
  v.muted = !v.muted;
  v.play().catch(() => {});
  $('unmute').replaceChildren(h('i', { class: `ico ${v.muted ? 'ico-sound-off' : 'ico-sound-on'}` }));
});

function say(big, small = '') {
  const b = $('banner');
  b.replaceChildren(h('div', {}, h('div', { class: 'big', text: big }), small ? h('div', { class: 'dim', text: small }) : null));
  b.classList.remove('hidden');
}

function render() {
  const state = bareStream ? 'live' : room?.state || '';
  const want = state === 'live' ? `live:${bareStream || room.stream || roomId}` : state === 'replay' && room?.replayUrl ? `replay:${room.replayUrl}` : '';
  if (want !== started) {
    started = want;
    playing = false;
    if (want.startsWith('live:')) player.playLive(want.slice(5));
    else if (want) player.playReplay(safeUrl(room.replayUrl));
    else player.stop();
  }
  if (playing) return $('banner').classList.add('hidden');
  if (!roomId && !bareStream) return say('No room', 'Embed this page with ?room=ROOM');
  if (state === 'live') return say('● LIVE', status || 'connecting…');
  say(STATE_LABEL[state] || 'Not live right now', state === 'upcoming' && room?.scheduledAt ? `Starts ${new Date(room.scheduledAt * 1000).toLocaleString()}` : '');
}

if (roomId) {
  const onair = await client();
  const refresh = () => {
    room = { ...room, ...onair.room };
    render();
  };
  onair.on('event', refresh);
  onair.on('stream', (e) => {
    if (e.phase === 'published') started = '';
    refresh();
  });
  onair.on('joined', ({ room: r }) => {
    room = r;
    render();
  });
  try {
    room = (await onair.join(roomId)).room;
  } catch (e) {
    say(e.code === 10010 ? 'No such room' : 'Cannot open this room', e.message);
  }
}
render();
// For tests and debugging.
window.player = player;
