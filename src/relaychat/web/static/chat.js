// The message list of the open conversation: a tree of messages (regenerations and edits are
// siblings) of which one branch is shown. Rendering is incremental: a delta appends to one
// text node, a new message appends one element, switching branches replaces only the tail.
// Untrusted text goes in with textContent; only the server's rendered markdown uses innerHTML.
import { api } from "./api.js";

let listEl;
let scroller;
let emptyEl;
let jumpButton;
let handlers;

let conversation = null; // the open conversation's REST rendering, or null for a new chat
let agentNames = new Map();
let keyNames = new Map(); // API key id -> name, for the keys this person may list
let messages = new Map(); // id -> message
let children = new Map(); // parent id ("" for roots) -> [ids], oldest first
let chosen = new Map(); // parent id -> the child shown
let shown = []; // ids on screen, top to bottom
let nodes = new Map(); // id -> element
const generations = new Map(); // message id -> generation id, for Stop
let stick = true; // follow the newest text unless the person scrolled up

export function initChat(options) {
  handlers = options;
  listEl = document.getElementById("message-list");
  scroller = document.getElementById("messages");
  emptyEl = document.getElementById("chat-empty");
  jumpButton = document.getElementById("jump-latest");
  // Only a move up means the person reads: a scroll event arrives a frame after our own
  // scroll, and text added meanwhile must not look like the person left the bottom.
  let lastTop = 0;
  scroller.addEventListener("scroll", () => {
    if (scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 48) stick = true;
    else if (scroller.scrollTop < lastTop) stick = false;
    lastTop = scroller.scrollTop;
    jumpButton.hidden = stick;
  }, { passive: true });
  // Heights also change with no text added (a message leaving `content-visibility`'s
  // placeholder size, a rendered reply, the window): keep to the bottom through all of them.
  new ResizeObserver(() => followBottom()).observe(listEl);
  jumpButton.addEventListener("click", () => {
    stick = true;
    followBottom();
    jumpButton.hidden = true;
  });
}

export function setKeys(keys) {
  keyNames = new Map(keys.map((k) => [k.id, k.name]));
}

export function setAgents(agents) {
  agentNames = new Map(agents.map((a) => [a.agent_id, a.name]));
}

export function openedId() {
  return conversation ? conversation.conversation_id : null;
}

export function current() {
  return conversation;
}

/** The last message of the branch on screen (a share link copies up to it), or null. */
export function shownLeaf() {
  return shown.length ? shown[shown.length - 1] : null;
}

export function setConversation(convo) {
  conversation = convo;
}

/** Show a conversation: its messages, rendered by the server, on the latest branch. */
export async function show(convo) {
  conversation = convo;
  reset();
  if (!convo) return;
  const path = `/api/messages/${encodeURIComponent(convo.conversation_id)}?render=html`;
  const { messages: rows } = await api("GET", path);
  if (openedId() !== convo.conversation_id) return; // another was opened meanwhile
  for (const message of rows) add(message);
  stick = true;
  renderPath();
}

/** Show the branch that holds message `id` (at every fork above it), scroll to it and mark
 * it found; false when the open conversation has no such message. */
export function focusMessage(id) {
  if (!messages.has(id)) return false;
  for (let at = id; at; at = messages.get(at)?.parent_message_id) {
    chosen.set(messages.get(at).parent_message_id || "", at);
  }
  stick = false; // the person reads this message now, not the newest one
  renderPath();
  for (const node of listEl.querySelectorAll(".msg.found")) node.classList.remove("found");
  const node = nodes.get(id);
  node.classList.add("found");
  node.tabIndex = -1;
  node.scrollIntoView({ block: "center" });
  node.focus({ preventScroll: true });
  return true;
}

function reset() {
  messages = new Map();
  children = new Map();
  chosen = new Map();
  shown = [];
  nodes = new Map();
  listEl.replaceChildren();
  emptyEl.hidden = false;
  jumpButton.hidden = true;
}

function add(message) {
  const known = messages.has(message.message_id);
  messages.set(message.message_id, { ...messages.get(message.message_id), ...message });
  // Listed replies name their generation, so Stop works after a reload too.
  if (message.generation_id) generations.set(message.message_id, message.generation_id);
  if (known) return;
  const key = message.parent_message_id || "";
  const siblings = children.get(key) || [];
  siblings.push(message.message_id);
  children.set(key, siblings);
  chosen.set(key, message.message_id); // the newest branch is the one shown
}

function path() {
  const ids = [];
  let key = "";
  for (;;) {
    const id = chosen.get(key);
    if (!id) return ids;
    ids.push(id);
    key = id;
  }
}

function renderPath() {
  const next = path();
  let same = 0;
  while (same < shown.length && same < next.length && shown[same] === next[same]) same += 1;
  for (const id of shown.slice(same)) nodes.get(id)?.remove();
  const fragment = document.createDocumentFragment();
  for (const id of next.slice(same)) {
    let node = nodes.get(id);
    if (node) {
      fillActions(node, messages.get(id)); // its siblings may have changed while hidden
    } else {
      node = build(messages.get(id));
      nodes.set(id, node);
    }
    fragment.append(node);
  }
  listEl.append(fragment);
  for (const id of next.slice(0, same)) updateNav(id);
  shown = next;
  emptyEl.hidden = shown.length > 0;
  followBottom();
}

let scrollQueued = false;

// Scroll once per frame, not per delta: reading scrollHeight forces a layout of the list.
function followBottom() {
  if (!stick || scrollQueued) return;
  scrollQueued = true;
  requestAnimationFrame(() => {
    scrollQueued = false;
    if (stick) scroller.scrollTop = scroller.scrollHeight;
  });
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function button(text, label, onClick, className = "small") {
  const b = el("button", className, text);
  b.type = "button";
  if (label) b.setAttribute("aria-label", label);
  if (label) b.title = label;
  b.addEventListener("click", onClick);
  return b;
}

function author(message) {
  if (message.role === "user") return message.sender || "You";
  if (message.role === "assistant") {
    const agentId = conversation?.agent_id;
    if (agentId && agentNames.has(agentId)) return agentNames.get(agentId);
    return message.sender || message.model || "Assistant";
  }
  if (message.role === "external") return message.sender || message.metadata?.source || "External";
  if (message.role === "tool") return "Tool";
  return message.role;
}

// A message that is only tool calls or results shows them open up to this size; a longer
// one, and an agent's steps beside its answer, start folded, the summary still naming the
// tool (as markdown.py's SHORT_TOOL_* for the server's HTML).
const SHORT_TOOL_CHARS = 400;
const SHORT_TOOL_LINES = 8;

function toolParts(message) {
  return (message.content || []).filter((part) => part.type === "tool_call" || part.type === "tool_result");
}

/** The name of the tool a result answers: the call with its id, in this message or above it
 * (an OpenAI-style `role: tool` message carries the call's id only). */
function calledTool(message, callId) {
  for (let at = message; at; at = messages.get(at.parent_message_id)) {
    const call = (at.content || []).find((part) => part.type === "tool_call" && part.id === callId);
    if (call) return call.name;
  }
  return null;
}

/** A tool call (name and arguments) or result (name, call id and content) as a disclosure,
 * open with `unfold` when short. All text goes in as textContent. */
function toolBlock(part, message, unfold) {
  const call = part.type === "tool_call";
  const callId = call ? part.id : part.tool_call_id;
  const name = part.name || (call ? null : calledTool(message, callId)) || "tool";
  const payload = call ? part.arguments ?? part.raw_arguments : part.content;
  const shown = typeof payload === "string" ? payload : JSON.stringify(payload ?? null, null, 2);
  const details = el("details", `tool tool-${call ? "call" : "result"}${part.is_error ? " tool-error" : ""}`);
  details.open = unfold && shown.length <= SHORT_TOOL_CHARS && shown.split("\n").length <= SHORT_TOOL_LINES;
  const summary = el("summary", "", `${call ? "Tool call" : part.is_error ? "Tool error" : "Tool result"}: `);
  summary.append(el("code", "", name));
  if (callId) summary.append(el("span", "tool-id", callId));
  details.append(summary, el("pre", "", shown));
  return details;
}

/** What Copy takes: the text, or the tool payloads of a message that has none. */
function copyText(message) {
  if (message?.text) return message.text;
  return toolParts(message || {}).map((part) => {
    const payload = part.type === "tool_call" ? part.arguments : part.content;
    return typeof payload === "string" ? payload : JSON.stringify(payload);
  }).join("\n\n");
}

function build(message) {
  const node = el("article", `msg msg-${message.role}`);
  node.dataset.id = message.message_id;
  node.setAttribute("aria-label", `${author(message)} said`);
  const head = el("header", "msg-head");
  head.append(el("span", "msg-author", author(message)));
  if (message.role === "external") {
    head.append(el("span", "tag", "external"));
    const meta = message.metadata || {};
    const facts = [];
    if (meta.source && meta.source !== author(message)) facts.push(`via ${meta.source}`);
    if (meta.phoneNumber) facts.push(String(meta.phoneNumber));
    const key = message.api_key_id;
    if (key) facts.push(keyNames.has(key) ? `key “${keyNames.get(key)}”` : key.startsWith("env:") ? "system key" : "API key");
    if (facts.length) head.append(el("span", "msg-source", facts.join(" · ")));
  } else if (message.role === "assistant" && message.model && author(message) !== message.model) {
    head.append(el("span", "msg-source", message.model));
  }
  node.append(head);
  const body = el("div", "msg-body");
  node.append(body);
  fillBody(body, message);
  if (message.role === "external") node.append(metadataDetails(message.metadata || {}));
  node.append(el("div", "msg-status"), el("footer", "msg-actions"));
  refreshStatus(node, message);
  fillActions(node, message);
  return node;
}

function metadataDetails(meta) {
  const details = el("details", "msg-meta");
  details.append(el("summary", "", "Details"));
  const list = el("dl");
  for (const [name, value] of Object.entries(meta)) {
    if (name === "source" || name === "phoneNumber") continue;
    list.append(el("dt", "", name), el("dd", "", typeof value === "string" ? value : JSON.stringify(value)));
  }
  if (!list.childElementCount) list.append(el("dd", "muted", "No other metadata."));
  details.append(list);
  return details;
}

function fillBody(body, message) {
  if (message.role === "tool") {
    // An OpenAI-style tool result (/v1 chat completions): its call's id and content, and the
    // tool's name from the call above it.
    body.className = "msg-body tools";
    body.replaceChildren(...toolParts(message).map((part) => toolBlock(part, message, true)));
    if (!body.childElementCount) body.append(el("p", "muted", message.text || "(empty result)"));
    return;
  }
  if (message.role === "assistant" && typeof message.html === "string") {
    body.className = "msg-body md";
    body.innerHTML = message.html; // rendered and escaped by the server (relaychat.markdown)
    addCopyButtons(body);
    return;
  }
  body.className = message.role === "assistant" ? "msg-body md streaming" : "msg-body plain";
  body.replaceChildren(document.createTextNode(message.text || ""));
  // A stored turn that only calls tools (sent back to /v1 with the history) has no text:
  // its calls are what it says. The empty text node after them takes the next delta.
  if (message.role === "assistant") {
    const tools = toolParts(message);
    if (tools.length) body.append(...tools.map((part) => toolBlock(part, message, !message.text)), document.createTextNode(""));
  }
}

function addCopyButtons(body) {
  for (const pre of body.querySelectorAll("pre")) {
    const copy = button("Copy", "Copy code", async () => {
      await navigator.clipboard?.writeText(pre.querySelector("code")?.textContent || pre.textContent);
      copy.textContent = "Copied";
      setTimeout(() => (copy.textContent = "Copy"), 1500);
    }, "small copy");
    pre.before(copy);
  }
}

const STATUS_TEXT = {
  streaming: "",
  unfinished: "Stopped before the end",
  error: "Failed",
};

function refreshStatus(node, message) {
  const status = node.querySelector(".msg-status");
  status.replaceChildren();
  node.classList.toggle("is-streaming", message.status === "streaming");
  if (message.status === "streaming") {
    status.append(el("span", "typing", "Writing…"));
    return;
  }
  if (message.status !== "unfinished" && message.status !== "error") return;
  const code = message.error ? ` (${message.error})` : message.status === "unfinished" ? " (unfinished)" : "";
  status.append(el("span", message.status === "error" ? "error" : "warning", `${STATUS_TEXT[message.status]}${code}`));
  status.append(button("Retry", "Retry this reply", () => regenerate(message.message_id)));
}

function fillActions(node, message) {
  const footer = node.querySelector(".msg-actions");
  footer.replaceChildren();
  const key = message.parent_message_id || "";
  const siblings = children.get(key) || [];
  if (siblings.length > 1) {
    const index = siblings.indexOf(message.message_id);
    const nav = el("span", "siblings");
    const prev = button("‹", "Previous version", () => switchTo(key, siblings[index - 1]));
    prev.disabled = index <= 0;
    const next = button("›", "Next version", () => switchTo(key, siblings[index + 1]));
    next.disabled = index >= siblings.length - 1;
    nav.append(prev, el("span", "count", `${index + 1} / ${siblings.length}`), next);
    footer.append(nav);
  }
  // Handlers look the element and message up when clicked: a message refilled in place
  // (replaceMessage) keeps its element but gets newer data.
  const id = message.message_id;
  if (message.role === "user") {
    footer.append(button("Edit", "Edit this message", () => edit(nodes.get(id), messages.get(id))));
  }
  if (message.role === "assistant" && message.status !== "streaming") {
    footer.append(button("Regenerate", "Regenerate this reply", () => regenerate(message.message_id)));
  }
  if (message.role !== "assistant" || message.status !== "streaming") {
    footer.append(button("Copy", "Copy message text", () => navigator.clipboard?.writeText(copyText(messages.get(id)))));
  }
}

function updateNav(id) {
  const node = nodes.get(id);
  if (node) fillActions(node, messages.get(id));
}

function switchTo(key, id) {
  if (!id) return;
  chosen.set(key, id);
  renderPath();
  nodes.get(id)?.querySelector(".siblings button:not([disabled])")?.focus();
}

function edit(node, message) {
  const body = node.querySelector(".msg-body");
  const form = el("form", "edit");
  const area = el("textarea");
  area.value = message.text || "";
  area.rows = Math.min(12, Math.max(2, area.value.split("\n").length));
  area.setAttribute("aria-label", "Edited message");
  const cancel = button("Cancel", null, () => {
    form.replaceWith(body);
  });
  const save = el("button", "primary small", "Save & send");
  save.type = "submit";
  form.append(area, el("div", "row"), save, cancel);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = area.value.trim();
    if (!text) return;
    save.disabled = true;
    try {
      // An explicit null parent starts a new root: the edit of a first message.
      const answer = await api("POST", `/api/messages/${encodeURIComponent(openedId())}`, {
        text,
        parent_message_id: message.parent_message_id ?? null,
      });
      form.replaceWith(body);
      accepted(answer);
    } catch (error) {
      save.disabled = false;
      handlers.onError(error);
    }
  });
  area.addEventListener("keydown", (event) => {
    if (event.key === "Escape") form.replaceWith(body);
  });
  body.replaceWith(form);
  area.focus();
}

async function regenerate(messageId) {
  try {
    const started = await api(
      "POST",
      `/api/messages/${encodeURIComponent(openedId())}/${encodeURIComponent(messageId)}/regenerate`,
    );
    generations.set(started.response_message_id, started.generation_id);
    handlers.onBusy();
  } catch (error) {
    handlers.onError(error);
  }
}

/** The answer of POST /api/messages from this tab: show the message now, note its reply. */
export function accepted(answer) {
  if (answer.generation_id) generations.set(answer.response_message_id, answer.generation_id);
  onEvent({ type: "message.created", conversation_id: openedId(), message: answer.message });
}

/** The generation writing the branch on screen, if one is running. */
export function runningGeneration() {
  for (const id of [...shown].reverse()) {
    const message = messages.get(id);
    if (message?.status === "streaming" && generations.has(id)) return generations.get(id);
  }
  return null;
}

export function isStreaming() {
  return shown.some((id) => messages.get(id)?.status === "streaming");
}

/** The id of the last message on screen (the parent of the next one sent). */
export function leafId() {
  return shown.length ? shown[shown.length - 1] : null;
}

/** Apply one event of the stream. */
export function onEvent(event) {
  if (event.type === "generation.started") generations.set(event.message_id, event.generation_id);
  if (!conversation || event.conversation_id !== conversation.conversation_id) return;
  switch (event.type) {
    case "message.created": {
      const known = messages.has(event.message.message_id);
      add(event.message);
      if (known) {
        replaceMessage(event.message.message_id);
      } else {
        renderPath();
        const parent = event.message.parent_message_id;
        if (parent) updateNav(parent);
      }
      handlers.onBusy();
      break;
    }
    case "message.delta": {
      const message = messages.get(event.message_id);
      const node = nodes.get(event.message_id);
      if (!message) return;
      message.text = (message.text || "") + event.delta;
      if (node) {
        const body = node.querySelector(".msg-body");
        const last = body.lastChild;
        if (last && last.nodeType === Node.TEXT_NODE) last.appendData(event.delta);
        else body.append(document.createTextNode(event.delta));
        followBottom();
      }
      break;
    }
    case "message.tool_call":
    case "message.tool_result": {
      const node = nodes.get(event.message_id);
      const part = event.tool_call || event.tool_result;
      if (!node || !part) return;
      const typed = { type: event.type === "message.tool_call" ? "tool_call" : "tool_result", ...part };
      const message = messages.get(event.message_id);
      if (message) message.content = [...(message.content || []), typed];
      // Folded: while a reply streams, its steps lead to the answer (which the server's
      // rendering shows them beside when it ends).
      node.querySelector(".msg-body").append(toolBlock(typed, message || {}, false), document.createTextNode(""));
      followBottom();
      break;
    }
    case "message.completed":
      completed(event.message);
      break;
    case "message.failed": {
      const message = messages.get(event.message_id);
      if (!message) return;
      Object.assign(message, { status: "error", error: event.error });
      replaceMessage(event.message_id);
      handlers.onBusy();
      break;
    }
    case "generation.aborted": {
      const message = messages.get(event.message_id);
      if (message && message.status === "streaming") {
        Object.assign(message, { status: "unfinished", error: event.reason === "interrupted" ? "interrupted" : message.error });
        refreshStatus(nodes.get(event.message_id), message);
      }
      handlers.onBusy();
      break;
    }
    default:
  }
}

async function completed(message) {
  add(message);
  handlers.onBusy();
  if (message.role !== "assistant") {
    replaceMessage(message.message_id);
    return;
  }
  // The final text as the server renders it: the page never turns markdown into HTML itself.
  // The streamed text stays on screen until it arrives, so nothing jumps in between.
  const node = nodes.get(message.message_id);
  if (node) refreshStatus(node, messages.get(message.message_id));
  try {
    const id = encodeURIComponent(message.message_id);
    const convo = encodeURIComponent(message.conversation_id);
    const rendered = await api("GET", `/api/messages/${convo}/${id}?render=html`);
    if (!messages.has(rendered.message_id)) return;
    add(rendered);
  } catch (error) {
    handlers.onError(error);
  }
  replaceMessage(message.message_id);
}

function replaceMessage(id) {
  const old = nodes.get(id);
  const fresh = build(messages.get(id));
  if (!old?.isConnected) {
    nodes.set(id, fresh);
    return;
  }
  // Refill the element on screen rather than swap it: a new element would start at the
  // placeholder height of `content-visibility: auto`, and the list would jump.
  old.className = fresh.className;
  old.setAttribute("aria-label", fresh.getAttribute("aria-label"));
  old.replaceChildren(...fresh.childNodes);
  followBottom();
}

export function setTitle(title) {
  if (conversation) conversation.title = title;
}
