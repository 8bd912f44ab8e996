// One webhook endpoint (/webhooks/<id>): its state and settings, its deliveries page by page,
// a delivery's attempts log, and Redeliver.
//
// Live while open: an event of the kinds webhooks carry (on the owner's stream) is the cue
// that a delivery was queued, so the list reloads; and while any delivery shown is pending,
// the list and the open delivery are polled every 2 s until each is delivered or failed
// (deliveries themselves send no event to the browser).
import { api } from "./api.js";
import { h, pill, query, statusLine, table, when } from "./ui.js";
import { keysetRows } from "./paged.js";
import {
  deleteHook,
  endpointForm,
  eventList,
  hookPath,
  loadChoices,
  region,
  scopeOf,
  setEnabled,
  stateOf,
} from "./page-webhooks-form.js";

const POLL_MS = 2000;
const CUES = new Set(["message.created", "message.completed", "message.failed", "conversation.created"]);
const TONES = { delivered: "good", failed: "bad", pending: "warn" };

function facts(pairs) {
  return h(
    "dl",
    { class: "wh-facts" },
    pairs.filter(Boolean).map(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]),
  );
}

function stateP(delivery) {
  if (delivery.in_flight) return pill("sending", "warn");
  return pill(delivery.status, TONES[delivery.status] || "");
}

/** When it is tried next; while an attempt runs its time is the lease, not news. */
function nextAttempt(delivery) {
  if (delivery.in_flight) return h("span", { class: "muted" }, "being attempted now");
  return when(delivery.next_attempt_at, "—");
}

function redeliverButton(delivery, label, onclick, small = true) {
  return h(
    "button",
    {
      type: "button",
      class: small ? "small" : null,
      "aria-label": label,
      disabled: delivery.in_flight,
      title: delivery.in_flight ? "An attempt is running: redeliver once it has ended" : null,
      onclick,
    },
    "Redeliver",
  );
}

/** A delivery's fields as the list shows them, from the list or from its detail. */
function listed({ attempts_log: _log, ...delivery }) {
  return delivery;
}

function lastAnswer(delivery) {
  if (delivery.last_status_code) return `HTTP ${delivery.last_status_code}`;
  return delivery.last_error || h("span", { class: "muted" }, "—");
}

function prettyJson(text) {
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return text;
  }
}

export async function mountEndpoint(root, ctx) {
  const id = ctx.sub;
  const back = h("p", { class: "wh-back" }, h("a", { href: "/webhooks", "data-nav": true }, "← All webhooks"));
  let hook;
  try {
    hook = await api("GET", hookPath(id));
  } catch (error) {
    if (error?.status !== 404) throw error;
    ctx.setTitle("Webhook not found");
    root.append(back, region("Not found", h("p", {}, "You have no webhook with this id; it may have been deleted.")));
    return undefined;
  }
  const { eventTypes, keys } = await loadChoices();
  let openId = null; // the delivery whose attempts are shown
  let stopped = false;
  let timer = 0;
  let cue = 0;
  let running = null;
  let again = false;

  const status = statusLine();
  const summary = h("div");
  const editSlot = h("div", { hidden: true });
  const endpoint = region("Endpoint", summary, editSlot, status.node);
  const listBody = h("div");
  const said = statusLine(); // what Redeliver did, next to the deliveries
  const rows = keysetRows({
    fetchPage: async (before, limit) => {
      const page = await api("GET", `${hookPath(hook.id)}/deliveries${query({ limit, before })}`);
      return { list: page.deliveries, next: page.next_before };
    },
    render: drawDeliveries,
    fail: (error) => said.fail(error),
  });
  const deliveries = region(
    "Deliveries",
    h(
      "p",
      { class: "muted" },
      "Newest first. New deliveries appear as events happen, and pending ones are followed until they are delivered or fail.",
    ),
    said.node,
    listBody,
    rows.more,
  );
  const detail = h("section", { class: "panel card wh-panel wh-detail", hidden: true, "aria-labelledby": "wh-detail-title" });
  root.append(back, endpoint, deliveries, detail);

  function showHook() {
    ctx.setTitle(`Webhook ${hostOf(hook.url)}`);
    summary.replaceChildren(
      facts([
        ["URL", h("code", {}, hook.url)],
        hook.description ? ["Description", hook.description] : null,
        ["State", stateOf(hook)],
        ["Events", eventList(hook.events)],
        ["Scope", scopeOf(hook, keys)],
        ["Created", when(hook.created_at)],
      ]),
      h(
        "div",
        { class: "actions" },
        h("button", { type: "button", onclick: edit }, "Edit"),
        h(
          "button",
          {
            type: "button",
            onclick: () => act(async () => {
              const changed = await setEnabled(hook, !hook.enabled);
              if (!changed) return;
              hook = changed;
              status.say(hook.enabled ? "Enabled: new events are delivered again." : "Disabled.");
            }),
          },
          hook.enabled ? "Disable" : "Enable",
        ),
        h(
          "button",
          {
            type: "button",
            onclick: () => act(async () => {
              if (await deleteHook(hook)) ctx.navigate("/webhooks");
            }),
          },
          "Delete",
        ),
      ),
    );
  }

  function edit() {
    const form = endpointForm({
      hook,
      eventTypes,
      keys,
      submitLabel: "Save changes",
      cancel: () => closeEditor(),
      submit: async (body) => {
        if (Object.keys(body).length) hook = await api("PATCH", hookPath(hook.id), body);
        closeEditor();
        status.say("Saved.");
        showHook();
      },
    });
    editSlot.replaceChildren(h("h3", {}, "Edit"), form);
    editSlot.hidden = false;
    form.elements.url.focus();
  }

  function closeEditor() {
    editSlot.hidden = true;
    editSlot.replaceChildren();
  }

  async function act(run) {
    try {
      await run();
      showHook();
    } catch (error) {
      status.fail(error);
    }
  }

  /** The table of the deliveries loaded (rows.show() draws it, then its Load more). */
  function drawDeliveries() {
    listBody.replaceChildren(
      table(
        [
          { label: "Delivery", cell: (d) => h("code", { title: d.id }, `${d.id.slice(0, 8)}…`) },
          { label: "Event", cell: (d) => h("code", {}, d.event_type) },
          { label: "State", cell: stateP },
          { label: "Attempts", cell: (d) => String(d.attempts) },
          { label: "Last answer", cell: lastAnswer },
          { label: "Next attempt", cell: nextAttempt },
          { label: "Created", cell: (d) => when(d.created_at) },
          {
            label: "Actions",
            cell: (d) =>
              h(
                "div",
                { class: "actions" },
                h(
                  "button",
                  {
                    type: "button",
                    class: "small",
                    "aria-label": `Details of delivery ${d.id}`,
                    "aria-expanded": String(openId === d.id),
                    onclick: () => openDelivery(d.id),
                  },
                  "Details",
                ),
                redeliverButton(d, `Redeliver ${d.id}`, () => redeliver(d.id)),
              ),
          },
        ],
        rows.items,
        "No deliveries yet: they appear here when an event this endpoint takes happens.",
      ),
    );
  }

  function showDetail(delivery) {
    const attempts = delivery.attempts_log;
    detail.replaceChildren(
      h("h2", { id: "wh-detail-title", tabindex: "-1" }, "Delivery ", h("code", {}, delivery.id)),
      facts([
        ["Event", h("code", {}, delivery.event_type)],
        ["State", stateP(delivery)],
        ["Attempts", `${delivery.attempts} in the current schedule, ${attempts.length} in all`],
        ["Created", when(delivery.created_at)],
        delivery.delivered_at ? ["Delivered", when(delivery.delivered_at)] : null,
        delivery.next_attempt_at ? ["Next attempt", nextAttempt(delivery)] : null,
        delivery.last_error ? ["Last error", delivery.last_error] : null,
      ]),
      h(
        "div",
        { class: "actions" },
        redeliverButton(delivery, "Redeliver", () => redeliver(delivery.id), false),
        h("button", { type: "button", onclick: closeDetail }, "Close"),
      ),
      h("h3", {}, "Attempts log"),
      table(
        [
          { label: "#", cell: (a) => String(attempts.indexOf(a) + 1) },
          { label: "Time", cell: (a) => when(a.attempted_at) },
          { label: "Answer", cell: (a) => (a.status_code ? `HTTP ${a.status_code}` : h("span", { class: "muted" }, "none")) },
          { label: "Error", cell: (a) => a.error || h("span", { class: "muted" }, "—") },
          { label: "Duration", cell: (a) => `${Math.round(a.duration_ms)} ms` },
          { label: "Response", cell: (a) => (a.response_body ? h("code", { class: "wh-body" }, a.response_body) : h("span", { class: "muted" }, "—")) },
        ],
        attempts,
        "No attempt yet.",
      ),
      h(
        "details",
        { class: "wh-payload" },
        h("summary", {}, "Payload (the exact body sent, the same on every attempt)"),
        h("pre", {}, prettyJson(delivery.payload)),
      ),
    );
    detail.hidden = false;
  }

  async function openDelivery(deliveryId) {
    try {
      openId = deliveryId;
      const delivery = await api("GET", `${hookPath(hook.id)}/deliveries/${encodeURIComponent(deliveryId)}`);
      showDetail(delivery);
      rows.items = rows.items.map((d) => (d.id === delivery.id ? listed(delivery) : d));
      rows.show();
      detail.querySelector("h2").focus();
      schedulePoll();
    } catch (error) {
      said.fail(error);
    }
  }

  function closeDetail() {
    openId = null;
    detail.hidden = true;
    detail.replaceChildren();
    rows.show();
  }

  async function redeliver(deliveryId) {
    try {
      const queued = await api("POST", `${hookPath(hook.id)}/deliveries/${encodeURIComponent(deliveryId)}/redeliver`);
      rows.items = rows.items.map((d) => (d.id === queued.id ? queued : d));
      rows.show();
      said.say(`Delivery ${deliveryId.slice(0, 8)}… queued again.`);
      await refresh();
    } catch (error) {
      said.fail(error);
    }
  }

  /** Everything shown, read again; one run at a time, a request meanwhile runs once after. */
  async function refresh() {
    if (running) {
      again = true;
      return running;
    }
    running = (async () => {
      try {
        do {
          again = false;
          const [current] = await Promise.all([api("GET", hookPath(hook.id)), rows.reread()]);
          if (stopped) return;
          hook = current;
          if (editSlot.hidden) showHook();
          if (openId) {
            try {
              const delivery = await api("GET", `${hookPath(hook.id)}/deliveries/${encodeURIComponent(openId)}`);
              showDetail(delivery);
              // Read after the list: its row says the same, not an older state.
              rows.items = rows.items.map((d) => (d.id === delivery.id ? listed(delivery) : d));
              rows.show();
            } catch (error) {
              if (error?.status !== 404) throw error;
              closeDetail(); // deleted meanwhile, or swept by retention
            }
          }
        } while (again && !stopped);
      } catch (error) {
        status.fail(error);
      } finally {
        running = null;
        schedulePoll();
      }
    })();
    return running;
  }

  function schedulePoll() {
    clearTimeout(timer);
    if (stopped) return;
    const pending = rows.items.some((d) => d.status === "pending");
    if (pending) timer = setTimeout(refresh, POLL_MS);
  }

  const unsubscribe = ctx.onEvent((event) => {
    if (!CUES.has(event.type)) return;
    // A burst of events (a message and then its reply) costs one reload.
    clearTimeout(cue);
    cue = setTimeout(refresh, 250);
  });

  showHook();
  await rows.reread();
  schedulePoll();
  return () => {
    stopped = true;
    clearTimeout(timer);
    clearTimeout(cue);
    unsubscribe();
  };
}

function hostOf(url) {
  try {
    return new URL(url).host;
  } catch {
    return url;
  }
}
