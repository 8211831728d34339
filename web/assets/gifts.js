// Gift pictures and the big-gift celebration. Icons are SVGs shipped in web/assets/gifts
// (embedded in the binary), so they show on machines without an emoji font; a catalog
// entry's `icon` URL wins when it has one. Pure parts are exported for tests.
import { h, safeUrl } from '/assets/app.js';

/** Gift pictures shipped with the web app, by name. */
export const SHIPPED = ['rose', 'heart', 'cake', 'rocket', 'crown', 'star', 'diamond', 'gift'];
/** Emoji older catalogs (and the demo catalog) use as icons → the shipped picture. */
const EMOJI = { '🌹': 'rose', '💖': 'heart', '❤️': 'heart', '❤': 'heart', '💗': 'heart', '🎂': 'cake', '🍰': 'cake', '🚀': 'rocket', '👑': 'crown', '⭐': 'star', '🌟': 'star', '💎': 'diamond', '🎁': 'gift' };
/** A gift this expensive (coins, price × count of one send) gets the whole stage. */
export const BIG_COINS = 100;

/**
 * The picture of a catalog gift: its `icon` when that is a URL (http(s) or a path on
 * this server), else the shipped SVG for its id or its emoji icon, else a generic box.
 * @param {{giftId?: string, icon?: string}} g
 */
export function giftIconUrl(g) {
  const url = safeUrl(g?.icon ?? '');
  if (url) return url;
  const id = String(g?.giftId ?? '').toLowerCase();
  const name = SHIPPED.includes(id) ? id : EMOJI[String(g?.icon ?? '').trim()] ?? 'gift';
  return `/assets/gifts/${name}.svg`;
}

/** An `<img>` of the gift; a catalog URL that fails falls back to the generic box. */
export function giftImg(g, cls = 'gicon') {
  const img = h('img', { class: cls, src: giftIconUrl(g), alt: '', draggable: 'false' });
  img.addEventListener('error', () => {
    const fallback = '/assets/gifts/gift.svg';
    if (!img.src.endsWith(fallback)) img.src = fallback;
  }, { once: true });
  return img;
}

/**
 * Whether a gift event deserves the big animation: an expensive send (price × count
 * ≥ BIG_COINS), or a catalog entry with its own animation.
 * @param {{price?: number, animation?: string}|undefined} gift @param {number} count
 */
export function isBig(gift, count) {
  if (!gift) return false;
  if (safeUrl(gift.animation ?? '')) return true;
  return (Number(gift.price) || 0) * (Number(count) || 1) >= BIG_COINS;
}

/**
 * Plays the big-gift celebration over `stage` (about 3 s): the catalog's `animation`
 * (an image or a video URL) when set, else the icon zooming in over rotating rays with
 * sparks (a rocket launches). CSS only, so `prefers-reduced-motion` turns it into a
 * fade (style.css). One at a time: a new one replaces the running one.
 * @param {HTMLElement} stage @param {any} gift catalog entry @param {{nick?: string, from?: string, count?: number}} e
 */
export function bigGift(stage, gift, e) {
  stage.querySelector('.bigfx')?.remove();
  const anim = safeUrl(gift.animation ?? '');
  let hero;
  if (anim && /\.(mp4|webm)(\?|$)/i.test(anim)) hero = h('video', { class: 'hero', src: anim, muted: true, autoplay: true, playsinline: true });
  else if (anim) hero = h('img', { class: 'hero', src: anim, alt: '' });
  else hero = giftImg(gift, 'hero');
  const fx = h('div', { class: `bigfx ${String(gift.giftId ?? '').toLowerCase() === 'rocket' ? 'rocket' : ''}`, 'aria-hidden': 'true', dataset: { gift: gift.giftId ?? '' } },
    h('div', { class: 'rays' }), hero,
    h('div', { class: 'caption', text: `${e.nick || e.from || 'Someone'} sent ${gift.name || gift.giftId}${(e.count ?? 1) > 1 ? ` ×${e.count}` : ''}!` }));
  const colours = ['#ffd36a', '#ff6b9a', '#7ec8ff', '#7ef0c1', '#ffffff'];
  for (let i = 0; i < 18; i++) {
    const a = (i / 18) * Math.PI * 2;
    const r = 120 + (i % 3) * 50;
    const s = h('span', { class: 'spark' });
    s.style.setProperty('--x', `${Math.round(Math.cos(a) * r)}px`);
    s.style.setProperty('--y', `${Math.round(Math.sin(a) * r)}px`);
    s.style.setProperty('--c', colours[i % colours.length]);
    s.style.setProperty('--d', `${0.35 + (i % 4) * 0.12}s`);
    fx.append(s);
  }
  stage.append(fx);
  setTimeout(() => fx.remove(), 3200);
  return fx;
}
