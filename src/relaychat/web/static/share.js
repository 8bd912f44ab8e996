// The "Share" dialog of a conversation: make a read-only link (with opt-ins for external
// senders' phone numbers and key names), copy it, and list or revoke the conversation's
// links. The server keeps only a hash of each link, so a link is shown once, when made.
import { api } from "./api.js";
import { openedId, shownLeaf } from "./chat.js";
import { copyButton, h, when } from "./ui.js";

let dialog = null;
let parts = null;
let target = null; // the conversation being shared: { conversation_id, title }

function build() {
  const phones = h("input", { type: "checkbox", name: "include_phone_numbers" });
  const keys = h("input", { type: "checkbox", name: "include_key_names" });
  const create = h("button", { type: "submit", class: "primary" }, "Create link");
  const link = h("input", { readonly: true, class: "share-url", "aria-label": "Share link" });
  const made = h(
    "div",
    { class: "secret card share-made", role: "status", hidden: true },
    h("p", { class: "share-made-title" }, "Link created. Anyone with it can read this copy."),
    h("div", { class: "secret-row" }, link, copyButton(() => link.value, "Copy link")),
    h("p", { class: "muted share-once" }, "Copy it now: only a hash of it is kept, so it cannot be shown again."),
  );
  const error = h("p", { class: "error", role: "alert", hidden: true });
  const list = h("ul", { class: "share-list", "aria-label": "Links to this conversation" });
  const empty = h("p", { class: "muted empty-note" }, "No links yet.");
  const title = h("h2", { id: "share-dialog-title" }, "Share");
  const form = h(
    "form",
    { class: "share-form" },
    h("p", { class: "muted share-what" }),
    h("label", { class: "check" }, phones, "Show phone numbers of external senders"),
    h("label", { class: "check" }, keys, "Show API key names"),
    h("div", { class: "row" }, create),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    createLink();
  });
  const close = h("button", { type: "button", onclick: () => dialog.close() }, "Close");
  dialog = h(
    "dialog",
    { id: "share-dialog", class: "share-dialog", "aria-labelledby": "share-dialog-title" },
    title,
    form,
    made,
    error,
    h("h3", {}, "Links to this conversation"),
    list,
    empty,
    h("div", { class: "row" }, close),
  );
  document.body.append(dialog);
  parts = { title, form, phones, keys, create, link, made, error, list, empty };
}

/** Open the dialog for `convo` (a conversation as the API lists it). */
export async function openShare(convo) {
  if (!dialog) build();
  target = convo;
  const name = convo.title || "New chat";
  parts.title.textContent = `Share “${name}”`;
  parts.form.querySelector(".share-what").textContent =
    "A link shows a read-only copy of the conversation as it is now, up to its last message on screen. " +
    "Messages written later are not shared. External senders’ phone numbers and API key names stay hidden unless you tick them.";
  parts.phones.checked = false;
  parts.keys.checked = false;
  parts.made.hidden = true;
  parts.link.value = "";
  parts.error.hidden = true;
  parts.list.replaceChildren();
  parts.empty.hidden = true;
  dialog.showModal();
  await refreshList();
}

function showError(error) {
  parts.error.textContent = error?.message || String(error);
  parts.error.hidden = false;
}

async function createLink() {
  const id = target.conversation_id;
  const body = {
    include_phone_numbers: parts.phones.checked,
    include_key_names: parts.keys.checked,
  };
  // The branch on screen, when it is this conversation's: a person shares what they see.
  const leaf = openedId() === id ? shownLeaf() : null;
  if (leaf) body.message_id = leaf;
  parts.create.disabled = true;
  parts.error.hidden = true;
  try {
    const made = await api("POST", `/api/convos/${encodeURIComponent(id)}/shares`, body);
    parts.link.value = made.url;
    parts.made.hidden = false;
    parts.link.focus();
    parts.link.select();
    await refreshList();
  } catch (error) {
    showError(error);
  } finally {
    parts.create.disabled = false;
  }
}

async function refreshList() {
  const id = target.conversation_id;
  try {
    const { shares } = await api("GET", `/api/convos/${encodeURIComponent(id)}/shares`);
    if (target?.conversation_id !== id) return; // another conversation's dialog meanwhile
    parts.list.replaceChildren(...shares.map(row));
    parts.empty.hidden = shares.length > 0;
  } catch (error) {
    showError(error);
  }
}

function row(share) {
  const shown = [
    `${share.message_count} message${share.message_count === 1 ? "" : "s"}`,
    share.include_phone_numbers ? "phone numbers" : null,
    share.include_key_names ? "key names" : null,
  ].filter(Boolean);
  const revoke = h("button", { type: "button", class: "small", "aria-label": `Revoke link ${share.token_hint}…` }, "Revoke");
  revoke.addEventListener("click", async () => {
    revoke.disabled = true;
    try {
      await api("DELETE", `/api/shares/${encodeURIComponent(share.share_id)}`);
      await refreshList();
    } catch (error) {
      revoke.disabled = false;
      showError(error);
    }
  });
  return h(
    "li",
    { class: "share-item", dataset: { share: share.share_id } },
    h("span", { class: "share-info" },
      h("code", {}, `/s/${share.token_hint}…`),
      h("span", { class: "muted" }, " · ", when(share.created_at), " · ", shown.join(" · "))),
    revoke,
  );
}
