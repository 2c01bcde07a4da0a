// Line charts drawn as inline SVG by this page. The plot area stretches to
// its box; the labels are HTML around it so text stays readable at any width.

import {h, svg} from "./dom.js";

const W = 600;
const H = 160;

function extent(series, pick, floorZero) {
  let lo = Infinity;
  let hi = -Infinity;
  for (const s of series) {
    for (const p of s.points) {
      const v = pick(p);
      if (Number.isFinite(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    }
  }
  if (!Number.isFinite(lo)) return null;
  if (floorZero) lo = Math.min(0, lo);
  if (hi === lo) hi = lo + (Math.abs(lo) || 1);
  return [lo, hi];
}

// spec: {title, series: [{label, cls, points: [[x, y], ...]}], xFormat, yFormat, xDomain?: [a, b], empty}
export function lineChart(spec) {
  const series = spec.series.filter((s) => s.points.length > 0);
  const last = spec.series.map((s) => {
    const p = s.points[s.points.length - 1];
    return `${s.label} ${p ? spec.yFormat(p[1]) : "no data"}`;
  }).join(", ");
  const fig = h("figure", {class: "chart", "data-chart": spec.id || null});
  fig.appendChild(h("figcaption", null, h("span", {class: "chart-title"}, spec.title),
    h("span", {class: "legend"}, spec.series.map((s) => {
      const p = s.points[s.points.length - 1];
      return h("span", {class: `legend-item ${s.cls}`},
        h("span", {class: "swatch", "aria-hidden": "true"}), `${s.label}: ${p ? spec.yFormat(p[1]) : "–"}`);
    }))));
  const xs = extent(series, (p) => p[0], false);
  const ys = extent(series, (p) => p[1], true);
  if (!xs || !ys) {
    fig.appendChild(h("p", {class: "chart-empty"}, spec.empty || "No data yet."));
    return fig;
  }
  const [x0, x1] = spec.xDomain || (xs[0] === xs[1] ? [xs[0] - 1, xs[1]] : xs);
  const [y0, y1] = ys;
  const sx = (x) => 2 + ((x - x0) / (x1 - x0 || 1)) * (W - 4);
  const sy = (y) => H - ((y - y0) / (y1 - y0 || 1)) * (H - 8) - 4;
  const plot = svg("svg", {viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "img",
    "aria-label": `${spec.title}: ${last}`, class: "chart-svg"});
  for (const f of [0, 0.5, 1]) {
    const y = sy(y0 + (y1 - y0) * f);
    plot.appendChild(svg("line", {x1: 0, x2: W, y1: y, y2: y, class: "grid", "vector-effect": "non-scaling-stroke"}));
  }
  for (const s of series) {
    let pts = s.points.map((p) => [sx(p[0]), sy(p[1])]);
    if (pts.length === 1) pts = [[Math.max(0, pts[0][0] - 12), pts[0][1]], pts[0]];
    const d = pts.map((p, i) => `${i ? "L" : "M"}${p[0].toFixed(1)},${p[1].toFixed(1)}`).join(" ");
    plot.appendChild(svg("path", {d, class: `line ${s.cls}`, "vector-effect": "non-scaling-stroke"}));
  }
  fig.appendChild(h("div", {class: "chart-body"},
    h("div", {class: "y-axis", "aria-hidden": "true"},
      h("span", null, spec.yFormat(y1)), h("span", null, spec.yFormat((y0 + y1) / 2)), h("span", null, spec.yFormat(y0))),
    h("div", {class: "plot"}, plot)));
  fig.appendChild(h("div", {class: "x-axis", "aria-hidden": "true"},
    h("span", null, spec.xFormat(x0)), h("span", null, spec.xFormat(x1))));
  return fig;
}
