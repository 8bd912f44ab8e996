// The dashboard's charts, drawn as SVG with createElementNS: a stacked bar chart over time
// and a list of horizontal bars. No colour or size is set inline: every mark carries a CSS
// class (page-dashboard.css colours them from app.css's variables, so dark mode applies),
// and each chart is drawn at the width it is given, so its text keeps its real size on a
// phone instead of being scaled down with the picture.
import { h } from "./ui.js";

const NS = "http://www.w3.org/2000/svg";
// Rough widths of a character of the 12 px labels: enough to make room for the y axis's
// longest label and keep time labels apart without measuring text (which needs the chart
// in the document first).
const DIGIT_WIDTH = 7.5;
const CHAR_WIDTH = 7;
const TICK_STEPS = [60, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800];

/** An SVG element: `svg("rect", { class: "bar", x: 0 }, child…)`; strings become text. */
export function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(NS, tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value !== undefined && value !== null && value !== false) node.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

/** The axis's top and its step: round numbers, whole ones (these are counts), 2 to 5 lines. */
export function countScale(max) {
  if (max <= 0) return { top: 1, step: 1 };
  const rough = max / 4;
  const power = 10 ** Math.floor(Math.log10(rough));
  const step = Math.max(1, [1, 2, 5, 10].map((m) => m * power).find((s) => s >= rough));
  return { top: Math.ceil(max / step) * step, step };
}

const NUMBER = new Intl.NumberFormat();
const TIME = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const DAY = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric" });

/** Seconds since the local midnight of `date`: ticks fall on round local times. */
function localSeconds(date) {
  return date.getHours() * 3600 + date.getMinutes() * 60 + date.getSeconds();
}

/**
 * Which buckets get a label on the time axis: those starting on a round local time (every
 * 10 minutes, 3 hours, a day, …), as few steps as leave `maxLabels`. Falls back to every
 * n-th bucket when no round time is a bucket's start (a time zone off by half an hour).
 */
export function timeTicks(times, bucketSeconds, maxLabels) {
  const limit = Math.max(2, maxLabels);
  for (const step of TICK_STEPS) {
    if (step < bucketSeconds || step % bucketSeconds) continue;
    const picked = [];
    times.forEach((t, i) => {
      if (localSeconds(t) % step === 0) picked.push(i);
    });
    if (picked.length <= limit && picked.length >= 2) return { indexes: picked, step };
  }
  const every = Math.ceil(times.length / limit);
  const indexes = times.map((_, i) => i).filter((i) => i % every === 0);
  return { indexes, step: every * bucketSeconds };
}

function tickLabel(date, step) {
  if (step >= 86400 || (localSeconds(date) === 0 && step >= 3600)) return DAY.format(date);
  return TIME.format(date);
}

/**
 * A stacked bar chart of `series` (one entry per bucket: `{t, <key>: count, …}`), one bar
 * per bucket, one segment per key of `keys` (`{key, label}`, drawn bottom up, classed
 * `bar-<key>`). `unit` titles the y axis ("messages per minute"); `label` is what a screen
 * reader is told the picture shows (the page puts the numbers in a table next to it).
 */
export function stackedBars({ series, keys, bucketSeconds, unit, label, width, height = 200 }) {
  const times = series.map((entry) => new Date(entry.t));
  const totals = series.map((entry) => keys.reduce((sum, { key }) => sum + (entry[key] || 0), 0));
  const { top, step } = countScale(Math.max(0, ...totals));
  const left = Math.max(2, String(top).length) * DIGIT_WIDTH + 12;
  const margin = { top: 22, right: 10, bottom: 26, left };
  const plotWidth = Math.max(10, width - margin.left - margin.right);
  const plotHeight = height - margin.top - margin.bottom;
  const y = (value) => margin.top + plotHeight - (value / top) * plotHeight;
  const slot = plotWidth / Math.max(1, series.length);
  // Narrow slots get no gap: a 2 px bar with a 1 px gap reads better than a 1 px one.
  const barWidth = slot >= 4 ? slot * 0.78 : slot;

  const chart = svg("svg", {
    class: "chart",
    viewBox: `0 0 ${width} ${height}`,
    width,
    height,
    role: "img",
    "aria-label": label,
  });
  chart.append(svg("text", { class: "axis-title", x: 0, y: 12 }, unit));
  for (let value = 0; value <= top; value += step) {
    chart.append(
      svg("line", { class: value ? "grid-line" : "axis", x1: margin.left, x2: width - margin.right, y1: y(value), y2: y(value) }),
      svg("text", { class: "tick", x: margin.left - 6, y: y(value), "text-anchor": "end", "dominant-baseline": "middle" }, NUMBER.format(value)),
    );
  }
  series.forEach((entry, i) => {
    if (!totals[i]) return;
    const x = margin.left + i * slot + (slot - barWidth) / 2;
    const parts = keys.filter(({ key }) => entry[key]).map(({ key, label: name }) => `${NUMBER.format(entry[key])} ${name}`);
    const group = svg("g", { class: "bucket" }, svg("title", {}, `${TIME.format(times[i])}: ${parts.join(", ")}`));
    let base = 0;
    for (const { key } of keys) {
      const value = entry[key] || 0;
      if (!value) continue;
      group.append(svg("rect", { class: `bar bar-${key}`, x, width: barWidth, y: y(base + value), height: y(base) - y(base + value) }));
      base += value;
    }
    chart.append(group);
  });
  const sample = tickLabel(times[times.length - 1] || new Date(), 3600).length * CHAR_WIDTH;
  const ticks = timeTicks(times, bucketSeconds, Math.floor(plotWidth / (sample + 12)));
  let free = 0; // where the previous label ends: a label that would overlap it is left out
  for (const i of ticks.indexes) {
    const x = margin.left + i * slot;
    const text = tickLabel(times[i], ticks.step);
    const half = (text.length * CHAR_WIDTH) / 2;
    const [anchor, start] = x - half < 0 ? ["start", x] : x + half > width ? ["end", x - 2 * half] : ["middle", x - half];
    if (start < free) continue;
    free = start + 2 * half + 8;
    chart.append(
      svg("line", { class: "axis", x1: x, x2: x, y1: margin.top + plotHeight, y2: margin.top + plotHeight + 4 }),
      svg("text", { class: "tick", x, y: height - 6, "text-anchor": anchor }, text),
    );
  }
  return chart;
}

/**
 * Horizontal bars, one per `{label, value, tone}` (`tone` classes the bar `bar-<tone>`),
 * each label on its own line above its bar so long codes fit a phone's width.
 */
export function barList({ items, label, width }) {
  const row = 38;
  const max = Math.max(1, ...items.map((item) => item.value));
  const chart = svg("svg", {
    class: "chart",
    viewBox: `0 0 ${width} ${items.length * row}`,
    width,
    height: items.length * row,
    role: "img",
    "aria-label": label,
  });
  items.forEach((item, i) => {
    const top = i * row;
    chart.append(
      svg("text", { class: "bar-label", x: 0, y: top + 13 }, item.label),
      svg("text", { class: "bar-value", x: width, y: top + 13, "text-anchor": "end" }, NUMBER.format(item.value)),
      svg("rect", { class: "track", x: 0, y: top + 19, width, height: 10, rx: 3 }),
      svg("rect", { class: `bar bar-${item.tone}`, x: 0, y: top + 19, width: Math.max(3, (item.value / max) * width), height: 10, rx: 3 }),
    );
  });
  return chart;
}

/** A legend for the keys of a chart: a swatch classed like the key's bars, and its name. */
export function legend(keys) {
  return h(
    "ul",
    { class: "legend", "aria-hidden": "true" },
    keys.map(({ key, label }) => h("li", {}, h("span", { class: `swatch swatch-${key}` }), label)),
  );
}
