// One key at /keys/<id>: what it is and may do, its actions, and its audit trail (every
// request made with it: filtered by outcome and time, newest first, page after page).
import { api } from "./api.js";
import { bindForm, h, labelled, pill, query, section, table, when } from "./ui.js";
import { paged } from "./paged.js";
import { keyState, openForm, openRotate, report, revokeKey } from "./page-keys-actions.js";

const PAGE_SIZE = 20;
const OUTCOME_TONE = { accepted: "good", refused: "bad", replayed: "" };
const EXACT = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

export async function showKey(view, keyId) {
  if (keyId.startsWith("env:")) return showEnvironmentKey(view, keyId);
  const { root, ctx } = view;
  let key;
  try {
    key = await api("GET", `/api/keys/${encodeURIComponent(keyId)}`);
  } catch (error) {
    if (error?.status !== 404) throw error;
    ctx.setTitle("API key not found");
    root.replaceChildren(
      section("No such key", h("p", {}, "This key does not exist, or it is not yours. "), back()),
    );
    return;
  }
  if (!view.alive) return;
  const details = h("div");
  const redraw = (fresh) => {
    key = fresh;
    ctx.setTitle(`API key: ${key.name}`);
    details.replaceChildren(keyDetails(view, key, reloadKey));
  };
  async function reloadKey() {
    redraw(await api("GET", `/api/keys/${encodeURIComponent(key.id)}`));
  }
  redraw(key);
  const pages = (params) => api("GET", `/api/keys/${encodeURIComponent(key.id)}/audit${query(params)}`);
  root.replaceChildren(view.alert, view.secretSlot, view.formSlot, details, auditTrail(view, pages));
}

/** A system key from the environment (admins): what is known of it, and its requests from
 * the whole audit trail. */
async function showEnvironmentKey(view, ref) {
  const { root, ctx } = view;
  const { keys } = await api("GET", "/api/keys/environment");
  const key = keys.find((k) => k.ref === ref);
  if (!view.alive) return;
  if (!key) {
    ctx.setTitle("API key not found");
    root.replaceChildren(section("No such key", h("p", {}, "The server's environment sets no key with this reference. "), back()));
    return;
  }
  ctx.setTitle(`API key: ${key.ref}`);
  const facts = [
    ["Reference", h("code", {}, key.ref)],
    ["Set by", h("code", {}, key.source)],
    ["Kind", "system key: may act for any user, with every permission"],
    ["State", pill("active", "good")],
    ["Last used", when(key.last_used_at)],
  ];
  const details = section(
    "Details",
    h("p", {}, back()),
    h("dl", { class: "key-details" }, facts.map(([term, value]) => [h("dt", {}, term), h("dd", {}, value)])),
    h("p", { class: "muted" }, `Only the key's digest is kept. To revoke it, remove it from ${key.source} and restart the server.`),
  );
  const pages = (params) => api("GET", `/api/admin/audit${query({ key_id: key.ref, ...params })}`);
  root.replaceChildren(view.alert, details, auditTrail(view, pages));
}

function back() {
  return h("a", { href: "/keys", "data-nav": "" }, "← All keys");
}

function keyDetails(view, key, reloadKey) {
  const perms = key.permissions;
  const me = view.ctx.user.id;
  const facts = [
    ["Prefix", h("code", {}, `${key.prefix}…`)],
    ["Owner", key.owner_id === me ? "you" : h("code", {}, key.owner_id)],
    ["Kind", key.system ? "system key: may act for any user" : "acts for its owner"],
    ["State", keyState(key)],
    ["Created", when(key.created_at)],
    ["Last used", when(key.last_used_at)],
    ["Expires", when(key.expires_at)],
  ];
  const permissions = [
    ["Conversations", perms.allowed_conversations === null ? "any" : list(perms.allowed_conversations, "none")],
    ["Endpoints", perms.allowed_endpoints === null ? "any" : list(perms.allowed_endpoints, "none")],
    ["Agents", perms.allowed_agents === null ? "any" : list(perms.allowed_agents, "none")],
    ["Required metadata", list(perms.required_metadata, "nothing")],
    ["Rate limit", perms.rate_limit ? `${perms.rate_limit.requests} per ${perms.rate_limit.window} s` : "none"],
    ["Defaults", defaultsText(perms)],
    ["May", mayText(perms)],
  ];
  const terms = (rows) => h("dl", { class: "key-details" }, rows.map(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]));
  const actions =
    key.status === "revoked"
      ? null
      : h(
          "div",
          { class: "actions" },
          h("button", { type: "button", onclick: () => openForm(view, key, () => reloadKey().catch((e) => report(view, e))) }, "Change"),
          h("button", { type: "button", onclick: () => openRotate(view, key, () => reloadKey().catch((e) => report(view, e))) }, "Rotate"),
          h(
            "button",
            {
              type: "button",
              class: "danger",
              onclick: async () => {
                if (await revokeKey(view, key)) await reloadKey().catch((e) => report(view, e));
              },
            },
            "Revoke",
          ),
        );
  return section(
    "Details",
    h("p", {}, back()),
    h(
      "div",
      { class: "key-columns" },
      h("div", {}, h("h3", {}, "Key"), terms(facts)),
      h("div", {}, h("h3", {}, "Permissions"), terms(permissions)),
    ),
    actions,
  );
}

function list(values, empty) {
  if (!values.length) return h("span", { class: "muted" }, empty);
  return h("span", { class: "code-list" }, values.map((v) => h("code", {}, v)));
}

function defaultsText(perms) {
  const parts = [
    perms.default_endpoint && `endpoint ${perms.default_endpoint}`,
    perms.default_model && `model ${perms.default_model}`,
    perms.default_agent_id && `agent ${perms.default_agent_id}`,
  ].filter(Boolean);
  return parts.length ? parts.join(", ") : h("span", { class: "muted" }, "none");
}

function mayText(perms) {
  const parts = [
    perms.can_create_conversations ? "create conversations" : "not create conversations",
    perms.can_respond ? `ask for replies (${perms.respond_default ? "by default" : "when it says so"})` : "not ask for replies",
    perms.can_name_user ? "name the user" : null,
  ].filter(Boolean);
  return parts.join("; ");
}

/** `pages(params)` answers one page of the trail, filtered and from a cursor. */
function auditTrail(view, pages) {
  const me = view.ctx.user.id;
  let filters = {};
  const status = h("p", { class: "visually-hidden", role: "status" });
  const pager = paged(
    async (cursor) => {
      try {
        const page = await pages({ ...filters, limit: PAGE_SIZE, cursor });
        return { items: page.events, next: page.next_cursor };
      } catch (error) {
        // The filter form shows a refusal of its own query next to the field; a further
        // page's failure is said above and "Load more" stays to try again.
        if (!cursor) throw error;
        report(view, error);
        return { items: [], next: cursor };
      }
    },
    (events) => {
      status.textContent = `${events.length} ${events.length === 1 ? "request" : "requests"} shown`;
      return auditTable(events, me);
    },
  );
  const since = h("input", { type: "datetime-local", name: "since" });
  const until = h("input", { type: "datetime-local", name: "until" });
  const outcome = h(
    "select",
    { name: "outcome" },
    h("option", { value: "" }, "Any"),
    ["accepted", "refused", "replayed"].map((o) => h("option", { value: o }, o)),
  );
  const form = h(
    "form",
    { class: "audit-filters", "aria-label": "Filter the audit trail" },
    labelled("Outcome", outcome),
    labelled("From", since),
    labelled("Until", until),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Apply")),
    h("small", { class: "hint muted" }, "Times are your local time; From is inclusive, Until exclusive."),
  );
  // The page's datetime-local values are local time; the API reads a time without a zone as UTC.
  const iso = (value) => (value ? new Date(value).toISOString() : "");
  bindForm(form, async () => {
    filters = { outcome: outcome.value, since: iso(since.value), until: iso(until.value) };
    await pager.reload();
  });
  pager.reload().catch((error) => report(view, error));
  const node = section(
    "Audit trail",
    h("p", { class: "muted" }, "Every request made with this key, newest first: what became of it and why."),
    form,
    pager.node,
    status,
  );
  node.classList.add("audit-trail");
  return node;
}

function auditTable(events, me) {
  return table(
    [
      { label: "Time", cell: (e) => h("time", { datetime: e.created_at }, EXACT.format(new Date(e.created_at))) },
      { label: "Outcome", cell: (e) => pill(e.outcome, OUTCOME_TONE[e.outcome] ?? "") },
      { label: "Reason", cell: (e) => (e.reason ? h("code", {}, e.reason) : h("span", { class: "muted" }, "—")) },
      { label: "Status", cell: (e) => String(e.status) },
      { label: "Conversation", cell: (e) => conversation(e, me) },
      { label: "Latency", cell: (e) => `${e.latency_ms < 10 ? e.latency_ms.toFixed(1) : Math.round(e.latency_ms)} ms` },
      { label: "Client", cell: (e) => (e.client_address ? h("code", {}, e.client_address) : h("span", { class: "muted" }, "—")) },
    ],
    events,
    "No requests with this key match.",
  );
}

/** A link to the conversation when it is the person's own (the request reached its owner). */
function conversation(event, me) {
  if (!event.conversation_id) return h("span", { class: "muted" }, "—");
  if (event.user_id !== me) return h("code", {}, event.conversation_id);
  return h("a", { href: `/c/${encodeURIComponent(event.conversation_id)}`, "data-nav": "" }, event.conversation_id);
}
