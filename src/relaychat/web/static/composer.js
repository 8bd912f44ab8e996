// The composer: the message box (Enter sends, Shift+Enter breaks the line), Stop, the
// model or agent picker, and the conversation settings. A failed send keeps the text.
import { api } from "./api.js";

let form;
let area;
let stopButton;
let sendButton;
let errorEl;
let picker;
let settingsForm;
let settingsToggle;
let handlers;
let pending = {}; // settings chosen before the conversation exists

export function initComposer(options) {
  handlers = options;
  form = document.getElementById("composer");
  area = document.getElementById("composer-text");
  stopButton = document.getElementById("stop");
  sendButton = document.getElementById("send");
  errorEl = document.getElementById("composer-error");
  picker = document.getElementById("model-picker");
  settingsForm = document.getElementById("settings-panel");
  settingsToggle = document.getElementById("settings-toggle");

  area.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  area.addEventListener("input", grow);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    send();
  });
  stopButton.addEventListener("click", () => handlers.onStop());
  picker.addEventListener("change", () => choose());
  settingsToggle.addEventListener("click", () => {
    const open = settingsForm.hidden;
    settingsForm.hidden = !open;
    settingsToggle.setAttribute("aria-expanded", String(open));
    if (open) settingsForm.querySelector("textarea").focus();
  });
  settingsForm.addEventListener("submit", (event) => {
    event.preventDefault();
    saveSettings();
  });
}

function grow() {
  area.style.height = "auto";
  area.style.height = `${Math.min(area.scrollHeight, 240)}px`;
}

export function focus() {
  area.focus();
}

export function setBusy(streaming) {
  stopButton.hidden = !streaming;
}

function showError(message) {
  errorEl.textContent = message;
  errorEl.hidden = !message;
}

/** Fill the picker from /api/endpoints and /api/agents. */
export function setChoices(endpoints, agents) {
  picker.replaceChildren();
  for (const endpoint of endpoints) {
    if (endpoint.available === false || endpoint.name === "agents") continue;
    const group = document.createElement("optgroup");
    group.label = endpoint.name;
    for (const model of endpoint.models) {
      const option = new Option(`${endpoint.name} · ${model}`, JSON.stringify({ endpoint: endpoint.name, model }));
      group.append(option);
    }
    picker.append(group);
  }
  if (agents.length) {
    const group = document.createElement("optgroup");
    group.label = "Agents";
    for (const agent of agents) {
      group.append(new Option(`Agent: ${agent.name}`, JSON.stringify({ endpoint: "agents", agent_id: agent.agent_id })));
    }
    picker.append(group);
  }
}

function selection() {
  if (!picker.value) return {};
  const value = JSON.parse(picker.value);
  return value.agent_id
    ? { endpoint: "agents", agent_id: value.agent_id }
    : { endpoint: value.endpoint, model: value.model, agent_id: null };
}

/** Show the open conversation's model and settings (or the defaults of a new chat). */
export function showConversation(convo) {
  showError("");
  if (convo) {
    const wanted = convo.agent_id
      ? JSON.stringify({ endpoint: "agents", agent_id: convo.agent_id })
      : JSON.stringify({ endpoint: convo.endpoint, model: convo.model });
    const option = [...picker.options].find((o) => o.value === wanted)
      || [...picker.options].find((o) => !convo.agent_id && JSON.parse(o.value).endpoint === convo.endpoint);
    if (option) picker.value = option.value;
  } else {
    pending = {};
  }
  const params = convo?.model_parameters || pending.model_parameters || {};
  settingsForm.elements.system_prompt.value = convo?.system_prompt || pending.system_prompt || "";
  settingsForm.elements.temperature.value = params.temperature ?? "";
  document.getElementById("settings-status").textContent = "";
}

function settingsValues(convo) {
  const params = { ...(convo?.model_parameters || {}) };
  const temperature = settingsForm.elements.temperature.value;
  if (temperature === "") delete params.temperature;
  else params.temperature = Number(temperature);
  return { system_prompt: settingsForm.elements.system_prompt.value || null, model_parameters: params };
}

async function saveSettings() {
  const status = document.getElementById("settings-status");
  const convo = handlers.current();
  const values = settingsValues(convo);
  if (!convo) {
    pending = values;
    status.textContent = "Saved for this new chat.";
    return;
  }
  try {
    handlers.onChanged(await api("PATCH", `/api/convos/${encodeURIComponent(convo.conversation_id)}`, values));
    status.textContent = "Saved.";
  } catch (error) {
    status.textContent = `Not saved: ${error.message}`;
  }
}

async function choose() {
  const convo = handlers.current();
  if (!convo) return;
  try {
    handlers.onChanged(await api("PATCH", `/api/convos/${encodeURIComponent(convo.conversation_id)}`, selection()));
  } catch (error) {
    showError(`Could not switch: ${error.message}`);
  }
}

async function send() {
  const typed = area.value;
  const text = typed.trim();
  if (!text) return;
  showError("");
  sendButton.disabled = true;
  try {
    let convo = handlers.current();
    if (!convo) {
      const fields = { conversation_id: crypto.randomUUID(), ...selection(), ...pending };
      if (fields.agent_id === null) delete fields.agent_id;
      convo = await api("POST", "/api/convos", fields);
      pending = {};
      handlers.onCreated(convo);
    }
    const body = { text };
    const parent = handlers.leafId();
    if (parent) body.parent_message_id = parent;
    const answer = await api("POST", `/api/messages/${encodeURIComponent(convo.conversation_id)}`, body);
    // Only now: a failed send leaves the text where it was typed. What was typed while
    // the message was on its way stays for the next one.
    if (area.value.startsWith(typed)) area.value = area.value.slice(typed.length).trimStart();
    grow();
    handlers.onSent(answer);
  } catch (error) {
    showError(`Not sent: ${error.message}. Your text is still here; try again.`);
  } finally {
    sendButton.disabled = false;
    area.focus();
  }
}
