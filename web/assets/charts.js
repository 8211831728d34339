// Small inline-SVG charts of a stream's health history (GET /api/v1/streams/{name}/history),
// drawn with DOM calls only (no innerHTML, no chart library): used by the studio and the
// admin console.
import { h } from '/assets/app.js';

const NS = 'http://www.w3.org/2000/svg';

function svg(tag, attrs = {}) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  return el;
}

/** A sparkline of `values` (nulls are gaps) with its label and the latest value. */
export function sparkline(label, values, fmt = (v) => String(Math.round(v)), { width = 220, height = 44 } = {}) {
  const nums = values.filter((v) => typeof v === 'number' && Number.isFinite(v));
  const max = Math.max(1, ...nums);
  const min = Math.min(0, ...nums);
  const step = values.length > 1 ? width / (values.length - 1) : width;
  const y = (v) => height - 2 - ((v - min) / (max - min || 1)) * (height - 4);
  let d = '';
  let pen = false;
  values.forEach((v, i) => {
    if (typeof v !== 'number' || !Number.isFinite(v)) {
      pen = false;
      return;
    }
    d += `${pen ? 'L' : 'M'}${(i * step).toFixed(1)},${y(v).toFixed(1)}`;
    pen = true;
  });
  const chart = svg('svg', { class: 'spark', viewBox: `0 0 ${width} ${height}`, width, height, role: 'img', 'aria-label': label });
  chart.append(svg('rect', { x: 0, y: 0, width, height, class: 'spark-bg' }));
  if (d) chart.append(svg('path', { d, class: 'spark-line' }));
  const last = nums.length ? fmt(nums[nums.length - 1]) : '–';
  return h('div', { class: 'spark-box' }, h('div', { class: 'spark-head' }, h('span', { class: 'dim', text: label }), h('span', { class: 'mono', text: last })), chart);
}

/** The charts and alerts of one history answer. */
export function monitorPanel(history) {
  const s = history.samples ?? [];
  const col = (k) => s.map((x) => x[k]);
  const viewers = s.map((x) => Object.values(x.viewers ?? {}).reduce((a, n) => a + n, 0));
  const charts = h('div', { class: 'spark-grid' },
    sparkline('bitrate kbit/s', col('bitrateBps').map((v) => v / 1000)),
    sparkline('video fps', col('videoFps'), (v) => v.toFixed(1)),
    sparkline('keyframe interval ms', col('keyframeIntervalMs')),
    sparkline('A/V drift ms', col('avDriftMs')),
    sparkline('dropped + late frames', s.map((x) => (x.droppedFrames ?? 0) + (x.lateFrames ?? 0))),
    sparkline('viewers', viewers));
  const active = history.alerts?.active ?? [];
  const recent = (history.alerts?.recent ?? []).slice(-5).reverse();
  const alerts = h('div', { class: 'alerts' },
    active.length
      ? h('div', { class: 'alert-on', text: `⚠ ${active.join(', ')}` })
      : h('div', { class: 'dim', text: 'no alerts' }),
    ...recent.map((a) => h('div', { class: a.state === 'raised' ? 'alert-line raised' : 'alert-line dim', text: `${new Date(a.at).toLocaleTimeString()} ${a.alert} ${a.state}: ${a.detail}` })));
  return h('div', { class: 'monitor' }, charts, alerts);
}
