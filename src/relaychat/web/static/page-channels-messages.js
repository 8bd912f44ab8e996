// A channel's recent messages, newest first, paged, with each reply's delivery state.
//
// Kept current two ways: the owner's events (a message stored, completed or failed in one
// of the channel's conversations) refresh the first page, 400 ms after the last of a burst;
// and while a reply's delivery is still under way (pending … sent) the first page is read
// again every 5 s, because Twilio's status callbacks change it without any event.
import { api } from "./api.js";
import { h, section, table, when, pill, query } from "./ui.js";

const PAGE = 25;
const DEBOUNCE_MS = 400;
const POLL_MS = 5000;
// Delivery states that will still change; the others are final.
const UNDER_WAY = new Set(["pending", "sending", "queued", "sent"]);
const TONES = { delivered: "good", failed: "bad", undelivered: "bad", sent: "", queued: "warn", pending: "warn", sending: "warn" };

/** Whether an event is about one of this channel's conversations (`sms-+1….<tag>`). */
function ofChannel(event, channel, tag) {
  const meta = event.message?.metadata || {};
  if (meta.channel_id === channel.id || meta.delivery?.channel_id === channel.id) return true;
  const id = event.conversation_id || "";
  return /^(sms|whatsapp)-/.test(id) && id.endsWith(`.${tag}`);
}

export function channelMessages(channel, ctx) {
  const tag = channel.id.replace(/-/g, "").toLowerCase().slice(0, 12);
  const body = h("div", { class: "channel-messages" });
  const more = h("button", { type: "button", class: "more", hidden: true }, "Load more");
  const note = h(
    "p",
    { class: "muted hint" },
    "Updates live as messages arrive; delivery states are re-read every few seconds while a reply is on its way.",
  );
  const node = section("Recent messages", note, body, more);
  let items = [];
  let next = null;
  let pagesLoaded = 0;
  let timer = 0;
  let poll = 0;
  let stopped = false;
  let inflight = null;

  async function page(cursor) {
    return api("GET", `/api/channels/${encodeURIComponent(channel.id)}/messages${query({ limit: PAGE, cursor })}`);
  }

  function render() {
    body.replaceChildren(
      table(
        [
          { label: "Time", cell: (m) => when(m.created_at) },
          { label: "Direction", cell: (m) => (m.direction === "inbound" ? pill("in") : pill("out")) },
          { label: "From", cell: (m) => h("span", { class: "phone" }, m.from_number || "—") },
          { label: "To", cell: (m) => h("span", { class: "phone" }, m.to_number || "—") },
          { label: "Message", cell: (m) => h("span", { class: "preview" }, m.text_truncated ? `${m.text}…` : m.text) },
          {
            label: "Conversation",
            cell: (m) =>
              h(
                "a",
                { href: `/c/${encodeURIComponent(m.conversation_id)}`, "data-nav": "", title: m.conversation_id },
                "Open",
                h("span", { class: "visually-hidden" }, ` the conversation with ${m.direction === "inbound" ? m.from_number : m.to_number}`),
              ),
          },
          { label: "Delivery", cell: delivery },
        ],
        items,
        "No messages yet. Text the number, or wait for someone to.",
      ),
    );
    more.hidden = !next;
  }

  // Newer pages are merged in: what was loaded further down stays, so a refresh never
  // throws away the pages a person asked for.
  async function refresh() {
    if (inflight) return inflight;
    inflight = (async () => {
      try {
        const first = await page(null);
        if (stopped) return;
        const fresh = new Set(first.messages.map((m) => m.message_id));
        const older = items.filter((m) => !fresh.has(m.message_id));
        const oldest = first.messages.at(-1)?.created_at;
        items = first.messages.concat(oldest ? older.filter((m) => m.created_at <= oldest) : older);
        if (pagesLoaded <= 1) next = first.next_cursor || null;
        pagesLoaded = Math.max(pagesLoaded, 1);
        render();
      } finally {
        inflight = null;
        schedulePoll();
      }
    })();
    return inflight;
  }

  async function loadMore() {
    more.disabled = true;
    try {
      const answer = await page(next);
      const known = new Set(items.map((m) => m.message_id));
      items = items.concat(answer.messages.filter((m) => !known.has(m.message_id)));
      next = answer.next_cursor || null;
      pagesLoaded += 1;
      render();
    } finally {
      more.disabled = false;
    }
  }
  more.addEventListener("click", loadMore);

  function schedulePoll() {
    clearTimeout(poll);
    if (stopped || !items.some((m) => m.direction === "outbound" && UNDER_WAY.has(stateOf(m)))) return;
    poll = setTimeout(() => {
      if (document.visibilityState === "hidden") schedulePoll();
      else refresh().catch(() => {});
    }, POLL_MS);
  }

  const unsubscribe = ctx.onEvent((event) => {
    if (event.type === "reset") {
      refresh().catch(() => {});
      return;
    }
    if (!["message.created", "message.completed", "message.failed"].includes(event.type)) return;
    if (!ofChannel(event, channel, tag)) return;
    clearTimeout(timer);
    timer = setTimeout(() => refresh().catch(() => {}), DEBOUNCE_MS);
  });

  return {
    node,
    start: () => refresh(),
    stop: () => {
      stopped = true;
      clearTimeout(timer);
      clearTimeout(poll);
      unsubscribe();
    },
  };
}

function stateOf(message) {
  return message.delivery?.state || null;
}

/** An inbound message: "received". A reply: its delivery state, and Twilio's error. */
function delivery(message) {
  if (message.direction === "inbound") return h("span", { class: "muted" }, "received");
  const state = stateOf(message);
  if (!state) return h("span", { class: "muted" }, "not sent");
  const { error_code: code, error_message: text } = message.delivery;
  const error = code || text ? `Twilio error ${[code, text].filter(Boolean).join(": ")}` : null;
  return h(
    "span",
    { class: "delivery" },
    pill(state, TONES[state] ?? ""),
    error ? h("span", { class: "delivery-error error" }, error) : null,
  );
}
