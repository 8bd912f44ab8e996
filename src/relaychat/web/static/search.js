// The sidebar's search box: results as you type (debounced), each a conversation title and a
// snippet whose matched words the server marks as data; <mark> elements are built here, and
// every text goes in through textContent. Enter opens the first result, arrows move between
// results, Escape goes back to the conversation list.
import { api } from "./api.js";

const DELAY_MS = 200;
const UNTITLED = "New chat";

let input;
let panel;
let list;
let status;
let conversations; // the conversation list, hidden while results show
let handlers;
let timer = null;
let ticket = 0; // the latest search asked for; older answers are dropped
let pending = null; // the promise of the search in flight

export function initSearch(options) {
  handlers = options;
  input = document.getElementById("convo-search");
  panel = document.getElementById("search-panel");
  list = document.getElementById("search-results");
  status = document.getElementById("search-status");
  conversations = document.getElementById("convo-scroll");
  input.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => { pending = run(); }, DELAY_MS);
  });
  input.addEventListener("keydown", async (event) => {
    if (event.key === "Enter") {
      event.preventDefault();
      clearTimeout(timer);
      await (timer !== null ? (pending = run()) : pending);
      list.querySelector("a")?.click();
    } else if (event.key === "ArrowDown") {
      event.preventDefault();
      list.querySelector("a")?.focus();
    } else if (event.key === "Escape" && input.value) {
      event.preventDefault();
      clear();
    }
  });
  list.addEventListener("keydown", (event) => {
    const links = [...list.querySelectorAll("a")];
    const at = links.indexOf(document.activeElement);
    if (at === -1) return;
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      const next = at + (event.key === "ArrowDown" ? 1 : -1);
      (next < 0 ? input : links[Math.min(next, links.length - 1)]).focus();
    } else if (event.key === "Escape") {
      event.preventDefault();
      input.focus();
    }
  });
}

function clear() {
  input.value = "";
  ticket += 1;
  timer = null;
  show(false);
}

function show(results) {
  panel.hidden = !results;
  conversations.hidden = results;
}

async function run() {
  timer = null;
  const q = input.value.trim();
  const mine = ++ticket;
  if (!q) {
    show(false);
    return;
  }
  show(true);
  let page;
  try {
    page = await api("GET", `/api/search?${new URLSearchParams({ q, limit: "20" })}`);
  } catch (error) {
    if (mine !== ticket) return;
    list.replaceChildren();
    if (error?.code === "search_query_empty") status.textContent = "Type a word to look for.";
    else {
      status.textContent = "";
      handlers.onError(error);
    }
    return;
  }
  if (mine !== ticket) return;
  const count = page.results.length;
  status.textContent = count ? `${count}${page.next_cursor ? "+" : ""} result${count > 1 ? "s" : ""}` : "No results.";
  list.replaceChildren(...page.results.map(result));
}

function result(hit) {
  const li = document.createElement("li");
  const link = document.createElement("a");
  link.className = "search-hit";
  link.href = `/c/${encodeURIComponent(hit.conversation_id)}`;
  const title = document.createElement("span");
  title.className = "search-title";
  title.textContent = hit.conversation_title || UNTITLED;
  const snippet = document.createElement("span");
  snippet.className = "search-snippet";
  for (const segment of hit.snippet) {
    if (segment.match) {
      const mark = document.createElement("mark");
      mark.textContent = segment.text;
      snippet.append(mark);
    } else {
      snippet.append(document.createTextNode(segment.text));
    }
  }
  link.append(title, snippet);
  link.addEventListener("click", (event) => {
    if (event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
    event.preventDefault();
    handlers.onOpen(hit.conversation_id, hit.message_id);
  });
  li.append(link);
  return li;
}
