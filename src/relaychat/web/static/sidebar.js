// The conversations sidebar: most recently active first, grouped by day, paged on scroll,
// kept live by the event stream. Titles reach the DOM through textContent only.
import { api } from "./api.js";
import { openShare } from "./share.js";

const PAGE = 30;
const UNTITLED = "New chat";

let list;
let empty;
let sentinel;
let archivedButton;
let handlers;
let conversations = []; // sorted, most recent first
let cursor = null;
let loading = false;
let exhausted = false;
let showArchived = false;
let activeId = null;
// A conversation's badge is its `unseen_external`: counted by the server (so it survives a
// reload), raised here as external messages arrive, zeroed when the person sees them.
const readSoon = new Map(); // conversation id -> timer of the pending "mark read"

export function initSidebar(options) {
  handlers = options;
  list = document.getElementById("convo-list");
  empty = document.getElementById("convo-empty");
  sentinel = document.getElementById("convo-more");
  archivedButton = document.getElementById("toggle-archived");
  archivedButton.addEventListener("click", () => {
    showArchived = !showArchived;
    archivedButton.setAttribute("aria-pressed", String(showArchived));
    archivedButton.textContent = showArchived ? "Back to chats" : "Archived";
    reload();
  });
  new IntersectionObserver((entries) => {
    if (entries.some((entry) => entry.isIntersecting)) loadMore();
  }, { root: document.getElementById("convo-scroll") }).observe(sentinel);
}

export async function reload() {
  conversations = [];
  cursor = null;
  exhausted = false;
  render();
  await loadMore();
}

async function loadMore() {
  if (loading || exhausted) return;
  loading = true;
  try {
    const query = new URLSearchParams({ limit: String(PAGE), archived: String(showArchived) });
    if (cursor) query.set("cursor", cursor);
    const page = await api("GET", `/api/convos?${query}`);
    for (const convo of page.conversations) upsert(convo, false);
    cursor = page.next_cursor;
    exhausted = !cursor;
    render();
  } catch (error) {
    handlers.onError(error);
  } finally {
    loading = false;
  }
  // Still room below the last item: fetch the next page now rather than wait for a scroll.
  const visible = sentinel.offsetParent !== null;
  if (!exhausted && visible && sentinel.getBoundingClientRect().top < window.innerHeight) loadMore();
}

function upsert(convo, rerender = true) {
  const id = convo.conversation_id;
  if (convo.unseen_external > 0 && isSeen(id)) markRead(convo);
  conversations = conversations.filter((c) => c.conversation_id !== id);
  if (Boolean(convo.archived) === showArchived) {
    conversations.push(convo);
    conversations.sort((a, b) => (a.updated_at < b.updated_at ? 1 : -1));
  }
  if (rerender) render();
}

export function getConversation(id) {
  return conversations.find((c) => c.conversation_id === id) || null;
}

export function setActive(id) {
  activeId = id;
  const convo = id ? getConversation(id) : null;
  if (convo?.unseen_external) markRead(convo);
  render();
}

function isSeen(id) {
  return id === activeId && document.visibilityState === "visible";
}

/** The person sees the conversation: drop its badge here and, soon, on the server. */
function markRead(convo) {
  convo.unseen_external = 0;
  const id = convo.conversation_id;
  // Several messages arriving together are one request.
  clearTimeout(readSoon.get(id));
  readSoon.set(id, setTimeout(() => {
    readSoon.delete(id);
    api("POST", `/api/convos/${encodeURIComponent(id)}/read`).catch(() => {}); // a badge, no more
  }, 250));
}

/** Apply one event of the stream. */
export function onEvent(event) {
  switch (event.type) {
    case "conversation.created":
    case "conversation.updated":
      upsert(event.conversation);
      break;
    case "conversation.deleted":
      conversations = conversations.filter((c) => c.conversation_id !== event.conversation_id);
      render();
      break;
    case "message.created": {
      const convo = getConversation(event.conversation_id);
      const external = event.message.role === "external" ? 1 : 0;
      if (convo) {
        const unseen = (convo.unseen_external || 0) + external; // as the server counts it
        upsert({ ...convo, updated_at: event.message.created_at, unseen_external: unseen });
      }
      else if (!showArchived) reload(); // created where we could not see it: fetch it
      else render();
      break;
    }
    default:
  }
}

document.addEventListener("visibilitychange", () => {
  const convo = activeId ? getConversation(activeId) : null;
  if (document.visibilityState === "visible" && convo?.unseen_external) {
    markRead(convo);
    render();
  }
});

function groupOf(iso, now) {
  const day = new Date(iso);
  const start = new Date(now.getFullYear(), now.getMonth(), now.getDate()).getTime();
  const t = day.getTime();
  if (t >= start) return "Today";
  if (t >= start - 86400000) return "Yesterday";
  if (t >= start - 7 * 86400000) return "Previous 7 days";
  return "Older";
}

// A title being edited in place: live updates redraw the list meanwhile, and must carry the
// same input (with what was typed so far) into the new list rather than drop it.
let renaming = null; // { id, input }
let redrawing = false;

function render() {
  // Moving the input into the new list fires blur in some browsers: that is not "done".
  redrawing = true;
  try {
    draw();
  } finally {
    redrawing = false;
  }
}

function draw() {
  const focused = document.activeElement?.closest?.("[data-convo]")?.dataset.convo;
  const typing = renaming && document.activeElement === renaming.input;
  const now = new Date();
  const fragment = document.createDocumentFragment();
  let group = null;
  let ul = null;
  for (const convo of conversations) {
    const name = groupOf(convo.updated_at, now);
    if (name !== group) {
      group = name;
      const heading = document.createElement("h2");
      heading.className = "group";
      heading.textContent = name;
      fragment.append(heading);
      ul = document.createElement("ul");
      fragment.append(ul);
    }
    ul.append(item(convo));
  }
  list.replaceChildren(fragment);
  if (renaming && !renaming.input.isConnected) renaming = null; // its conversation left
  if (typing && renaming) renaming.input.focus();
  empty.hidden = conversations.length > 0 || loading;
  empty.textContent = showArchived ? "No archived conversations." : "No conversations yet.";
  if (focused && !typing) list.querySelector(`[data-convo="${CSS.escape(focused)}"] a`)?.focus();
}

function item(convo) {
  const li = document.createElement("li");
  li.dataset.convo = convo.conversation_id;
  if (renaming?.id === convo.conversation_id) {
    li.append(renaming.input);
    return li;
  }
  if (convo.conversation_id === activeId) li.classList.add("active");
  const link = document.createElement("a");
  link.href = `/c/${encodeURIComponent(convo.conversation_id)}`;
  link.className = "convo-link";
  const title = document.createElement("span");
  title.className = "convo-title";
  title.textContent = convo.title || UNTITLED;
  link.append(title);
  if (convo.conversation_id === activeId) link.setAttribute("aria-current", "page");
  const count = convo.unseen_external || 0;
  if (count) {
    const badge = document.createElement("span");
    badge.className = "badge";
    badge.textContent = String(count);
    badge.setAttribute("aria-label", `${count} new external message${count > 1 ? "s" : ""}`);
    badge.title = "New external messages";
    link.append(badge);
  }
  link.addEventListener("click", (event) => {
    if (event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
    event.preventDefault();
    handlers.onOpen(convo.conversation_id);
  });
  const actions = document.createElement("span");
  actions.className = "convo-actions";
  const label = convo.title || UNTITLED;
  actions.append(
    button("✎", `Rename ${label}`, () => rename(li, convo)),
    button("↗", `Share ${label}`, () => openShare(convo).catch(handlers.onError)),
    button("◷", `Schedule ${label}`, () => handlers.onSchedule(convo.conversation_id)),
    button(convo.archived ? "⇪" : "⇩", `${convo.archived ? "Unarchive" : "Archive"} ${label}`, () =>
      archive(convo),
    ),
    button("✕", `Delete ${label}`, () => remove(convo)),
  );
  li.append(link, actions);
  return li;
}

function button(text, label, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = "icon";
  b.textContent = text;
  b.setAttribute("aria-label", label);
  b.title = label;
  b.addEventListener("click", onClick);
  return b;
}

function rename(li, convo) {
  const input = document.createElement("input");
  input.className = "rename";
  input.value = convo.title || "";
  input.maxLength = 500;
  input.setAttribute("aria-label", "New title");
  let done = false;
  const finish = async (save) => {
    if (done || redrawing) return;
    done = true;
    renaming = null;
    const title = input.value.trim();
    if (save && title && title !== convo.title) {
      try {
        upsert(await api("PATCH", `/api/convos/${encodeURIComponent(convo.conversation_id)}`, { title }));
        handlers.onRenamed?.(convo.conversation_id, title);
        return;
      } catch (error) {
        handlers.onError(error);
      }
    }
    render();
  };
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter") finish(true);
    if (event.key === "Escape") finish(false);
  });
  input.addEventListener("blur", () => finish(true));
  renaming = { id: convo.conversation_id, input };
  li.replaceChildren(input);
  input.focus();
  input.select();
}

async function archive(convo) {
  try {
    const changed = await api("PATCH", `/api/convos/${encodeURIComponent(convo.conversation_id)}`, {
      archived: !convo.archived,
    });
    upsert(changed);
    if (changed.archived && convo.conversation_id === activeId) handlers.onClosed();
  } catch (error) {
    handlers.onError(error);
  }
}

async function remove(convo) {
  const dialog = document.getElementById("confirm-dialog");
  document.getElementById("confirm-text").textContent =
    `Delete “${convo.title || UNTITLED}” and all its messages? This cannot be undone.`;
  dialog.returnValue = "";
  dialog.showModal();
  await new Promise((resolve) => dialog.addEventListener("close", resolve, { once: true }));
  if (dialog.returnValue !== "ok") return;
  try {
    await api("DELETE", `/api/convos/${encodeURIComponent(convo.conversation_id)}`);
    conversations = conversations.filter((c) => c.conversation_id !== convo.conversation_id);
    render();
    if (convo.conversation_id === activeId) handlers.onClosed();
  } catch (error) {
    handlers.onError(error);
  }
}

/** A conversation this tab just created, shown before its event arrives. */
export function added(convo) {
  if (!showArchived) upsert(convo);
}
