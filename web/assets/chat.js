// Chat lines shared by the watch page and the studio. User text goes in as text only.
import { h, avatar } from '/assets/app.js';
import { bodyText } from '/sdk/onair.js';

/** The gift a gift message carries (`TIMCustomElem` with Desc `gift`), or null. @param {any} msg */
export function giftOf(msg) {
  const c = (msg.body ?? []).find((e) => e.MsgType === 'TIMCustomElem')?.MsgContent;
  if (!c || c.Desc !== 'gift') return null;
  try {
    const d = JSON.parse(c.Data);
    return d && typeof d === 'object' ? d : {};
  } catch {
    return {};
  }
}

/** @param {number} level */
export function levelBadge(level) {
  if (!level) return null;
  const tier = level >= 30 ? 'l30' : level >= 20 ? 'l20' : level >= 10 ? 'l10' : '';
  return h('span', { class: `lvl ${tier}`, text: `Lv${level}`, title: `level ${level}` });
}

/**
 * One chat line (null for lines not shown). A gift message (Desc `gift`) is never
 * drawn from the message: the gift line comes from the server's `gift` event
 * (`giftLine`), which only the server makes, so a message that merely looks like a gift
 * cannot show "X sent Rocket ×9999".
 * @param {any} msg @param {{actions?: (msg: any) => Node[]}} [opts]
 */
export function messageLine(msg, opts = {}) {
  if (giftOf(msg)) return null;
  const name = msg.nick || msg.from || '?';
  const text = bodyText(msg.body);
  const line = h('div', { class: 'msg', dataset: { seq: String(msg.seq), from: msg.from ?? '' } },
    avatar(msg.avatar, name),
    h('div', { class: 'body' }, levelBadge(msg.level), h('span', { class: 'nick', text: name, title: msg.from }), h('span', { class: 'text', text })),
    opts.actions ? h('span', { class: 'acts' }, ...opts.actions(msg)) : null);
  return line;
}

/**
 * The chat line of a server `gift` event (null for a combo's closing event: the combo
 * card shows the total).
 * @param {any} e
 */
export function giftLine(e) {
  if (e.end) return null;
  const name = e.nick || e.from || '?';
  const count = e.count ?? 1;
  const combo = e.combo > count ? ` (combo ×${e.combo})` : '';
  const text = `sent ${e.name || e.giftId || 'a gift'} ×${count}${combo}`;
  return h('div', { class: 'msg gift', dataset: { from: e.from ?? '' } },
    avatar(e.avatar, name),
    h('div', { class: 'body' }, levelBadge(e.level), h('span', { class: 'nick', text: name, title: e.from }), h('span', { class: 'text', text })));
}

/** @param {string} text */
export function systemLine(text) {
  return h('div', { class: 'msg sys' }, h('span', { class: 'text', text }));
}

/** Appends to a chat list, keeping it scrolled to the end when it was, and bounded. */
export function appendLine(list, line, max = 300) {
  if (!line) return;
  const atEnd = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  list.append(line);
  while (list.children.length > max) list.firstChild.remove();
  if (atEnd) list.scrollTop = list.scrollHeight;
}

/** Marks a recalled message. @param {HTMLElement} list @param {number} seq */
export function markRecalled(list, seq) {
  const line = list.querySelector(`.msg[data-seq="${Number(seq)}"]`);
  if (!line) return;
  line.classList.add('recalled');
  const t = line.querySelector('.text');
  if (t) t.textContent = '(message recalled)';
  line.querySelector('.acts')?.remove();
}

/** A timestamp in ms (the API gives ms; tolerate seconds). @param {number} t */
export const toMs = (t) => (t > 1e12 ? t : t * 1000);

/** A system line for the business events, or null. @param {any} e */
export function eventText(e) {
  switch (e.type) {
    case 'notification':
      return `📢 ${e.content ?? ''}`;
    case 'broadcast':
      return `📢 ${bodyText(e.body)}`;
    case 'lottery':
      if (e.phase === 'started') return `🎲 Lottery! Send “${e.keyword}” within ${Math.max(0, Math.round((toMs(e.endsAt) - Date.now()) / 1000))} s to enter (${e.winnerCount ?? 1} winner(s)).`;
      if (e.phase === 'drawn') return `🎉 Lottery “${e.keyword}” drawn: ${(e.winners ?? []).map((w) => w.nick || w.userId).join(', ') || 'no entrants'} (${e.entrants ?? 0} entered, seed ${e.seed ?? ''})`;
      return null;
    case 'cohost':
      if (e.phase === 'requested') return `🎙 ${e.nick || e.userId} asks to co-host`;
      if (e.phase === 'started' || e.phase === 'accepted') return `🎙 ${e.nick || e.userId} is co-hosting`;
      if (e.phase === 'ended') return `🎙 ${e.nick || e.userId} stopped co-hosting`;
      return null;
    case 'muteAll':
      return e.on ? '🔇 The host muted the chat' : '🔈 The chat is open again';
    case 'slowMode':
      return e.seconds ? `🐢 Slow mode: one message per ${e.seconds} s` : 'Slow mode is off';
    default:
      return null;
  }
}
