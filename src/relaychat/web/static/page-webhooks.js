// The Webhooks page. /webhooks: the person's endpoints, with why one is disabled; register
// one (its signing secret shown once), edit its events, disable, enable or delete it.
// /webhooks/<id>: that endpoint's deliveries (page-webhooks-endpoint.js).
import { api } from "./api.js";
import { h, secretOnce, statusLine, table, useStyles, when } from "./ui.js";
import {
  deleteHook,
  endpointForm,
  eventList,
  hookPath,
  loadChoices,
  region,
  scopeOf,
  setEnabled,
  stateOf,
} from "./page-webhooks-form.js";
import { mountEndpoint } from "./page-webhooks-endpoint.js";

export async function mount(root, ctx) {
  useStyles("page-webhooks.css");
  if (ctx.sub) return mountEndpoint(root, ctx);
  ctx.setTitle("Webhooks");
  const { eventTypes, keys } = await loadChoices();
  const status = statusLine();
  const listBody = h("div", { class: "wh-list" });
  const list = region(
    "Your webhooks",
    h(
      "p",
      { class: "muted" },
      "relaychat calls these addresses with signed requests when messages arrive and replies finish. Open one to see its deliveries.",
    ),
    status.node,
    listBody,
  );
  const register = region("Register a webhook");
  let secretBox = null;
  let editor = null;
  root.append(list, register);

  async function reload() {
    const { webhooks } = await api("GET", "/api/webhooks");
    listBody.replaceChildren(
      table(
        [
          {
            label: "Endpoint",
            cell: (hook) =>
              h(
                "div",
                { class: "wh-endpoint" },
                h("a", { href: `/webhooks/${encodeURIComponent(hook.id)}`, "data-nav": true }, hook.url),
                hook.description ? h("small", { class: "muted" }, hook.description) : null,
              ),
          },
          { label: "Events", cell: (hook) => eventList(hook.events) },
          { label: "Scope", cell: (hook) => scopeOf(hook, keys) },
          { label: "State", cell: stateOf },
          { label: "Created", cell: (hook) => when(hook.created_at) },
          { label: "Actions", cell: actionsOf },
        ],
        webhooks,
        "No webhooks yet: register one below to have your system called back.",
      ),
    );
  }

  function actionsOf(hook) {
    const named = (verb) => `${verb} the webhook ${hook.url}`;
    return h(
      "div",
      { class: "actions" },
      h("button", { type: "button", class: "small", "aria-label": named("Edit"), onclick: () => edit(hook) }, "Edit"),
      h(
        "button",
        {
          type: "button",
          class: "small",
          "aria-label": named(hook.enabled ? "Disable" : "Enable"),
          onclick: () => act(async () => {
            const changed = await setEnabled(hook, !hook.enabled);
            if (changed) status.say(`${changed.enabled ? "Enabled" : "Disabled"} ${hook.url}.`);
          }),
        },
        hook.enabled ? "Disable" : "Enable",
      ),
      h(
        "button",
        {
          type: "button",
          class: "small",
          "aria-label": named("Delete"),
          onclick: () => act(async () => {
            if (await deleteHook(hook)) {
              if (editor?.dataset.hook === hook.id) closeEditor();
              status.say(`Deleted ${hook.url}.`);
            }
          }),
        },
        "Delete",
      ),
    );
  }

  async function act(run) {
    try {
      await run();
    } catch (error) {
      status.fail(error);
    }
    await reload().catch((error) => status.fail(error));
  }

  function closeEditor() {
    editor?.remove();
    editor = null;
  }

  function edit(hook) {
    closeEditor();
    const form = endpointForm({
      hook,
      eventTypes,
      keys,
      submitLabel: "Save changes",
      cancel: closeEditor,
      submit: async (body) => {
        if (Object.keys(body).length) await api("PATCH", hookPath(hook.id), body);
        closeEditor();
        status.say(`Saved ${body.url || hook.url}.`);
        await reload();
      },
    });
    editor = region("Edit webhook", h("p", { class: "muted wh-editing" }, hook.url), form);
    editor.dataset.hook = hook.id;
    list.after(editor);
    form.elements.url.focus();
  }

  function showRegister() {
    const form = endpointForm({
      eventTypes,
      keys,
      submitLabel: "Register webhook",
      submit: async (body) => {
        const created = await api("POST", "/api/webhooks", body);
        secretBox?.remove();
        secretBox = secretOnce(
          `Signing secret of ${created.webhook.url}`,
          created.secret,
          "Copy it now and give it to the receiver: it checks each request's webhook-signature with it. It is shown only this once.",
        );
        secretBox.querySelector(".dismiss").before(
          h(
            "p",
            {},
            "Then ",
            h(
              "a",
              { class: "wh-link", href: `/webhooks/${encodeURIComponent(created.webhook.id)}`, "data-nav": true },
              "watch its deliveries",
            ),
            ".",
          ),
        );
        root.prepend(secretBox);
        secretBox.querySelector(".copy-button").focus();
        status.say(`Registered ${created.webhook.url}.`);
        showRegister(); // a fresh form: every event ticked again, nothing of the last one
        await reload();
      },
    });
    register.replaceChildren(register.querySelector("h2"), form);
  }

  showRegister();
  await reload();
}
