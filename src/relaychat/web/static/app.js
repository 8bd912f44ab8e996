// The entry module: sign-in, the page's routes (/, /login, /c/<id> and the console pages),
// the event stream, and the wiring between sidebar, chat and composer, which never touch
// each other directly.
import * as auth from "./api.js";
import { api, session } from "./api.js";
import { openStream } from "./stream.js";
import * as sidebar from "./sidebar.js";
import * as search from "./search.js";
import * as chat from "./chat.js";
import * as composer from "./composer.js";

const $ = (id) => document.getElementById(id);
let stream = null;
let registering = false;

// The console pages, each an ES module loaded the first time it is opened, so the chat's
// first load does not pay for them. A page module exports `mount(root, ctx)`, which may
// return a function that unmounts it.
const PAGES = {
  dashboard: { title: "Dashboard", module: "./page-dashboard.js" },
  agents: { title: "Agents", module: "./page-agents.js" },
  keys: { title: "API keys", module: "./page-keys.js" },
  webhooks: { title: "Webhooks", module: "./page-webhooks.js" },
  channels: { title: "Channels", module: "./page-channels.js" },
  schedules: { title: "Schedules", module: "./page-schedules.js" },
  profile: { title: "Profile", module: "./page-profile.js" },
  admin: { title: "Admin", module: "./page-admin.js" },
};
let page = null; // { name, sub, unmount, listeners }
let routing = 0;

function showLogin(reason) {
  $("app-view").hidden = true;
  $("login-view").hidden = false;
  $("login-reason").textContent = reason || "";
  $("login-reason").hidden = !reason;
  if (location.pathname !== "/login") history.replaceState(null, "", "/login");
  document.querySelector("#login-form [name=email]").focus();
}

function setRegistering(on) {
  registering = on;
  $("login-title").textContent = on ? "Create an account" : "Sign in";
  $("login-submit").textContent = on ? "Create account" : "Sign in";
  $("name-field").hidden = !on;
  $("register-toggle").textContent = on ? "I have an account: sign in" : "Create an account";
  document.querySelector("#login-form [name=password]").autocomplete = on ? "new-password" : "current-password";
}

function initLogin() {
  if (document.body.dataset.allowRegistration === "true") $("register-switch").hidden = false;
  $("register-toggle").addEventListener("click", () => setRegistering(!registering));
  $("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.currentTarget;
    const error = $("login-error");
    error.hidden = true;
    $("login-submit").disabled = true;
    try {
      const { email, password } = form.elements;
      if (registering) await auth.register(form.elements.name.value.trim(), email.value.trim(), password.value);
      else await auth.login(email.value.trim(), password.value);
      form.reset();
    } catch (failure) {
      error.textContent = failure.message;
      error.hidden = false;
    } finally {
      $("login-submit").disabled = false;
    }
  });
}

function reportError(error) {
  if (error?.status === 401) return; // the session module shows the login page
  const box = $("composer-error");
  box.textContent = error.message || String(error);
  box.hidden = false;
}

function conversationIdFromPath() {
  const match = location.pathname.match(/^\/c\/([^/]+)$/);
  return match ? decodeURIComponent(match[1]) : null;
}

/** The console page the URL names (`/keys`, `/keys/<id>`), or null for the chat. */
function pageFromPath() {
  const match = location.pathname.match(/^\/([a-z]+)(?:\/([^/]+))?\/?$/);
  if (!match || !Object.hasOwn(PAGES, match[1])) return null;
  return { name: match[1], sub: match[2] ? decodeURIComponent(match[2]) : null };
}

/** Show what the URL names: a console page, or the chat with a conversation (or none). */
function route() {
  const target = pageFromPath();
  if (target) return showPage(target.name, target.sub);
  return open(conversationIdFromPath(), { push: false });
}

/** Go to a URL of this app without reloading the page. */
function navigate(url) {
  if (location.pathname + location.search !== url) history.pushState(null, "", url);
  return route();
}

function closeDrawer() {
  document.body.classList.remove("sidebar-open");
  $("show-sidebar").setAttribute("aria-expanded", "false");
  $("show-sidebar-console").setAttribute("aria-expanded", "false");
}

function unmountPage() {
  if (!page) return;
  try {
    page.unmount?.();
  } finally {
    page = null;
    $("console-body").replaceChildren();
  }
}

function markNav(name) {
  for (const link of document.querySelectorAll("a[data-page]")) {
    if (link.dataset.page === name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

async function showPage(name, sub) {
  const ticket = ++routing;
  closeDrawer();
  unmountPage();
  const spec = PAGES[name];
  $("console-title").textContent = spec.title;
  document.title = `${spec.title} · relaychat`;
  document.querySelector(".chat").hidden = true;
  $("console").hidden = false;
  sidebar.setActive(null);
  markNav(name);
  const root = $("console-body");
  root.replaceChildren();
  const listeners = new Set();
  const ctx = {
    user: auth.currentUser(),
    sub,
    navigate,
    setTitle: (title) => {
      $("console-title").textContent = title;
      document.title = `${title} · relaychat`;
    },
    // Events of the owner's stream, while this page is shown.
    onEvent: (listener) => {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
  page = { name, sub, listeners, unmount: null };
  const current = page;
  try {
    const module = await import(spec.module);
    if (ticket !== routing) return;
    const unmount = await module.mount(root, ctx);
    if (page === current) current.unmount = typeof unmount === "function" ? unmount : null;
    else if (typeof unmount === "function") unmount();
  } catch (error) {
    if (ticket !== routing || error?.status === 401) return;
    root.replaceChildren();
    const box = document.createElement("p");
    box.className = "error";
    box.setAttribute("role", "alert");
    box.textContent = `This page could not be shown: ${error.message || error}`;
    root.append(box);
  }
}

async function open(id, { push = true, message = null } = {}) {
  ++routing;
  if (push) {
    const url = id ? `/c/${encodeURIComponent(id)}` : "/";
    if (location.pathname !== url) history.pushState(null, "", url);
  }
  // A console page may have added or changed agents and keys: the picker must offer them,
  // or a conversation with a new agent would show (and send with) another model.
  const fromPage = page !== null;
  unmountPage();
  markNav(null);
  $("console").hidden = true;
  document.querySelector(".chat").hidden = false;
  if (fromPage) await loadChoices();
  closeDrawer();
  $("composer-error").hidden = true;
  let convo = null;
  if (id) {
    try {
      convo = sidebar.getConversation(id) || (await api("GET", `/api/convos/${encodeURIComponent(id)}`));
    } catch (error) {
      reportError(error);
    }
  }
  sidebar.setActive(convo ? convo.conversation_id : null);
  showHeader(convo);
  composer.showConversation(convo);
  try {
    await chat.show(convo);
  } catch (error) {
    reportError(error);
  }
  composer.setBusy(chat.isStreaming());
  // A search result: its message (on its branch) has the focus, not the message box.
  if (!(message && convo && chat.focusMessage(message))) composer.focus();
}

/** The models and agents of the picker, and the key names shown on external messages. */
async function loadChoices() {
  try {
    const [{ endpoints }, { agents }, { keys }] = await Promise.all([
      api("GET", "/api/endpoints"),
      api("GET", "/api/agents").catch(() => ({ agents: [] })),
      api("GET", "/api/keys").catch(() => ({ keys: [] })),
    ]);
    composer.setChoices(endpoints, agents);
    chat.setAgents(agents);
    chat.setKeys(keys);
  } catch (error) {
    reportError(error);
  }
}

function showHeader(convo) {
  $("chat-title").textContent = convo?.title || "New chat";
  document.title = convo?.title ? `${convo.title} · relaychat` : "relaychat";
}

function onEvent(event) {
  if (page) {
    for (const listener of page.listeners) listener(event);
  }
  if (event.type === "reset") {
    sidebar.reload();
    if (!page) open(chat.openedId(), { push: false });
    return;
  }
  sidebar.onEvent(event);
  chat.onEvent(event);
  const id = chat.openedId();
  if (!page && event.conversation_id === id) {
    if (event.type === "conversation.updated") {
      chat.setConversation(event.conversation);
      showHeader(event.conversation);
    } else if (event.type === "conversation.deleted") {
      open(null);
    }
  }
}

function setConnection(state) {
  const box = $("connection");
  box.textContent = state === "live" ? "" : "Reconnecting…";
  box.classList.toggle("down", state !== "live");
}

function showUser(user) {
  $("user-name").textContent = user.name;
  // Only a link: the API refuses admin routes to anyone else whatever the page shows.
  document.querySelector("a[data-page=admin]").hidden = user.role !== "admin";
}

async function start(user) {
  // The app appears once its state is loaded: an early click cannot race the loading.
  $("login-view").hidden = true;
  showUser(user);
  if (location.pathname === "/login") history.replaceState(null, "", "/");
  stream?.close();
  stream = openStream(onEvent, setConnection);
  await loadChoices();
  await sidebar.reload();
  await route();
  $("app-view").hidden = false;
  if (!page) composer.focus();
}

function initShortcuts() {
  document.addEventListener("keydown", (event) => {
    const key = event.key.toLowerCase();
    if ((event.ctrlKey || event.metaKey) && event.shiftKey && key === "o") {
      event.preventDefault();
      open(null);
    } else if (key === "escape" && !page && chat.runningGeneration() && !event.target.closest?.("form.edit, dialog")) {
      event.preventDefault();
      stop();
    }
  });
}

async function stop() {
  const generation = chat.runningGeneration();
  if (!generation) return;
  try {
    await api("POST", `/api/generations/${encodeURIComponent(generation)}/abort`);
  } catch (error) {
    reportError(error);
  }
}

function init() {
  initLogin();
  initShortcuts();
  sidebar.initSidebar({
    onOpen: (id) => open(id),
    onClosed: () => open(null),
    onError: reportError,
    onSchedule: (id) => navigate(`/schedules?conversation=${encodeURIComponent(id)}`),
    onRenamed: (id, title) => {
      if (chat.openedId() === id) {
        chat.setTitle(title);
        $("chat-title").textContent = title;
      }
    },
  });
  search.initSearch({
    onOpen: (id, message) => open(id, { message }),
    onError: reportError,
  });
  chat.initChat({ onError: reportError, onBusy: () => composer.setBusy(chat.isStreaming()) });
  composer.initComposer({
    current: () => chat.current(),
    leafId: () => chat.leafId(),
    onStop: stop,
    onCreated: (convo) => {
      sidebar.added(convo);
      chat.setConversation(convo);
      sidebar.setActive(convo.conversation_id);
      showHeader(convo);
      history.pushState(null, "", `/c/${encodeURIComponent(convo.conversation_id)}`);
    },
    onSent: (answer) => {
      chat.accepted(answer);
      composer.setBusy(chat.isStreaming());
    },
    onChanged: (convo) => {
      sidebar.added(convo);
      chat.setConversation(convo);
      showHeader(convo);
    },
  });
  $("new-chat").addEventListener("click", () => open(null));
  $("logout").addEventListener("click", () => auth.logout());
  for (const button of [$("show-sidebar"), $("show-sidebar-console")]) {
    button.addEventListener("click", () => {
      const opened = document.body.classList.toggle("sidebar-open");
      button.setAttribute("aria-expanded", String(opened));
    });
  }
  // Links to the app's own pages (`data-page` in the sidebar, `data-nav` in pages) change
  // the view without a reload; a modified click still opens a new tab.
  document.addEventListener("click", (event) => {
    const link = event.target.closest?.("a[data-page], a[data-nav]");
    if (!link || event.defaultPrevented || event.button !== 0) return;
    if (event.ctrlKey || event.metaKey || event.shiftKey || event.altKey) return;
    event.preventDefault();
    navigate(link.getAttribute("href"));
  });
  window.addEventListener("popstate", () => route());
  session.addEventListener("signedin", (event) => start(event.detail));
  session.addEventListener("userchanged", (event) => showUser(event.detail));
  session.addEventListener("signedout", (event) => {
    stream?.close();
    stream = null;
    showLogin(event.detail.reason);
  });
  auth.resume().then((ok) => {
    if (!ok && !auth.currentUser()) showLogin("");
  });
}

init();
