// The dashboard: what external systems sent in the last hour, day or week, how it was
// answered, the tokens the replies cost, and the callbacks and event streams it caused —
// everything for an admin, a person's own keys and conversations otherwise (the API
// decides; the page says which).
// It reads one endpoint, GET /api/stats, again every few seconds while the tab is visible
// and soon after the owner's stream reports a message.
import { api } from "./api.js";
import { h, query, useStyles } from "./ui.js";
import { barList, legend, stackedBars } from "./page-dashboard-charts.js";

const WINDOWS = [
  { value: "1h", label: "Last hour", phrase: "the last hour" },
  { value: "24h", label: "Last day", phrase: "the last 24 hours" },
  { value: "7d", label: "Last week", phrase: "the last 7 days" },
];
const REFRESH_MS = 10_000;
// After a message event: long enough for the request's audit row (written in batches just
// after the answer) to be stored, short enough to feel live.
const EVENT_DELAY_MS = 1_000;
const LIVE_EVENTS = new Set(["message.created", "message.completed", "message.failed", "generation.aborted"]);
const EXTERNAL_KEYS = [
  { key: "accepted", label: "accepted" },
  { key: "replayed", label: "replayed" },
  { key: "refused", label: "refused" },
  { key: "rate_limited", label: "rate-limited" },
];
const REPLY_KEYS = [
  { key: "completed", label: "completed" },
  { key: "failed", label: "failed" },
];

const TOKEN_KEYS = [
  { key: "prompt_tokens", label: "in" },
  { key: "completion_tokens", label: "out" },
];
// Who spent the tokens: what a row without a key says, per list.
const SPENDERS = [
  { name: "models", title: "Tokens by model", noun: "Model", none: "—" },
  { name: "agents", title: "Tokens by agent", noun: "Agent", none: "No agent" },
  { name: "keys", title: "Tokens by API key", noun: "API key", none: "Without a key" },
];

const NUMBER = new Intl.NumberFormat();
const CLOCK = new Intl.DateTimeFormat(undefined, { timeStyle: "medium" });
const MINUTE = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const DAY_MINUTE = new Intl.DateTimeFormat(undefined, { weekday: "short", hour: "2-digit", minute: "2-digit" });
const DATE_MINUTE = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
// How a table names a bucket: the time within the hour, the weekday within the day.
const ROW_TIME = { "1h": MINUTE, "24h": DAY_MINUTE, "7d": DATE_MINUTE };

const count = (n) => NUMBER.format(n ?? 0);

/** "4.1 ms", "230 ms", "1.25 s"; a dash (read as "none") when there is nothing to measure. */
function duration(ms) {
  if (ms === null || ms === undefined) return [h("span", { "aria-hidden": "true" }, "—"), h("span", { class: "visually-hidden" }, "none")];
  if (ms < 10) return `${ms.toFixed(1)} ms`;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
}

/** "minute", "15 minutes", "hour", "6 hours": what one bar covers. */
function bucketName(seconds) {
  const [size, unit] = seconds % 86400 === 0 ? [seconds / 86400, "day"] : seconds % 3600 === 0 ? [seconds / 3600, "hour"] : [seconds / 60, "minute"];
  return size === 1 ? unit : `${NUMBER.format(size)} ${unit}s`;
}

/** The outcomes to show: requests answered again from an Idempotency-Key only when there were any. */
function externalKeys(totals) {
  return EXTERNAL_KEYS.filter(({ key }) => key !== "replayed" || totals.replayed);
}

function windowFromUrl() {
  const asked = new URLSearchParams(location.search).get("window");
  return WINDOWS.some((w) => w.value === asked) ? asked : "1h";
}

export async function mount(root, ctx) {
  useStyles("page-dashboard.css");
  let windowValue = windowFromUrl();
  let stats = null;
  let alive = true;
  let ticket = 0;
  let inflight = false;
  let interval = 0;
  let eventTimer = 0;
  // What each part was last drawn from, so a refresh that changes nothing leaves the DOM
  // (and a screen reader's place in a table) alone.
  const drawn = new Map();

  const status = h("p", { class: "muted dash-status" }, "Loading…");
  const failure = h("p", { class: "error", role: "alert", hidden: true });
  const switcher = h(
    "fieldset",
    { class: "segmented" },
    h("legend", { class: "visually-hidden" }, "Time window"),
    WINDOWS.map(({ value, label }) =>
      h(
        "label",
        {},
        h("input", {
          type: "radio",
          name: "window",
          value,
          checked: value === windowValue,
          onchange: () => switchWindow(value),
        }),
        h("span", {}, label),
      ),
    ),
  );
  const refresh = h("button", { type: "button", class: "small", onclick: () => load() }, "Refresh");
  const toolbar = h("div", { class: "toolbar dash-toolbar" }, switcher, refresh, status);

  const tiles = h("dl", { class: "tiles" });
  const external = panel("External messages", "external");
  const refusals = panel("Refusals by code", "refusals");
  const replies = panel("Replies", "replies");
  const tokens = panel("Tokens", "tokens");
  const spenders = SPENDERS.map((list) => ({ ...list, panel: panel(list.title, `tokens-${list.name}`) }));
  const page = h(
    "div",
    { class: "dash" },
    toolbar,
    failure,
    tiles,
    external.node,
    h("div", { class: "dash-pair" }, refusals.node, replies.node),
    tokens.node,
    h("div", { class: "dash-pair dash-trio" }, spenders.map((list) => list.panel.node)),
  );
  root.append(page);

  // Charts are drawn at their box's width; a new width (a rotated phone, a resized window)
  // redraws them from the numbers already here.
  const widths = new Map();
  const resized = new ResizeObserver((entries) => {
    for (const entry of entries) {
      const width = Math.round(entry.contentRect.width);
      if (width && widths.get(entry.target) !== width) {
        widths.set(entry.target, width);
        if (stats) drawCharts();
      }
    }
  });
  for (const part of [external, refusals, replies, tokens, ...spenders.map((list) => list.panel)]) resized.observe(part.chart);

  function switchWindow(value) {
    windowValue = value;
    history.replaceState(null, "", `/dashboard${query({ window: value === "1h" ? "" : value })}`);
    load();
  }

  async function load() {
    const mine = ++ticket;
    inflight = true;
    page.setAttribute("aria-busy", "true");
    // A refresh of what is shown keeps its status line; another window's numbers are awaited.
    if (stats?.window !== windowValue) status.textContent = "Loading…";
    try {
      const answer = await api("GET", `/api/stats${query({ window: windowValue })}`);
      if (!alive || mine !== ticket) return;
      failure.hidden = true;
      show(answer);
    } catch (error) {
      if (!alive || mine !== ticket || error?.status === 401) return;
      // The same failure again (every refresh while the server is away) is not said again.
      const text = `The statistics could not be loaded: ${error.message || error}`;
      if (failure.hidden || failure.textContent !== text) failure.textContent = text;
      failure.hidden = false;
      status.textContent = stats ? `Last updated ${CLOCK.format(new Date(stats.until))}` : "";
    } finally {
      if (mine === ticket) {
        inflight = false;
        page.removeAttribute("aria-busy");
      }
    }
  }

  function show(answer) {
    stats = answer;
    const scope = answer.scope === "all" ? "All keys and conversations" : "Your keys and conversations";
    status.textContent = `${scope} · updated ${CLOCK.format(new Date(answer.until))}`;
    redraw("tiles", [answer.external.totals, answer.replies.totals, answer.usage.totals, answer.webhooks, answer.streams], drawTiles);
    redraw("external-figures", [answer.external.processing_ms, answer.external.totals.rate_limited], () =>
      external.figures.replaceChildren(
        percentiles("Processing time (accepted)", answer.external.processing_ms),
        figure("Rate-limited", "total", count(answer.external.totals.rate_limited)),
      ),
    );
    redraw("replies-figures", [answer.replies.ttft_ms], () =>
      replies.figures.replaceChildren(percentiles("Time to first token", answer.replies.ttft_ms)),
    );
    redraw("tokens-figures", [answer.usage.totals], () => {
      const totals = answer.usage.totals;
      tokens.figures.replaceChildren(totals.estimated_replies ? h("p", { class: "muted dash-note" }, estimatedNote(totals)) : "");
    });
    drawCharts();
  }

  /** Run `draw` unless `data` is what the part was last drawn from. */
  function redraw(part, data, draw) {
    const key = JSON.stringify(data);
    if (drawn.get(part) === key) return;
    drawn.set(part, key);
    draw();
  }

  function drawTiles() {
    const { external: ext, replies: rep, usage, webhooks, streams } = stats;
    const tokenDetail = [`${count(usage.totals.prompt_tokens)} in`, `${count(usage.totals.completion_tokens)} out`];
    if (usage.totals.estimated_replies) tokenDetail.push(`${count(usage.totals.estimated_replies)} estimated`);
    // Rarer ends are named only when there are some.
    const others = ["aborted", "interrupted", "running"].filter((end) => rep.totals[end]).map((end) => `${count(rep.totals[end])} ${end}`);
    tiles.replaceChildren(
      tile("External messages", count(ext.totals.total), externalKeys(ext.totals).map(({ key, label }) => `${count(ext.totals[key])} ${label}`).join(" · ")),
      tile("Replies", count(rep.totals.total), [`${count(rep.totals.completed)} completed`, `${count(rep.totals.failed)} failed`, ...others].join(" · ")),
      tile("Tokens", count(usage.totals.total_tokens), tokenDetail.join(" · ")),
      tile("Webhook deliveries", count(webhooks.delivered + webhooks.failed + webhooks.pending), `${count(webhooks.delivered)} delivered · ${count(webhooks.failed)} failed · ${count(webhooks.pending)} pending`),
      tile("Open event streams", count(streams.open), "right now"),
    );
  }

  function drawCharts() {
    const phrase = WINDOWS.find((w) => w.value === stats.window)?.phrase || stats.window;
    const bucket = bucketName(stats.bucket_seconds);
    const format = ROW_TIME[stats.window] || DATE_MINUTE;
    const ext = stats.external;
    const keys = externalKeys(ext.totals);
    redraw("external", [ext.series, external.width(), phrase], () => {
      const caption = `External messages per ${bucket}, ${phrase}`;
      const said = keys.map(({ key, label }) => `${ext.totals[key]} ${label}`).join(", ");
      external.show(
        ext.totals.total
          ? stackedBars({ series: ext.series, keys, bucketSeconds: stats.bucket_seconds, unit: `messages per ${bucket}`, label: `${caption}: ${said}`, width: external.width() })
          : null,
        ext.totals.total ? legend(keys) : null,
        ext.totals.total ? seriesTable(caption, keys, ext.series, ext.totals, format) : null,
        "No external messages in this window.",
      );
    });
    redraw("refusals", [ext.errors, refusals.width(), phrase], () => {
      const caption = `Refused external messages by code, ${phrase}`;
      const items = ext.errors.map((e) => ({ label: e.code, value: e.count, tone: e.code === "rate_limited" ? "rate_limited" : "refused" }));
      refusals.show(
        items.length ? barList({ items, label: `${caption}: ${ext.errors.map((e) => `${e.code} ${e.count}`).join(", ")}`, width: refusals.width() }) : null,
        null,
        items.length ? codeTable(caption, ext.errors) : null,
        "No refusals in this window.",
      );
    });
    const rep = stats.replies;
    const charted = rep.series.reduce((sum, entry) => sum + entry.completed + entry.failed, 0);
    redraw("replies", [rep.series, replies.width(), phrase], () => {
      const caption = `Replies per ${bucket}, ${phrase}`;
      replies.show(
        charted
          ? stackedBars({ series: rep.series, keys: REPLY_KEYS, bucketSeconds: stats.bucket_seconds, unit: `replies per ${bucket}`, label: `${caption}: ${rep.totals.completed} completed, ${rep.totals.failed} failed`, width: replies.width() })
          : null,
        charted ? legend(REPLY_KEYS) : null,
        charted ? seriesTable(caption, REPLY_KEYS, rep.series, rep.totals, format) : null,
        rep.totals.total ? "No reply finished in this window yet." : "No replies in this window.",
      );
    });
    const usage = stats.usage;
    redraw("tokens", [usage.series, tokens.width(), phrase], () => {
      const caption = `Tokens per ${bucket}, ${phrase}`;
      const spent = usage.totals.total_tokens > 0;
      // The table also says which buckets hold estimated counts; the chart stacks in and out.
      const columns = usage.totals.estimated_replies ? [...TOKEN_KEYS, { key: "estimated_replies", label: "estimated replies" }] : TOKEN_KEYS;
      tokens.show(
        spent
          ? stackedBars({ series: usage.series, keys: TOKEN_KEYS, bucketSeconds: stats.bucket_seconds, unit: `tokens per ${bucket}`, label: `${caption}: ${usage.totals.prompt_tokens} in, ${usage.totals.completion_tokens} out`, width: tokens.width() })
          : null,
        spent ? legend(TOKEN_KEYS.map(({ key, label }) => ({ key, label: `tokens ${label}` }))) : null,
        spent ? seriesTable(caption, columns, usage.series, usage.totals, format) : null,
        "No tokens spent in this window.",
      );
    });
    for (const list of spenders) {
      const entries = usage[list.name];
      redraw(`tokens-${list.name}`, [entries, list.panel.width(), phrase], () => {
        const caption = `${list.title}, ${phrase}`;
        const items = entries.map((entry) => ({
          label: `${spenderName(entry, list)}${entry.estimated_replies ? " (estimated)" : ""}`,
          value: entry.total_tokens,
          tone: "tokens",
        }));
        list.panel.show(
          items.length ? barList({ items, label: `${caption}: ${items.map((i) => `${i.label} ${i.value}`).join(", ")}`, width: list.panel.width() }) : null,
          entries.some((entry) => entry.estimated_replies) ? h("p", { class: "muted dash-note" }, "(estimated): some of its replies were counted by estimate, as their provider sent no token counts.") : null,
          items.length ? spenderTable(caption, list, entries) : null,
          "No tokens spent in this window.",
        );
      });
    }
  }

  function tick() {
    if (!inflight) load(); // a slow answer is not asked for again on top of itself
  }

  function onVisibility() {
    clearInterval(interval);
    interval = 0;
    if (document.hidden) return;
    load();
    interval = setInterval(tick, REFRESH_MS);
  }

  const unsubscribe = ctx.onEvent((event) => {
    // The first event of a burst schedules one refresh; the rest of the burst rides on it.
    if (!LIVE_EVENTS.has(event.type) || eventTimer) return;
    eventTimer = setTimeout(() => {
      eventTimer = 0;
      if (!document.hidden) load();
    }, EVENT_DELAY_MS);
  });
  document.addEventListener("visibilitychange", onVisibility);
  if (!document.hidden) interval = setInterval(tick, REFRESH_MS);
  await load();

  return () => {
    alive = false;
    clearInterval(interval);
    clearTimeout(eventTimer);
    document.removeEventListener("visibilitychange", onVisibility);
    unsubscribe();
    resized.disconnect();
  };
}

/**
 * A panel with a heading, its figures, a chart box and the chart's numbers as a table: always
 * there for a screen reader, shown on the page with the "Show table" button.
 */
function panel(title, name) {
  const id = `dash-${name}`;
  const figures = h("div", { class: "figures" });
  const chart = h("div", { class: "chart-box" });
  const extra = h("div");
  const tableBox = h("div", { class: "visually-hidden dash-table", id: `${id}-table` });
  const toggle = h("button", { type: "button", class: "small", "aria-controls": tableBox.id, "aria-expanded": "false", hidden: true }, "Show table");
  toggle.addEventListener("click", () => {
    const open = tableBox.classList.toggle("visually-hidden") === false;
    toggle.setAttribute("aria-expanded", String(open));
    toggle.textContent = open ? "Hide table" : "Show table";
  });
  const node = h(
    "section",
    { class: "panel card", "aria-labelledby": `${id}-title` },
    h("div", { class: "panel-head" }, h("h2", { id: `${id}-title` }, title), toggle),
    figures,
    chart,
    extra,
    tableBox,
  );
  return {
    node,
    chart,
    figures,
    width: () => Math.round(chart.getBoundingClientRect().width) || 300,
    /** Draw the chart, its legend and its table, or say `empty` when there is no chart. */
    show(picture, key, data, empty) {
      chart.replaceChildren(picture || h("p", { class: "muted chart-empty" }, empty));
      extra.replaceChildren(key || "");
      tableBox.replaceChildren(data || "");
      toggle.hidden = !data;
    },
  };
}

function tile(label, value, detail) {
  return h("div", { class: "tile card" }, h("dt", {}, label), h("dd", { class: "tile-value" }, value), h("dd", { class: "muted" }, detail));
}

/** Named values under one heading: `figure("Time to first token", "p50", "120 ms", …)`. */
function figure(label, ...pairs) {
  const items = [];
  for (let i = 0; i < pairs.length; i += 2) items.push(h("div", {}, h("dt", {}, pairs[i]), h("dd", {}, pairs[i + 1])));
  return h("div", { class: "figure" }, h("span", { class: "muted" }, label), h("dl", { class: "percentiles" }, items));
}

/** p50, p95 and p99 of a duration (estimated from a sample when there were very many). */
function percentiles(label, values) {
  const estimated = values?.exact === false ? " (estimated)" : "";
  return figure(`${label}${estimated}`, ...["p50", "p95", "p99"].flatMap((p) => [p, duration(values?.[p])]));
}

/** The numbers of a stacked chart: one row per bucket that has any, and the totals. */
function seriesTable(caption, keys, series, totals, format) {
  const rows = series.filter((entry) => keys.some(({ key }) => entry[key]));
  return h(
    "table",
    { class: "dash-grid" },
    h("caption", {}, `${caption}; times without any are left out`),
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "From"), keys.map(({ label }) => h("th", { scope: "col" }, label)))),
    h(
      "tbody",
      {},
      rows.map((entry) =>
        h(
          "tr",
          {},
          h("th", { scope: "row" }, h("time", { datetime: entry.t }, format.format(new Date(entry.t)))),
          keys.map(({ key, label }) => h("td", { dataset: { label } }, count(entry[key]))),
        ),
      ),
    ),
    h("tfoot", {}, h("tr", {}, h("th", { scope: "row" }, "Total"), keys.map(({ key, label }) => h("td", { dataset: { label } }, count(totals[key]))))),
  );
}

/** "2 of 5 replies counted by estimate: …". */
function estimatedNote(totals) {
  return `${count(totals.estimated_replies)} of ${count(totals.replies)} replies counted by estimate: their provider sent no token counts.`;
}

/** A model as `<endpoint>/<model>`; an agent or key by name when the viewer may see it. */
function spenderName(entry, list) {
  if (entry.key === null) return list.none;
  if (entry.name) return entry.name;
  if (list.name === "keys" && entry.key.startsWith("env:")) return `System key ${entry.key}`;
  return entry.key;
}

function spenderTable(caption, list, entries) {
  const columns = [
    ["Tokens in", "prompt_tokens"],
    ["Tokens out", "completion_tokens"],
    ["Replies", "replies"],
    ["Estimated", "estimated_replies"],
  ];
  return h(
    "table",
    { class: "dash-grid" },
    h("caption", {}, caption),
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, list.noun), columns.map(([label]) => h("th", { scope: "col" }, label)))),
    h(
      "tbody",
      {},
      entries.map((entry) =>
        h(
          "tr",
          {},
          h("th", { scope: "row" }, list.name === "models" || (entry.key && !entry.name) ? h("code", {}, spenderName(entry, list)) : spenderName(entry, list)),
          columns.map(([label, key]) => h("td", { dataset: { label } }, count(entry[key]))),
        ),
      ),
    ),
  );
}

function codeTable(caption, errors) {
  return h(
    "table",
    { class: "dash-grid" },
    h("caption", {}, caption),
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Code"), h("th", { scope: "col" }, "Refused"))),
    h("tbody", {}, errors.map((e) => h("tr", {}, h("th", { scope: "row" }, h("code", {}, e.code)), h("td", { dataset: { label: "Refused" } }, count(e.count))))),
  );
}
