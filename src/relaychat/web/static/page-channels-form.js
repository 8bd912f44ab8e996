// The form that connects a Twilio number, and changes one: every field of
// `POST /api/channels` and `PATCH /api/channels/{id}`, each control named as the API names
// it so a problem's `field` lands next to it. The auth token is write-only: the form never
// holds the stored one, and an empty token field on edit keeps it.
import { api } from "./api.js";
import { h, labelled, bindForm } from "./ui.js";

// Replies go to Twilio's own API unless an admin set another base URL (a test double, a
// regional edge); the page tells them apart by host and names no URL of its own.
const TWILIO_API_HOST = "api.twilio.com";

/** Whether a channel's `api_base_url` is Twilio's own API. */
export function twiliosOwnApi(url) {
  try {
    return new URL(url).hostname === TWILIO_API_HOST;
  } catch {
    return false;
  }
}

/** What may answer a channel's messages: `/api/endpoints` and `/api/agents`. */
export async function loadChoices() {
  const [{ endpoints }, { agents }] = await Promise.all([
    api("GET", "/api/endpoints"),
    api("GET", "/api/agents").catch(() => ({ agents: [] })),
  ]);
  return { endpoints, agents };
}

/** The "answers with" value of a channel: an agent, an endpoint and model, or nobody. */
function answerOf(channel) {
  if (!channel) return "";
  if (channel.agent_id) return JSON.stringify({ agent_id: channel.agent_id });
  if (channel.endpoint) return JSON.stringify({ endpoint: channel.endpoint, model: channel.model || null });
  return "";
}

/** How a channel answers, in words. */
export function describeAnswer(channel, choices) {
  if (channel.agent_id) {
    const agent = choices?.agents.find((a) => a.agent_id === channel.agent_id);
    return `Agent: ${agent ? agent.name : channel.agent_id}`;
  }
  if (channel.endpoint) return channel.model ? `${channel.endpoint} · ${channel.model}` : `${channel.endpoint} (its default model)`;
  return "Nobody: messages wait for you to answer in the browser";
}

// One select for endpoint, model and agent, like the chat's model picker; it is named
// `endpoint`, and hidden `model` and `agent_id` controls sit in the same field, so an error
// on any of the three is shown under it.
function answerPicker(channel, choices) {
  const select = h("select", { name: "endpoint" });
  select.append(h("option", { value: "" }, "Nobody: you answer yourself"));
  const wanted = answerOf(channel);
  const values = new Set([""]);
  for (const endpoint of choices.endpoints) {
    if (endpoint.name === "agents" || endpoint.available === false) continue;
    const group = h("optgroup", { label: endpoint.name });
    for (const model of endpoint.models) {
      const value = JSON.stringify({ endpoint: endpoint.name, model });
      values.add(value);
      group.append(h("option", { value }, `${endpoint.name} · ${model}`));
    }
    if (group.children.length) select.append(group);
  }
  if (choices.agents.length) {
    const group = h("optgroup", { label: "Agents" });
    for (const agent of choices.agents) {
      const value = JSON.stringify({ agent_id: agent.agent_id });
      values.add(value);
      group.append(h("option", { value }, `Agent: ${agent.name}`));
    }
    select.append(group);
  }
  // A setting made elsewhere (the CLI, a model no longer listed) stays selectable as is.
  if (!values.has(wanted)) select.append(h("option", { value: wanted }, `${describeAnswer(channel, choices)} (current)`));
  select.value = wanted;
  const model = h("input", { type: "hidden", name: "model" });
  const agent = h("input", { type: "hidden", name: "agent_id" });
  const field = labelled(
    "Answers with",
    select,
    "Each sender gets a conversation; this endpoint or agent writes the reply that is texted back.",
  );
  field.append(model, agent);
  return field;
}

function selectedAnswer(form) {
  const raw = form.elements.endpoint.value;
  const value = raw ? JSON.parse(raw) : {};
  return { endpoint: value.endpoint || null, model: value.model || null, agent_id: value.agent_id || null };
}

function text(form, name) {
  const control = form.elements[name];
  return control ? control.value.trim() : "";
}

function checkbox(name, label, checked, hint) {
  const input = h("input", { type: "checkbox", name, checked: Boolean(checked) });
  const id = `f-${name}-${Math.random().toString(36).slice(2, 7)}`;
  input.id = id;
  const hintNode = hint ? h("small", { class: "hint muted", id: `${id}-hint` }, hint) : null;
  if (hintNode) input.setAttribute("aria-describedby", hintNode.id);
  return h("div", { class: "field" }, h("div", { class: "check" }, input, h("label", { for: id }, label)), hintNode);
}

/**
 * The channel form. `channel` is null for a new one. Resolves nothing: `onSaved(channel)`
 * gets the API's answer; `onCancel` (edit only) closes it.
 */
export function channelForm({ channel = null, user, choices, onSaved, onCancel }) {
  const admin = user?.role === "admin";
  const editing = channel !== null;
  const form = h("form", { class: "channel-form", "aria-label": editing ? `Edit ${channel.name}` : "Connect a Twilio number" });

  const name = h("input", { name: "name", required: true, maxlength: 200, autocomplete: "off", value: channel?.name || "" });
  const sid = h("input", {
    name: "account_sid",
    required: true,
    maxlength: 64,
    autocomplete: "off",
    spellcheck: "false",
    placeholder: "AC…",
    value: channel?.account_sid || "",
  });
  const token = h("input", {
    name: "auth_token",
    type: "password",
    maxlength: 200,
    autocomplete: "new-password",
    spellcheck: "false",
    placeholder: editing ? "unchanged" : "",
  });
  const publicUrl = h("input", {
    name: "public_url",
    type: "url",
    required: true,
    maxlength: 2000,
    spellcheck: "false",
    value: channel?.public_url || location.origin,
  });

  const tokenHint = editing
    ? channel.auth_token_env
      ? `Read from the server's ${channel.auth_token_env}. A token typed here is stored instead.`
      : "Stored encrypted and never shown. Leave empty to keep it."
    : "Twilio console → Account info. Stored encrypted, never shown again.";

  const twilio = h(
    "fieldset",
    { class: "form-grid" },
    h("legend", {}, "Twilio account"),
    labelled("Name", name, "Yours to recognise it, e.g. “Front desk”."),
    labelled("Account SID", sid, "“AC” and 32 hex digits, from Twilio's console."),
    labelled("Auth token", token, tokenHint),
    admin
      ? labelled(
          "Auth token variable",
          h("input", {
            name: "auth_token_env",
            maxlength: 100,
            spellcheck: "false",
            placeholder: "TWILIO_AUTH_TOKEN",
            value: channel?.auth_token_env || "",
          }),
          "Admins: read the token from this server environment variable (TWILIO_…) instead.",
        )
      : null,
    labelled(
      "Public URL",
      publicUrl,
      "This server as Twilio reaches it (behind a proxy, the public address), or the whole webhook URL. Twilio signs it.",
    ),
    admin
      ? labelled(
          "Twilio API base URL",
          h("input", {
            name: "api_base_url",
            type: "url",
            maxlength: 2000,
            spellcheck: "false",
            value: channel && !twiliosOwnApi(channel.api_base_url) ? channel.api_base_url : "",
          }),
          `Admins: where replies are sent (empty: Twilio itself, ${TWILIO_API_HOST}).`,
        )
      : null,
  );

  const routing = h(
    "fieldset",
    { class: "form-grid" },
    h("legend", {}, "Conversations"),
    answerPicker(channel, choices),
  );
  if (admin) {
    const owner = labelled(
      "Owner",
      h("input", { name: "owner", maxlength: 320, spellcheck: "false", placeholder: user.email, value: channel?.owner_id || "" }),
      "Admins: the email or id of the user whose conversations these are (empty: you).",
    );
    const byPhone = checkbox(
      "resolve_by_phone",
      "Route each sender to the user with that phone number",
      channel?.resolve_by_phone,
      "Instead of one owner: the sender's number is looked up in people's profiles.",
    );
    const provision = checkbox(
      "provision_unknown",
      "Create a user for an unknown number",
      channel?.provision_unknown,
      "Otherwise a number nobody has is refused.",
    );
    const sync = () => {
      const on = byPhone.querySelector("input").checked;
      owner.hidden = on;
      provision.hidden = !on;
    };
    byPhone.querySelector("input").addEventListener("change", sync);
    routing.append(owner, byPhone, provision);
    sync();
  }
  routing.append(checkbox("enabled", "Take messages", channel ? channel.enabled : true, "Unchecked: Twilio's requests are refused (403) until you check it again."));

  const submit = h("button", { type: "submit", class: "primary" }, editing ? "Save changes" : "Connect number");
  const actions = h("div", { class: "actions" }, submit);
  if (editing) actions.append(h("button", { type: "button", onclick: () => onCancel?.() }, "Cancel"));
  form.append(twilio, routing, actions);

  bindForm(form, async () => {
    const body = editing ? changes(form, channel, admin) : creation(form, admin);
    let saved;
    if (editing) saved = Object.keys(body).length ? await api("PATCH", `/api/channels/${encodeURIComponent(channel.id)}`, body) : channel;
    else saved = await api("POST", "/api/channels", body);
    // The token typed is not kept in the page once the server has it.
    token.value = "";
    onSaved?.(saved);
  });
  return form;
}

function creation(form, admin) {
  const body = {
    type: "twilio",
    name: text(form, "name"),
    account_sid: text(form, "account_sid"),
    public_url: text(form, "public_url"),
    enabled: form.elements.enabled.checked,
    ...selectedAnswer(form),
  };
  const token = form.elements.auth_token.value;
  const env = admin ? text(form, "auth_token_env") : "";
  if (token) body.auth_token = token;
  if (env) body.auth_token_env = env;
  if (!token && !env) {
    // The API says so too, but about the whole body: here it is said next to the field.
    throw { field: "auth_token", message: admin ? "Give the auth token, or the variable that holds it." : "Give the account's auth token." };
  }
  if (admin) {
    body.resolve_by_phone = form.elements.resolve_by_phone.checked;
    body.provision_unknown = body.resolve_by_phone && form.elements.provision_unknown.checked;
    if (!body.resolve_by_phone && text(form, "owner")) body.owner = text(form, "owner");
    if (text(form, "api_base_url")) body.api_base_url = text(form, "api_base_url");
  }
  for (const key of ["endpoint", "model", "agent_id"]) if (body[key] === null) delete body[key];
  return body;
}

/** Only what differs from the stored channel: the API keeps every field left out. */
function changes(form, channel, admin) {
  const body = {};
  for (const key of ["name", "account_sid", "public_url"]) {
    const value = text(form, key);
    if (value !== (channel[key] || "")) body[key] = value;
  }
  const enabled = form.elements.enabled.checked;
  if (enabled !== channel.enabled) body.enabled = enabled;
  const answer = selectedAnswer(form);
  if (["endpoint", "model", "agent_id"].some((key) => (answer[key] || null) !== (channel[key] || null))) Object.assign(body, answer);
  const token = form.elements.auth_token.value;
  if (token) body.auth_token = token;
  if (admin) {
    const env = text(form, "auth_token_env");
    if (!token && env && env !== (channel.auth_token_env || "")) body.auth_token_env = env;
    const byPhone = form.elements.resolve_by_phone.checked;
    if (byPhone !== channel.resolve_by_phone) body.resolve_by_phone = byPhone;
    const provision = byPhone && form.elements.provision_unknown.checked;
    if (provision !== channel.provision_unknown) body.provision_unknown = provision;
    const owner = text(form, "owner");
    if (!byPhone && owner && owner !== (channel.owner_id || "")) body.owner = owner;
    const base = text(form, "api_base_url");
    const current = twiliosOwnApi(channel.api_base_url) ? "" : channel.api_base_url;
    if (base !== current) body.api_base_url = base || null;
  }
  return body;
}
