// The Channels page: /channels lists the Twilio numbers you manage, connects new ones and
// changes or deletes them; /channels/<id> shows one channel with its recent messages.
// Each channel shows the webhook URL to paste into Twilio, with a copy button.
import { api } from "./api.js";
import { h, section, copyButton, confirmAction, when, pill, query, useStyles } from "./ui.js";
import { channelForm, describeAnswer, loadChoices, twiliosOwnApi } from "./page-channels-form.js";
import { channelMessages } from "./page-channels-messages.js";

export async function mount(root, ctx) {
  useStyles("page-channels.css");
  const choices = await loadChoices();
  return ctx.sub ? mountChannel(root, ctx, choices) : mountList(root, ctx, choices);
}

/** A status line read out by screen readers when something changes. */
function announcer() {
  return h("p", { class: "channels-status muted", role: "status", "aria-live": "polite" });
}

async function mountList(root, ctx, choices) {
  const admin = ctx.user?.role === "admin";
  const status = announcer();
  const list = h("div", { class: "channel-list" });
  let showAll = false;
  let channels = [];

  // After each save a new, empty form: nothing typed (the auth token least of all) stays.
  const newForm = () =>
    channelForm({
      user: ctx.user,
      choices,
      onSaved: (channel) => {
        channels = [channel, ...channels.filter((c) => c.id !== channel.id)];
        render(channel.id);
        status.textContent = `${channel.name} is connected. Paste its webhook URL into Twilio.`;
        const fresh = newForm();
        form.replaceWith(fresh);
        form = fresh;
      },
    });
  let form = newForm();
  const formPanel = section(
    "Connect a Twilio number",
    h("p", { class: "muted" }, "Texts and WhatsApp messages to the number come into conversations here; the replies are texted back."),
    form,
  );
  formPanel.classList.add("channel-create");

  const toolbar = h("div", { class: "toolbar" });
  if (admin) {
    const all = h("input", { type: "checkbox", id: "channels-all" });
    all.addEventListener("change", () => {
      showAll = all.checked;
      load();
    });
    toolbar.append(h("div", { class: "check" }, all, h("label", { for: "channels-all" }, "Every user's channels")));
  }
  const listPanel = section("Your channels", toolbar, list);
  root.append(status, listPanel, formPanel);

  function render(highlight = null) {
    if (!channels.length) {
      list.replaceChildren(h("p", { class: "muted empty-note" }, "No channels yet: connect a Twilio number below."));
      return;
    }
    list.replaceChildren(
      ...channels.map((channel) =>
        channelCard(channel, {
          ctx,
          choices,
          link: true,
          fresh: channel.id === highlight,
          onChanged: (updated) => {
            channels = channels.map((c) => (c.id === updated.id ? updated : c));
            status.textContent = `${updated.name} saved.`;
          },
          onDeleted: () => {
            channels = channels.filter((c) => c.id !== channel.id);
            render();
            status.textContent = `${channel.name} deleted.`;
          },
        }),
      ),
    );
  }

  async function load() {
    const answer = await api("GET", `/api/channels${query({ all: showAll ? "true" : "" })}`);
    channels = answer.channels;
    render();
  }
  await load();
}

async function mountChannel(root, ctx, choices) {
  let channel;
  try {
    channel = await api("GET", `/api/channels/${encodeURIComponent(ctx.sub)}`);
  } catch (error) {
    if (error?.status !== 404) throw error;
    root.append(
      h("p", { class: "error", role: "alert" }, "There is no such channel, or it is not yours."),
      h("p", {}, h("a", { href: "/channels", "data-nav": "" }, "← All channels")),
    );
    return;
  }
  ctx.setTitle(channel.name);
  const status = announcer();
  const card = channelCard(channel, {
    ctx,
    choices,
    link: false,
    onChanged: (updated) => {
      channel = updated;
      ctx.setTitle(updated.name);
      status.textContent = `${updated.name} saved.`;
    },
    onDeleted: () => ctx.navigate("/channels"),
  });
  const messages = channelMessages(channel, ctx);
  root.append(
    h("p", { class: "back" }, h("a", { href: "/channels", "data-nav": "" }, "← All channels")),
    status,
    card,
    messages.node,
  );
  await messages.start();
  return messages.stop;
}

/**
 * One channel: its settings, its webhook URL with a copy button and where it goes in
 * Twilio, and Edit / Delete. Edit swaps the card's body for the form.
 */
function channelCard(channel, { ctx, choices, link, fresh = false, onChanged, onDeleted }) {
  const headingId = `channel-${channel.id}`;
  const card = h("article", { class: `channel card${fresh ? " fresh" : ""}`, "aria-labelledby": headingId });

  function show() {
    const title = link
      ? h("a", { href: `/channels/${encodeURIComponent(channel.id)}`, "data-nav": "" }, channel.name)
      : channel.name;
    const head = h(
      "header",
      { class: "channel-head" },
      h("h3", { id: headingId }, title),
      channel.enabled ? pill("taking messages", "good") : pill("paused", "warn"),
      channel.auth_token_env && channel.auth_token_env_set === false ? pill(`${channel.auth_token_env} not set on the server`, "bad") : null,
    );
    const details = h(
      "dl",
      { class: "channel-details" },
      term("Account SID", h("code", {}, channel.account_sid || "—")),
      term("Auth token", channel.auth_token_env ? `from the server's ${channel.auth_token_env}` : channel.auth_token_set ? "stored, encrypted" : "none"),
      term("Answers with", describeAnswer(channel, choices)),
      term("Conversations of", ownerText(channel, ctx.user)),
      channel.manager_id !== ctx.user?.id ? term("Managed by", h("code", {}, channel.manager_id)) : null,
      twiliosOwnApi(channel.api_base_url) ? null : term("Replies sent to", h("code", {}, channel.api_base_url)),
      term("Created", when(channel.created_at)),
    );
    const actions = h(
      "div",
      { class: "actions" },
      link ? h("a", { class: "button-link", href: `/channels/${encodeURIComponent(channel.id)}`, "data-nav": "" }, "Messages") : null,
      h("button", { type: "button", onclick: edit }, "Edit"),
      h("button", { type: "button", class: "danger", onclick: remove }, "Delete"),
    );
    card.replaceChildren(head, webhookBlock(channel), details, actions);
  }

  function edit() {
    const form = channelForm({
      channel,
      user: ctx.user,
      choices,
      onSaved: (updated) => {
        channel = updated;
        show();
        onChanged?.(updated);
        card.querySelector("h3 a, h3")?.focus?.();
      },
      onCancel: show,
    });
    card.replaceChildren(h("h3", { id: headingId }, `Edit ${channel.name}`), form);
    form.elements.name.focus();
  }

  async function remove() {
    const ok = await confirmAction(
      `Delete “${channel.name}”? Twilio's requests to its webhook URL will be refused and replies not yet sent are cancelled. Its conversations stay.`,
    );
    if (!ok) return;
    try {
      await api("DELETE", `/api/channels/${encodeURIComponent(channel.id)}`);
    } catch (error) {
      if (error?.status === 401) return;
      card.append(h("p", { class: "error", role: "alert" }, error.message || String(error)));
      return;
    }
    card.remove();
    onDeleted?.();
  }

  show();
  return card;
}

function term(label, value) {
  return h("div", {}, h("dt", {}, label), h("dd", {}, value));
}

function ownerText(channel, user) {
  if (channel.resolve_by_phone) {
    return channel.provision_unknown
      ? "the user with the sender's phone number (created when unknown)"
      : "the user with the sender's phone number (unknown numbers refused)";
  }
  if (channel.owner_id === user?.id) return "you";
  return h("code", {}, channel.owner_id || "—");
}

/** The URL to paste into Twilio, its copy button, and where it goes in Twilio's console. */
function webhookBlock(channel) {
  return h(
    "div",
    { class: "webhook" },
    h("p", { class: "webhook-label" }, "Webhook URL"),
    h("div", { class: "secret-row" }, h("code", { class: "webhook-url" }, channel.webhook_url), copyButton(() => channel.webhook_url, "Copy URL")),
    h(
      "p",
      { class: "hint muted" },
      "In Twilio's console: Phone Numbers → Active numbers → this number → Messaging configuration → “A message comes in”: Webhook, HTTP POST, this URL (WhatsApp senders: “Webhook URL for incoming messages”).",
    ),
    h(
      "p",
      { class: "hint muted" },
      "No status callback URL to set: relaychat gives Twilio one with each reply it sends (this URL followed by /status/<reply id>).",
    ),
  );
}
