// The API keys page: /keys lists the person's keys (an admin may list everyone's) with their
// state, creates one (its secret shown once), changes, rotates and revokes them; /keys/<id>
// is one key with its audit trail (page-keys-key.js). Admins also see the system keys set in
// the server's environment, by reference (/keys/env:<8 hex> is one with its audit trail).
import { api } from "./api.js";
import { h, pill, section, table, useStyles, when } from "./ui.js";
import { keyState, openForm, openRotate, report, revokeKey, showSecret } from "./page-keys-actions.js";
import { showKey } from "./page-keys-key.js";

export async function mount(root, ctx) {
  useStyles("page-keys.css");
  const view = {
    root,
    ctx,
    alive: true,
    // Where a secret is shown once, and where a form opens: above whatever the page lists.
    secretSlot: h("div", { class: "secret-slot" }),
    formSlot: h("div", { class: "form-slot" }),
    // What went wrong with an action taken from a button (a form shows its own errors).
    alert: h("p", { class: "error", role: "alert", hidden: true }),
    choices: null,
  };
  if (ctx.sub && ctx.sub !== "new") await showKey(view, ctx.sub);
  else await showList(view, ctx.sub === "new");
  return () => {
    view.alive = false;
  };
}

async function showList(view, startNew) {
  const { root, ctx } = view;
  ctx.setTitle("API keys");
  const admin = ctx.user.role === "admin";
  let everyone = false;
  const status = h("p", { class: "visually-hidden", role: "status" });
  const list = h("div", { class: "key-list" });

  async function reload() {
    const { keys } = await api("GET", `/api/keys${everyone ? "?all=true" : ""}`);
    if (!view.alive) return;
    list.replaceChildren(keyTable(view, keys, refresh));
    status.textContent = `${keys.length} ${keys.length === 1 ? "key" : "keys"}`;
  }
  // After an action taken from a button: a failure is said above the page.
  const refresh = () => reload().catch((error) => report(view, error));

  const everyoneToggle = admin
    ? h(
        "div",
        { class: "check" },
        h("input", {
          type: "checkbox",
          id: "keys-everyone",
          onchange: (event) => {
            everyone = event.target.checked;
            refresh();
          },
        }),
        h("label", { for: "keys-everyone" }, "Every user's keys"),
      )
    : null;
  const create = () =>
    openForm(view, null, (answer) => {
      showSecret(view, `Secret of “${answer.key.name}”`, answer.secret, answer.key);
      refresh();
    });
  root.replaceChildren(
    view.alert,
    view.secretSlot,
    view.formSlot,
    section(
      "API keys",
      h(
        "div",
        { class: "toolbar keys-toolbar" },
        h("p", { class: "muted grow" }, "Keys let SMS gateways, bots and other systems post into your conversations, within the permissions you give each one."),
        everyoneToggle,
        h("button", { type: "button", class: "primary", onclick: create }, "New key"),
      ),
      list,
      status,
    ),
    admin ? environmentKeys(view) : null,
  );
  await reload();
  if (startNew) await create();
}

/** Admins: the system keys the server's environment sets. Only their digests are kept, so
 * each shows as its audit reference; it is revoked by removing it there and restarting. */
function environmentKeys(view) {
  const list = h("div", { class: "key-list" });
  api("GET", "/api/keys/environment")
    .then(({ keys }) => {
      if (!view.alive) return;
      list.replaceChildren(
        table(
          [
            {
              label: "Key",
              cell: (k) =>
                h(
                  "span",
                  { class: "key-name" },
                  h("a", { href: `/keys/${encodeURIComponent(k.ref)}`, "data-nav": "" }, h("code", {}, k.ref)),
                  " ",
                  pill("system"),
                ),
            },
            { label: "Set by", cell: (k) => h("code", {}, k.source) },
            { label: "Last used", cell: (k) => when(k.last_used_at) },
            { label: "State", cell: () => pill("active", "good") },
          ],
          keys,
          "None: EXTERNAL_MESSAGE_API_KEY and EXTERNAL_API_KEYS are not set.",
        ),
      );
    })
    .catch((error) => report(view, error));
  return section(
    "Keys from the environment",
    h(
      "p",
      { class: "muted" },
      "System keys set in the server's environment may act for any user. Only their digests are kept, so each is named by its reference in the audit; to revoke one, remove it from the environment and restart.",
    ),
    list,
  );
}

function keyTable(view, keys, reload) {
  const me = view.ctx.user.id;
  return table(
    [
      {
        label: "Name",
        cell: (k) =>
          h(
            "span",
            { class: "key-name" },
            h("a", { href: `/keys/${encodeURIComponent(k.id)}`, "data-nav": "" }, k.name),
            k.system ? [" ", pill("system")] : null,
          ),
      },
      { label: "Prefix", cell: (k) => h("code", {}, `${k.prefix}…`) },
      { label: "Owner", cell: (k) => (k.owner_id === me ? "you" : h("code", {}, k.owner_id)) },
      { label: "Created", cell: (k) => when(k.created_at) },
      { label: "Last used", cell: (k) => when(k.last_used_at) },
      { label: "Expires", cell: (k) => when(k.expires_at) },
      { label: "State", cell: (k) => keyState(k) },
      { label: "Actions", cell: (k) => keyActions(view, k, reload) },
    ],
    keys,
    "No keys yet. Create one for each system that posts into your conversations.",
  );
}

function keyActions(view, key, reload) {
  if (key.status === "revoked") return h("span", { class: "muted" }, "none");
  const named = (verb) => ({ "aria-label": `${verb} ${key.name}` });
  return h(
    "div",
    { class: "actions" },
    h("button", { type: "button", class: "small", ...named("Change"), onclick: () => openForm(view, key, reload) }, "Change"),
    h("button", { type: "button", class: "small", ...named("Rotate"), onclick: () => openRotate(view, key, reload) }, "Rotate"),
    h(
      "button",
      {
        type: "button",
        class: "small",
        ...named("Revoke"),
        onclick: async () => {
          if (await revokeKey(view, key)) await reload();
        },
      },
      "Revoke",
    ),
  );
}
