// Shared helpers of the web app's pages. Every piece of user data goes into the DOM
// as text (textContent / text nodes) or through `safeUrl`; nothing user-supplied is
// ever parsed as HTML.

import { OnAir } from '/sdk/onair.js';

/**
 * Creates an element. `props`: `class`, `text`, `title`, `dataset`, `on{Event}`
 * handlers, any other key as an attribute. Children: nodes or strings (as text).
 * @param {string} tag @param {Record<string, any>} [props] @param {...(Node|string|null|undefined|false)} children
 */
export function h(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props ?? {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = String(v);
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else if (k.startsWith('on') && typeof v === 'function') e.addEventListener(k.slice(2).toLowerCase(), v);
    else if (k === 'value') e.value = v;
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    e.append(typeof c === 'string' ? document.createTextNode(c) : c);
  }
  return e;
}

/** `document.getElementById`. @param {string} id @returns {any} */
export const $ = (id) => document.getElementById(id);

/** A URL safe to put in `src`/`href`: http(s) or same-origin path, else ''. @param {string} u */
export function safeUrl(u) {
  if (typeof u !== 'string' || !u) return '';
  if (u.startsWith('/') && !u.startsWith('//')) return u;
  try {
    const p = new URL(u);
    return p.protocol === 'http:' || p.protocol === 'https:' ? p.href : '';
  } catch {
    return '';
  }
}

/** A round avatar: the image when it loads, else the first letter of the name. @param {string} url @param {string} name */
export function avatar(url, name, cls = 'avatar') {
  const letter = h('span', { class: cls + ' letter', text: (name || '?').trim().charAt(0).toUpperCase() || '?' });
  letter.style.background = `hsl(${hash(name || '') % 360} 55% 45%)`;
  const src = safeUrl(url);
  if (!src) return letter;
  const img = h('img', { class: cls, alt: '', src, loading: 'lazy', referrerpolicy: 'no-referrer' });
  img.addEventListener('error', () => img.replaceWith(letter), { once: true });
  return img;
}

/** @param {string} s */
export function hash(s) {
  let x = 0;
  for (let i = 0; i < s.length; i++) x = (x * 31 + s.charCodeAt(i)) | 0;
  return Math.abs(x);
}

/** `1:05:09` / `4:07`. @param {number} secs */
export function fmtDuration(secs) {
  secs = Math.max(0, Math.floor(secs));
  const d = Math.floor(secs / 86400);
  const hh = Math.floor((secs % 86400) / 3600);
  const mm = Math.floor((secs % 3600) / 60);
  const ss = secs % 60;
  const two = (n) => String(n).padStart(2, '0');
  if (d > 0) return `${d}d ${hh}:${two(mm)}:${two(ss)}`;
  return hh > 0 ? `${hh}:${two(mm)}:${two(ss)}` : `${mm}:${two(ss)}`;
}

/** 1234 → `1.2k`. @param {number} n */
export function fmtCount(n) {
  n = Number(n) || 0;
  if (n >= 1e6) return (n / 1e6).toFixed(1).replace(/\.0$/, '') + 'M';
  if (n >= 1e4) return (n / 1e3).toFixed(1).replace(/\.0$/, '') + 'k';
  return String(n);
}

/** Short-lived message at the bottom of the screen. @param {string} msg */
export function toast(msg, kind = 'info') {
  let box = document.getElementById('toasts');
  if (!box) {
    box = h('div', { id: 'toasts', role: 'status', 'aria-live': 'polite' });
    document.body.append(box);
  }
  const t = h('div', { class: `toast ${kind}`, text: msg });
  box.append(t);
  setTimeout(() => t.remove(), 4000);
}

let configPromise = null;
/** The server's page config: `{sdkAppId, demo, demoRoom}`. */
export function webConfig() {
  configPromise ??= fetch('/api/v1/web/config').then((r) => r.json());
  return configPromise;
}

/** A client for this server. */
export async function client() {
  const cfg = await webConfig();
  return new OnAir({ sdkAppId: cfg.sdkAppId });
}

/** Stored credentials (per tab for viewers, so two tabs are two users). @param {'viewer'|'studio'|'admin'} kind */
export function loadCreds(kind) {
  const store = kind === 'viewer' ? sessionStorage : localStorage;
  try {
    const c = JSON.parse(store.getItem(`onair.${kind}`) || 'null');
    if (c && c.expireAt && c.expireAt * 1000 < Date.now()) return null;
    return c;
  } catch {
    return null;
  }
}

/** @param {'viewer'|'studio'|'admin'} kind @param {any} creds */
export function saveCreds(kind, creds) {
  const store = kind === 'viewer' ? sessionStorage : localStorage;
  if (creds) store.setItem(`onair.${kind}`, JSON.stringify(creds));
  else store.removeItem(`onair.${kind}`);
}

/** Credentials passed in the URL fragment (`#identifier=…&usersig=…`, as the start banner prints). */
export function credsFromHash() {
  const p = new URLSearchParams(location.hash.slice(1));
  const userId = p.get('identifier') || p.get('userId');
  const userSig = p.get('usersig') || p.get('userSig');
  if (!userId || !userSig) return null;
  history.replaceState(null, '', location.pathname + location.search);
  return { userId, userSig };
}

/** The last path segment (room id) of `/room/ID` or `/studio/ID`. */
export function roomIdFromPath() {
  const parts = location.pathname.split('/').filter(Boolean);
  return decodeURIComponent(parts[1] || '');
}

/** Room states as shown. */
export const STATE_LABEL = { upcoming: 'Upcoming', live: 'LIVE', paused: 'Paused', ended: 'Ended', replay: 'Replay', '': 'Idle' };

/** Copies text and says so. @param {string} text */
export async function copy(text, what = 'Copied') {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    const t = h('textarea', { value: text });
    document.body.append(t);
    t.select();
    document.execCommand('copy');
    t.remove();
  }
  toast(what);
}
