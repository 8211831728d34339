// Danmaku (bullet comments) over the video: right to left at one speed, in lanes, so
// two comments never overlap — a lane takes the next comment only once the previous
// one has fully entered the screen plus a gap, and since all move at the same speed
// none catches up. Comments that find no free lane wait briefly, then are dropped.

const SPEED_PX_S = 140;
const GAP_PX = 24;
const MAX_WAIT_MS = 3000;

export class Danmaku {
  /** @param {HTMLElement} layer */
  constructor(layer) {
    this.layer = layer;
    this.enabled = true;
    /** Fraction of the height used by lanes (density). */
    this.density = 0.67;
    /** @type {number[]} per lane: when (ms) it is free for the next comment */
    this.freeAt = [];
    /** @type {{text: string, mine: boolean, at: number}[]} */
    this.waiting = [];
    this.timer = null;
    this.laneH = 0;
    // The comment size changes with the layout (phone breakpoint): measure again.
    addEventListener('resize', () => (this.laneH = 0));
  }

  /** Lane height: a measured comment plus a gap, so neighbours never touch. */
  laneHeight() {
    if (!this.laneH) {
      const probe = document.createElement('div');
      probe.className = 'dm mine';
      probe.textContent = 'Xgjy';
      probe.style.visibility = 'hidden';
      this.layer.append(probe);
      this.laneH = probe.offsetHeight + 4;
      probe.remove();
    }
    return this.laneH || 32;
  }

  lanes() {
    const n = Math.max(1, Math.floor((this.layer.clientHeight * this.density) / this.laneHeight()));
    while (this.freeAt.length < n) this.freeAt.push(0);
    return n;
  }

  /** @param {boolean} on */
  setEnabled(on) {
    this.enabled = on;
    if (!on) {
      this.layer.replaceChildren();
      this.waiting = [];
      this.freeAt = this.freeAt.map(() => 0);
    }
  }

  /** @param {number} d 0…1 */
  setDensity(d) {
    this.density = d;
  }

  /** Shows `text` (as text) when a lane is free. @param {string} text @param {boolean} [mine] */
  add(text, mine = false) {
    if (!this.enabled || !text.trim()) return;
    // Bound the backlog: a busy room shows what fits, not a growing queue.
    if (this.waiting.length > 50) this.waiting.shift();
    this.waiting.push({ text: text.slice(0, 80), mine, at: performance.now() });
    this.pump();
  }

  pump() {
    clearTimeout(this.timer);
    const now = performance.now();
    const n = this.lanes();
    while (this.waiting.length) {
      const item = this.waiting[0];
      if (now - item.at > MAX_WAIT_MS) {
        this.waiting.shift();
        continue;
      }
      let lane = -1;
      for (let i = 0; i < n; i++) if (this.freeAt[i] <= now) { lane = i; break; }
      if (lane < 0) break;
      this.waiting.shift();
      this.launch(item, lane, n, now);
    }
    if (this.waiting.length) {
      const next = Math.min(...this.freeAt.slice(0, n));
      this.timer = setTimeout(() => this.pump(), Math.max(30, next - now));
    }
  }

  launch(item, lane, _n, now) {
    const el = document.createElement('div');
    el.className = item.mine ? 'dm mine' : 'dm';
    el.textContent = item.text;
    el.style.top = `${lane * this.laneHeight()}px`;
    el.style.visibility = 'hidden';
    this.layer.append(el);
    const W = this.layer.clientWidth;
    const w = el.offsetWidth;
    el.style.visibility = '';
    const duration = ((W + w) / SPEED_PX_S) * 1000;
    this.freeAt[lane] = now + ((w + GAP_PX) / SPEED_PX_S) * 1000;
    const anim = el.animate([{ transform: `translateX(${W}px)` }, { transform: `translateX(${-w}px)` }], { duration, easing: 'linear' });
    anim.onfinish = () => el.remove();
  }
}
