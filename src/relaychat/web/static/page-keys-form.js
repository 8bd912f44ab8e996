// The form that creates a key or changes one: name, expiry and every permission the API
// takes, each control named as the API names its field so that a refusal shows next to it.
// The allowed conversations come with a live preview for a conversation id the person types,
// matched exactly as the server matches (page-keys-glob.js).
import { ApiError, api } from "./api.js";
import { bindForm, h, labelled, showError } from "./ui.js";
import { GlobError, globMatches, validConversationId } from "./page-keys-glob.js";

const P = "permissions.";
// Ids for the controls and notes this module makes.
let serial = 0;

/**
 * The form as a node. `key`: the key to change (PATCH), or null to create one (POST).
 * `choices`: `{ endpoints, agents }` to pick from. `onSaved` gets the API's answer: the key
 * (PATCH) or `{key, secret}` (POST).
 */
export function keyForm({ key, user, choices, onSaved, onCancel }) {
  const perms = key?.permissions || {};
  const patterns = patternList(perms.allowed_conversations);
  const form = h(
    "form",
    { class: "key-form", "aria-label": key ? `Change ${key.name}` : "New API key" },
    h("h2", {}, key ? `Change “${key.name}”` : "New API key"),
    h(
      "div",
      { class: "form-grid" },
      labelled("Name", h("input", { name: "name", value: key?.name || "", required: true, maxlength: 200, autocomplete: "off" }), "Say what uses it: “SMS gateway”, “Support bot”."),
      labelled("Expires", h("input", { type: "datetime-local", name: "expires_at", value: localInput(key?.expires_at) }), "Your local time. Empty: never."),
    ),
    !key && user.role === "admin"
      ? check("system", false, "System key: may act for any user (admins only)")
      : null,
    patterns.node,
    h(
      "div",
      { class: "form-grid" },
      h(
        "fieldset",
        { class: "field fieldgroup rate-limit", name: `${P}rate_limit` },
        h("legend", {}, "Rate limit"),
        h(
          "div",
          { class: "inline-fields" },
          labelled("Requests", h("input", { type: "number", name: `${P}rate_limit.requests`, min: 1, max: 100000, step: 1, inputmode: "numeric", value: perms.rate_limit?.requests ?? "" })),
          labelled("Window (seconds)", h("input", { type: "number", name: `${P}rate_limit.window`, min: 1, max: 86400, step: 1, inputmode: "numeric", value: perms.rate_limit?.window ?? 60 })),
        ),
        h("small", { class: "hint muted" }, "At most this many requests in any window of this many seconds. Empty: no limit. Past it the sender gets 429 with Retry-After."),
      ),
      labelled(
        "Required metadata",
        h("input", { name: `${P}required_metadata`, value: (perms.required_metadata || []).join(", "), autocomplete: "off", placeholder: "source, phoneNumber" }),
        "Fields every message's metadata must carry, separated by commas.",
      ),
      labelled(
        "Daily token budget",
        h("input", { type: "number", name: `${P}max_tokens_per_day`, min: 1, step: 1, inputmode: "numeric", value: perms.max_tokens_per_day ?? "", autocomplete: "off" }),
        "Tokens its replies may use per UTC day. Empty: no budget. Past it, asking for a reply gets 429 budget_exceeded until midnight UTC.",
      ),
    ),
    pickList({
      name: "allowed_endpoints",
      legend: "Endpoints",
      anyLabel: "Any endpoint",
      onlyLabel: "Only these endpoints",
      options: choices.endpoints.map((e) => ({ value: e.name, label: e.name })),
      selected: perms.allowed_endpoints,
    }),
    pickList({
      name: "allowed_agents",
      legend: "Agents",
      anyLabel: "Any agent its owner may use",
      onlyLabel: "Only these agents",
      options: choices.agents.map((a) => ({ value: a.agent_id, label: a.name, detail: a.agent_id })),
      selected: perms.allowed_agents,
    }),
    defaults(perms, choices),
    h(
      "fieldset",
      { class: "field fieldgroup" },
      h("legend", {}, "What it may do"),
      check(`${P}can_create_conversations`, perms.can_create_conversations ?? false, "Create conversations (with an id its patterns allow, using the defaults below)"),
      check(`${P}can_respond`, perms.can_respond ?? true, "Ask for replies"),
      check(`${P}respond_default`, perms.respond_default ?? true, "Reply by default when a message does not say"),
      check(`${P}can_name_user`, perms.can_name_user ?? false, "Name the message's user (a person's key: only its owner)"),
    ),
    h(
      "div",
      { class: "actions" },
      h("button", { type: "submit", class: "primary" }, key ? "Save changes" : "Create key"),
      h("button", { type: "button", onclick: onCancel }, "Cancel"),
    ),
  );
  // A reply by default needs replies at all (the server turns it off too).
  const canRespond = form.elements[`${P}can_respond`];
  const respondDefault = form.elements[`${P}respond_default`];
  const syncRespond = () => {
    respondDefault.disabled = !canRespond.checked;
    if (!canRespond.checked) respondDefault.checked = false;
  };
  canRespond.addEventListener("change", syncRespond);
  syncRespond();
  const initialExpiry = form.elements.expires_at.value;

  bindForm(form, async () => {
    untieNotes(form);
    const body = { name: form.elements.name.value.trim(), permissions: permissionsOf(form, patterns) };
    const expiry = form.elements.expires_at.value;
    // A key that has expired keeps its past expiry unless the person changes it: the API
    // refuses a past time.
    if (!key || expiry !== initialExpiry) body.expires_at = expiry ? new Date(expiry).toISOString() : null;
    try {
      if (key) onSaved(await api("PATCH", `/api/keys/${encodeURIComponent(key.id)}`, body));
      else {
        if (form.elements.system?.checked) body.system = true;
        onSaved(await api("POST", "/api/keys", body));
      }
    } catch (error) {
      if (!(error instanceof ApiError) || error.status === 401) throw error;
      showError(form, error);
      tieNotes(form, error);
    }
  });
  return form;
}

/** The permissions the form says, complete: on PATCH they replace every field. */
function permissionsOf(form, patterns) {
  const value = (name) => form.elements[`${P}${name}`].value.trim();
  const checked = (name) => form.elements[`${P}${name}`].checked;
  const requests = value("rate_limit.requests");
  const window = value("rate_limit.window");
  const budget = value("max_tokens_per_day");
  return {
    allowed_conversations: patterns.value(),
    allowed_endpoints: picked(form, "allowed_endpoints"),
    allowed_agents: picked(form, "allowed_agents"),
    required_metadata: value("required_metadata").split(",").map((s) => s.trim()).filter(Boolean),
    // Sent as typed: the API says what is wrong with `0` or `1.5`, next to the field.
    rate_limit: requests === "" ? null : { requests: Number(requests), window: window === "" ? null : Number(window) },
    max_tokens_per_day: budget === "" ? null : Number(budget),
    default_endpoint: value("default_endpoint") || null,
    default_model: value("default_model") || null,
    default_agent_id: value("default_agent_id") || null,
    can_create_conversations: checked("can_create_conversations"),
    can_respond: checked("can_respond"),
    respond_default: checked("respond_default"),
    can_name_user: checked("can_name_user"),
  };
}

function picked(form, name) {
  if (form.querySelector(`input[name="${name}-scope"]:checked`).value === "any") return null;
  return [...form.querySelectorAll(`input[name="${P}${name}"]:checked`)].map((box) => box.value);
}

/**
 * After ui.js's showError: a note naming one pattern (`permissions.allowed_conversations[2]`,
 * which showError finds by its prefix, the patterns' fieldset) moves next to that row; and
 * each note becomes its control's description, so it is read out with the control.
 */
function tieNotes(form, error) {
  const entries = error.errors?.length ? error.errors : [{ field: error.field, message: error.message }];
  let first = null;
  for (const { field, message } of entries) {
    if (!field || !field.includes("[")) continue;
    const input = form.querySelector(`[name="${CSS.escape(field)}"]`);
    const note = [...form.querySelectorAll(".field-error:not([data-row])")].find((n) => n.textContent === message);
    if (!input || !note) continue;
    note.dataset.row = input.id;
    input.closest(".pattern-row").after(note);
    input.setAttribute("aria-invalid", "true");
    first ||= input;
  }
  for (const note of form.querySelectorAll(".field-error")) {
    const holder = note.parentElement;
    const control = note.dataset.row
      ? document.getElementById(note.dataset.row)
      : holder.matches("[aria-invalid=true]") ? holder : holder.querySelector(":scope > [aria-invalid=true]");
    if (!control) continue;
    note.id = `${control.id || (control.id = `f-${(serial += 1)}`)}-error`;
    const described = (control.getAttribute("aria-describedby") || "").split(" ").filter(Boolean);
    control.setAttribute("aria-describedby", [...described, note.id].join(" "));
  }
  first?.focus();
}

/** Undo tieNotes' descriptions (ui.js removes the notes themselves). */
function untieNotes(form) {
  for (const control of form.querySelectorAll("[aria-describedby]")) {
    const kept = control.getAttribute("aria-describedby").split(" ").filter((id) => id && !id.endsWith("-error"));
    if (kept.length) control.setAttribute("aria-describedby", kept.join(" "));
    else control.removeAttribute("aria-describedby");
  }
}

function check(name, checked, label) {
  const box = h("input", { type: "checkbox", name, checked });
  return labelledCheck(box, label);
}

function labelledCheck(box, label, detail) {
  box.id ||= `f-${Math.random().toString(36).slice(2, 9)}`;
  return h("div", { class: "check" }, box, h("label", { for: box.id }, label, detail ? h("code", { class: "muted" }, ` ${detail}`) : null));
}

/** "Any" or "only these" over a list of checkboxes named `permissions.<name>`. */
function pickList({ name, legend, anyLabel, onlyLabel, options, selected }) {
  const scope = `${name}-scope`;
  const only = Array.isArray(selected);
  const chosen = new Set(selected || []);
  // A stored choice no longer offered (an agent deleted since) stays visible and kept.
  const offered = [...options, ...[...chosen].filter((v) => !options.some((o) => o.value === v)).map((v) => ({ value: v, label: v }))];
  const boxes = h(
    "div",
    { class: "pick-options", hidden: !only },
    offered.length
      ? offered.map((o) => labelledCheck(h("input", { type: "checkbox", name: `${P}${name}`, value: o.value, checked: chosen.has(o.value) }), o.label, o.detail))
      : h("p", { class: "muted" }, "None to pick from: the key may use none."),
  );
  const radio = (value, label, on) =>
    labelledCheck(
      h("input", { type: "radio", name: scope, value, checked: on, onchange: () => (boxes.hidden = value === "any") }),
      label,
    );
  return h(
    "fieldset",
    { class: "field fieldgroup", name: `${P}${name}` },
    h("legend", {}, legend),
    h("div", { class: "scope" }, radio("any", anyLabel, !only), radio("only", onlyLabel, only)),
    boxes,
  );
}

/** The endpoint, model and agent of the conversations the key creates. */
function defaults(perms, choices) {
  const endpoint = h(
    "select",
    { name: `${P}default_endpoint` },
    h("option", { value: "" }, "None"),
    choices.endpoints.map((e) => h("option", { value: e.name, selected: e.name === perms.default_endpoint }, e.name)),
  );
  const model = h("select", { name: `${P}default_model` });
  const fillModels = (keep) => {
    const found = choices.endpoints.find((e) => e.name === endpoint.value);
    const models = found?.models || [];
    const options = [
      h("option", { value: "" }, found ? `The endpoint's default${found.default_model ? ` (${found.default_model})` : ""}` : "None"),
      ...models.map((m) => h("option", { value: m, selected: m === keep }, m)),
    ];
    if (keep && !models.includes(keep)) options.push(h("option", { value: keep, selected: true }, keep));
    model.replaceChildren(...options);
    model.disabled = !found && !keep;
  };
  endpoint.addEventListener("change", () => fillModels(""));
  fillModels(perms.default_model || "");
  const agent = h(
    "select",
    { name: `${P}default_agent_id` },
    h("option", { value: "" }, "None"),
    choices.agents.map((a) => h("option", { value: a.agent_id, selected: a.agent_id === perms.default_agent_id }, a.name)),
  );
  return h(
    "fieldset",
    { class: "field fieldgroup" },
    h("legend", {}, "Defaults for conversations it creates"),
    h("div", { class: "form-grid" }, labelled("Endpoint", endpoint), labelled("Model", model), labelled("Agent", agent)),
  );
}

/**
 * The allowed conversations: any, or only ids matching one of the patterns, one per row,
 * with a sample id matched live. Returns `{ node, value() }`.
 */
function patternList(stored) {
  const only = Array.isArray(stored);
  const rows = h("div", { class: "pattern-rows" });
  const sample = h("input", { type: "text", autocomplete: "off", spellcheck: "false", placeholder: "sms-+15551234567", class: "sample" });
  const verdict = h("p", { class: "verdict", role: "status", "aria-live": "polite" });
  const editor = h(
    "div",
    { class: "patterns", hidden: !only },
    rows,
    h("button", { type: "button", class: "small", onclick: () => addRow("", true) }, "Add pattern"),
    h("small", { class: "hint muted" }, "Globs, case-sensitive: * any run of characters, ? one character, [abc] or [a-z] one of them, [!abc] none of them."),
    labelled("Try a conversation id", sample, "See whether this key may post there."),
    verdict,
  );
  const scopeName = "allowed_conversations-scope";
  const radio = (value, label, on) =>
    labelledCheck(
      h("input", {
        type: "radio",
        name: scopeName,
        value,
        checked: on,
        onchange: () => {
          editor.hidden = value === "any";
          if (value === "only" && !rows.children.length) addRow("", true);
          preview();
        },
      }),
      label,
    );
  const node = h(
    "fieldset",
    { class: "field fieldgroup", name: `${P}allowed_conversations` },
    h("legend", {}, "Conversations"),
    h("div", { class: "scope" }, radio("any", "Any conversation its owner has", !only), radio("only", "Only conversations whose id matches a pattern", only)),
    editor,
  );

  function addRow(value, focus) {
    const input = h("input", { type: "text", value, autocomplete: "off", spellcheck: "false", oninput: preview });
    input.id = `pattern-${(serial += 1)}`;
    const row = h(
      "div",
      { class: "pattern-row" },
      input,
      h("span", { class: "match" }),
      h("button", { type: "button", class: "small", onclick: () => { row.remove(); renumber(); preview(); } }, "Remove"),
    );
    rows.append(row);
    renumber();
    preview();
    if (focus) input.focus();
  }

  // Names follow the API's (`permissions.allowed_conversations[0]`), so they change when a row goes.
  function renumber() {
    [...rows.children].forEach((row, index) => {
      const input = row.querySelector("input");
      input.name = `${P}allowed_conversations[${index}]`;
      input.setAttribute("aria-label", `Pattern ${index + 1}`);
      row.querySelector("button").setAttribute("aria-label", `Remove pattern ${index + 1}`);
    });
  }

  function scopeIsAny() {
    return node.querySelector(`input[name="${scopeName}"]:checked`).value === "any";
  }

  function value() {
    if (scopeIsAny()) return null;
    return [...rows.querySelectorAll("input")].map((input) => input.value.trim()).filter(Boolean);
  }

  function preview() {
    const id = sample.value.trim();
    let matched = [];
    let unreadable = false;
    for (const row of rows.children) {
      const pattern = row.querySelector("input").value.trim();
      const mark = row.querySelector(".match");
      mark.className = "match";
      mark.textContent = "";
      if (!pattern || !id) continue;
      try {
        const yes = globMatches(pattern, id);
        mark.textContent = yes ? "matches" : "no match";
        mark.classList.add(yes ? "yes" : "no");
        if (yes) matched.push(pattern);
      } catch (error) {
        if (!(error instanceof GlobError)) throw error;
        unreadable = true;
        mark.textContent = "the server cannot read this pattern";
        mark.classList.add("no");
      }
    }
    const patternsNow = value();
    verdict.className = "verdict";
    if (!id) {
      verdict.textContent = "";
      return;
    }
    if (!validConversationId(id)) {
      say("no", "Refused: not a conversation id (1 to 128 letters, digits and ._:@+-, starting with a letter or digit).");
    } else if (patternsNow === null) {
      say("yes", `Allowed: this key may post to any conversation, ${id} included.`);
    } else if (!patternsNow.length) {
      say("no", "Refused: with no pattern this key may post to no conversation.");
    } else if (matched.length) {
      say("yes", `Allowed: ${id} matches ${matched.join(", ")}.`);
    } else {
      say("no", `Refused: ${id} matches none of the patterns${unreadable ? " the server can read" : ""}.`);
    }
  }

  function say(tone, text) {
    verdict.classList.add(tone);
    verdict.textContent = text;
  }

  sample.addEventListener("input", preview);
  for (const pattern of stored || []) addRow(pattern, false);
  return { node, value };
}

/** An ISO time as a `datetime-local` value in the browser's zone ("" for none). */
function localInput(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
}
