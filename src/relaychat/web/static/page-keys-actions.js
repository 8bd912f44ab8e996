// What the list and a key's own page both do with a key: name its state, open its form,
// rotate its secret with a grace period, revoke it, and show a new secret once.
import { api } from "./api.js";
import { bindForm, confirmAction, h, labelled, pill, secretOnce, when } from "./ui.js";
import { keyForm } from "./page-keys-form.js";

/** The previous secret still works (a rotation's grace period has not run out). */
export function rotatingOut(key) {
  return Boolean(key.previous_valid_until) && new Date(key.previous_valid_until) > new Date();
}

/** The key's state as a pill (active, rotating out, expired, revoked), with its time. */
export function keyState(key) {
  if (key.status === "revoked") return h("span", { class: "key-state" }, pill("revoked", "bad"), " ", when(key.revoked_at));
  if (key.status === "expired") return h("span", { class: "key-state" }, pill("expired", "warn"), " ", when(key.expires_at));
  if (rotatingOut(key)) {
    return h(
      "span",
      { class: "key-state" },
      pill("rotating out", "warn"),
      h("small", { class: "muted" }, " old secret until ", when(key.previous_valid_until)),
    );
  }
  return pill("active", "good");
}

const GRACE = [
  [0, "None: the current secret stops now"],
  [300, "5 minutes"],
  [3600, "1 hour"],
  [86400, "1 day"],
  [604800, "7 days (the most)"],
];

/**
 * A form asking how long the current secret keeps working, then rotating: `onRotated`
 * gets the API's `{key, secret}`.
 */
export function rotateForm(key, { onRotated, onCancel }) {
  const grace = h(
    "select",
    { name: "grace_seconds" },
    GRACE.map(([seconds, label]) => h("option", { value: String(seconds), selected: seconds === 3600 }, label)),
  );
  const form = h(
    "form",
    { class: "rotate-form card", "aria-label": `Rotate ${key.name}` },
    h("h3", {}, `Rotate “${key.name}”`),
    h("p", { class: "muted" }, "A new secret is shown once. Systems using the current one keep working during the grace period, so you can switch them over."),
    labelled("Grace period", grace, "How long the current secret keeps working."),
    h(
      "div",
      { class: "actions" },
      h("button", { type: "submit", class: "primary" }, "Rotate secret"),
      h("button", { type: "button", onclick: onCancel }, "Cancel"),
    ),
  );
  bindForm(form, async () => {
    const seconds = Number(grace.value);
    if (seconds === 0 && !(await confirmAction(`The current secret of “${key.name}” stops working at once. Rotate it?`, "Rotate"))) return;
    onRotated(await api("POST", `/api/keys/${encodeURIComponent(key.id)}/rotate`, { grace_seconds: seconds }));
  });
  return form;
}

/** Revoke after a confirmation; resolves true when the key was revoked. */
export async function revokeKey(view, key) {
  const ok = await confirmAction(
    `Revoke “${key.name}” (${key.prefix}…)? Every request with it is refused from now on, on every worker. This cannot be undone.`,
    "Revoke",
  );
  if (!ok) return false;
  try {
    await api("DELETE", `/api/keys/${encodeURIComponent(key.id)}`);
  } catch (error) {
    report(view, error);
    return false;
  }
  view.alert.hidden = true;
  return true;
}

/** Say what went wrong with an action that has no form of its own. */
export function report(view, error) {
  if (error?.status === 401) return; // the shell shows the sign-in page
  view.alert.textContent = error?.message || String(error);
  view.alert.hidden = false;
}

/** The endpoints and agents a key's form picks from, loaded once per visit. */
export async function choicesOf(view) {
  if (!view.choices) {
    const [{ endpoints }, { agents }] = await Promise.all([api("GET", "/api/endpoints"), api("GET", "/api/agents")]);
    view.choices = { endpoints: endpoints.filter((e) => e.available !== false), agents };
  }
  return view.choices;
}

/** Show a new secret once, where the page shows secrets, and bring it into view. */
export function showSecret(view, title, secret, key) {
  const box = secretOnce(
    title,
    secret,
    `Copy it now and store it where ${key.name} will use it: it is shown only this once and cannot be shown again. Send it in the x-api-key header.`,
  );
  view.secretSlot.replaceChildren(box);
  box.scrollIntoView({ block: "nearest" });
  box.querySelector(".copy-button").focus();
}

/** Open the key form (create when `key` is null) in the page's form slot. */
export async function openForm(view, key, onSaved) {
  let choices;
  try {
    choices = await choicesOf(view);
  } catch (error) {
    report(view, error);
    return;
  }
  const form = keyForm({
    key,
    user: view.ctx.user,
    choices,
    onCancel: () => view.formSlot.replaceChildren(),
    onSaved: (answer) => {
      view.formSlot.replaceChildren();
      onSaved(answer);
    },
  });
  view.formSlot.replaceChildren(h("section", { class: "panel card" }, form));
  form.elements.name.focus();
}

/** Open the rotate form in the form slot; the new secret is shown once. */
export function openRotate(view, key, onRotated) {
  view.formSlot.replaceChildren(
    rotateForm(key, {
      onCancel: () => view.formSlot.replaceChildren(),
      onRotated: (answer) => {
        view.formSlot.replaceChildren();
        showSecret(view, `New secret for “${answer.key.name}”`, answer.secret, answer.key);
        onRotated(answer.key);
      },
    }),
  );
  view.formSlot.querySelector("select").focus();
}


