// The entry module: sign-in, the page's routes (/, /login, /c/<id>), the event stream, and
// the wiring between sidebar, chat and composer, which never touch each other directly.
import * as auth from "./api.js";
import { api, session } from "./api.js";
import { openStream } from "./stream.js";
import * as sidebar from "./sidebar.js";
import * as chat from "./chat.js";
import * as composer from "./composer.js";

const $ = (id) => document.getElementById(id);
let stream = null;
let registering = false;

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

async function open(id, { push = true } = {}) {
  if (push) {
    const url = id ? `/c/${encodeURIComponent(id)}` : "/";
    if (location.pathname !== url) history.pushState(null, "", url);
  }
  document.body.classList.remove("sidebar-open");
  $("show-sidebar").setAttribute("aria-expanded", "false");
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
  composer.focus();
}

function showHeader(convo) {
  $("chat-title").textContent = convo?.title || "New chat";
  document.title = convo?.title ? `${convo.title} · relaychat` : "relaychat";
}

function onEvent(event) {
  if (event.type === "reset") {
    sidebar.reload();
    open(chat.openedId(), { push: false });
    return;
  }
  sidebar.onEvent(event);
  chat.onEvent(event);
  const id = chat.openedId();
  if (event.conversation_id === id) {
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

async function start(user) {
  // The app appears once its state is loaded: an early click cannot race the loading.
  $("login-view").hidden = true;
  $("user-name").textContent = user.name;
  if (location.pathname === "/login") history.replaceState(null, "", "/");
  stream?.close();
  stream = openStream(onEvent, setConnection);
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
  await sidebar.reload();
  await open(conversationIdFromPath(), { push: false });
  $("app-view").hidden = false;
  composer.focus();
}

function initShortcuts() {
  document.addEventListener("keydown", (event) => {
    const key = event.key.toLowerCase();
    if ((event.ctrlKey || event.metaKey) && event.shiftKey && key === "o") {
      event.preventDefault();
      open(null);
    } else if (key === "escape" && chat.runningGeneration() && !event.target.closest?.("form.edit, dialog")) {
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
    onRenamed: (id, title) => {
      if (chat.openedId() === id) {
        chat.setTitle(title);
        $("chat-title").textContent = title;
      }
    },
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
  $("show-sidebar").addEventListener("click", () => {
    const opened = document.body.classList.toggle("sidebar-open");
    $("show-sidebar").setAttribute("aria-expanded", String(opened));
  });
  window.addEventListener("popstate", () => open(conversationIdFromPath(), { push: false }));
  session.addEventListener("signedin", (event) => start(event.detail));
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
