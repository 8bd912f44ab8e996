// What both webhook views share: the endpoint form (register and edit), how an endpoint's
// state and scope read, and the actions on one endpoint (enable, disable, delete).
import { api } from "./api.js";
import { bindForm, confirmAction, h, labelled, pill, section, when } from "./ui.js";

/** The event types the server offers, and the person's keys (for a key's endpoint). */
export async function loadChoices() {
  const [{ event_types: eventTypes }, { keys }] = await Promise.all([
    api("GET", "/api/webhooks/event-types"),
    api("GET", "/api/keys"),
  ]);
  return { eventTypes, keys };
}

export const hookPath = (id) => `/api/webhooks/${encodeURIComponent(id)}`;

/** ui.js's section (a region named by its heading) with this page's panel rules. */
export function region(title, ...children) {
  const node = section(title, ...children);
  node.classList.add("wh-panel");
  return node;
}

/** Whose events an endpoint hears: every conversation of its owner's, or one key's. */
export function scopeOf(hook, keys) {
  if (!hook.api_key_id) return h("span", {}, "All your conversations");
  const key = keys.find((k) => k.id === hook.api_key_id);
  if (!key) return h("span", {}, "One API key (", h("code", {}, hook.api_key_id), ")");
  return h(
    "span",
    {},
    "Key ",
    h("a", { href: `/keys/${encodeURIComponent(key.id)}`, "data-nav": true }, key.name),
    " ",
    h("code", {}, key.prefix),
    key.status === "active" ? null : [" ", pill(key.status, "warn")],
  );
}

/** Enabled or disabled, and why: the owner, a 410, or days of failures (the API's words). */
export function stateOf(hook) {
  if (!hook.enabled) {
    return h(
      "div",
      { class: "wh-state" },
      pill("Disabled", "bad"),
      h("span", { class: "wh-reason" }, hook.disabled_reason || "disabled"),
    );
  }
  if (hook.failing_since) {
    return h(
      "div",
      { class: "wh-state" },
      pill("Failing", "warn"),
      h("span", { class: "wh-reason" }, "every delivery has failed since ", when(hook.failing_since)),
    );
  }
  return h("div", { class: "wh-state" }, pill("Enabled", "good"));
}

export function eventList(events) {
  return h("ul", { class: "wh-events" }, events.map((type) => h("li", {}, h("code", {}, type))));
}

/**
 * The endpoint form: `hook` null registers a new one (with a key to scope it to), else
 * edits that one. `submit(body)` gets only what changed, named as the API names it.
 */
export function endpointForm({ hook = null, eventTypes, keys, submitLabel, submit, cancel }) {
  const url = h("input", {
    name: "url",
    type: "url",
    required: true,
    autocomplete: "off",
    spellcheck: "false",
    placeholder: "https://your-receiver/relaychat-hook",
    value: hook?.url ?? "",
  });
  const description = h("input", {
    name: "description",
    maxlength: 500,
    autocomplete: "off",
    value: hook?.description ?? "",
  });
  const chosen = new Set(hook ? hook.events : eventTypes.map((e) => e.type));
  const boxes = eventTypes.map((e) =>
    h("input", { type: "checkbox", name: "events", value: e.type, checked: chosen.has(e.type) }),
  );
  const events = h(
    "fieldset",
    { class: "field wh-event-choices" },
    h("legend", {}, "Events"),
    eventTypes.map((e, i) =>
      h(
        "label",
        { class: "check" },
        boxes[i],
        h("span", {}, h("code", {}, e.type), h("small", { class: "muted" }, e.description)),
      ),
    ),
  );
  let scope = null;
  if (!hook) {
    const usable = keys.filter((k) => k.status === "active");
    scope = labelled(
      "Only events caused by",
      h(
        "select",
        { name: "api_key_id" },
        h("option", { value: "" }, "Anyone: all your conversations"),
        usable.map((k) => h("option", { value: k.id }, `Key ${k.name} (${k.prefix}…)`)),
      ),
      "With a key, only what that key caused: the messages it posted, the replies to them, the conversations it opened.",
    );
  }
  const form = h(
    "form",
    { class: "wh-form" },
    h(
      "div",
      { class: "form-grid" },
      labelled("URL", url, "relaychat POSTs signed JSON here (https or http)."),
      labelled("Description", description, "Optional: what listens there."),
    ),
    events,
    scope,
    h(
      "div",
      { class: "actions" },
      h("button", { type: "submit", class: "primary" }, submitLabel),
      cancel ? h("button", { type: "button", onclick: cancel }, "Cancel") : null,
    ),
  );
  bindForm(form, async () => {
    const body = {};
    const picked = boxes.filter((b) => b.checked).map((b) => b.value);
    const text = description.value.trim();
    if (!hook) {
      body.url = url.value.trim();
      body.events = picked;
      if (text) body.description = text;
      const key = form.elements.api_key_id.value;
      if (key) body.api_key_id = key;
    } else {
      // Only what changed: sending the same URL again would forget its failure record.
      if (url.value.trim() !== hook.url) body.url = url.value.trim();
      if (text !== (hook.description ?? "")) body.description = text || null;
      if ([...picked].sort().join() !== [...hook.events].sort().join()) body.events = picked;
    }
    await submit(body);
  });
  return form;
}

/** Enable or disable (asking first: pending deliveries then fail); resolves the endpoint. */
export async function setEnabled(hook, enabled) {
  if (!enabled) {
    const ok = await confirmAction(
      `Disable the webhook ${hook.url}? Deliveries still pending will fail; you can enable it again and redeliver them.`,
      "Disable",
    );
    if (!ok) return null;
  }
  return api("PATCH", hookPath(hook.id), { enabled });
}

/** Delete after asking; resolves true once deleted. */
export async function deleteHook(hook) {
  const ok = await confirmAction(
    `Delete the webhook ${hook.url} and its delivery log? Pending deliveries are dropped. This cannot be undone.`,
  );
  if (!ok) return false;
  await api("DELETE", hookPath(hook.id));
  return true;
}
