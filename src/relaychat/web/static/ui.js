// Building blocks of the console pages: elements, forms that show the API's problem+json
// next to the field it names, secrets shown once, confirmations, tables and status lines.
// Everything is built with textContent and attributes: nothing the API returns is parsed
// as HTML.

/**
 * An element: `h("button", { class: "small", type: "button", onclick: fn }, "Save")`.
 * Props: `class`, `text`, `dataset` (object), `on<event>` (listener), booleans as
 * properties (`hidden`, `disabled`, `checked`, `required`), anything else an attribute.
 * Children: nodes, strings (as text) or arrays of those; null/false are skipped.
 */
export function h(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
    else if (value === true) {
      if (key in node) node[key] = true;
      else node.setAttribute(key, "");
    } else if (key === "value" && "value" in node) node.value = value;
    else node.setAttribute(key, String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(node, child);
    else node.append(child instanceof Node ? child : String(child));
  }
}

/** A labelled control: the label wraps the input, with an optional hint under it. */
export function labelled(label, control, hint) {
  const id = control.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  control.id = id;
  const hintNode = hint ? h("small", { class: "hint muted", id: `${id}-hint` }, hint) : null;
  if (hintNode) control.setAttribute("aria-describedby", hintNode.id);
  return h("div", { class: "field" }, h("label", { for: id }, label), control, hintNode);
}

/** A section of a page with a heading and its content: a region named by its heading. */
export function section(title, ...children) {
  const id = `s-${Math.random().toString(36).slice(2, 9)}`;
  return h("section", { class: "panel card", "aria-labelledby": id }, h("h2", { id }, title), ...children);
}

/** Remove the errors a form shows. */
export function clearErrors(form) {
  for (const node of form.querySelectorAll(".field-error, .form-error")) node.remove();
  for (const node of form.querySelectorAll("[aria-invalid]")) node.removeAttribute("aria-invalid");
}

/**
 * Show an API error on a form: next to the control whose `name` the problem's `field`
 * (or each of its `errors`) names, else at the form's end.
 */
export function showError(form, error) {
  clearErrors(form);
  const entries = error?.errors?.length
    ? error.errors.map((e) => ({ field: e.field, message: e.message }))
    : [{ field: error?.field, message: error?.message || String(error) }];
  let shownAtForm = false;
  for (const { field, message } of entries) {
    const control = field ? controlFor(form, field) : null;
    if (control) {
      control.setAttribute("aria-invalid", "true");
      const note = h("p", { class: "field-error error", role: "alert" }, message);
      (control.closest(".field") || control.parentElement).append(note);
    } else if (!shownAtForm) {
      shownAtForm = true;
      form.append(h("p", { class: "form-error error", role: "alert" }, error?.message || message));
    }
  }
  const first = form.querySelector("[aria-invalid=true]");
  if (first) first.focus();
}

function controlFor(form, field) {
  // The API names nested fields `rate_limit.per_minute` or `tools[1]`: try the whole name
  // as it is, then each shorter prefix, so `allowed_conversations[0]` finds a control named
  // so, or else `allowed_conversations`.
  const exact = form.querySelector(`[name="${CSS.escape(String(field))}"]`);
  if (exact) return exact;
  const parts = String(field).split(/[.[]/);
  for (let n = parts.length; n > 0; n -= 1) {
    const name = parts.slice(0, n).join(".");
    const control = form.querySelector(`[name="${CSS.escape(name)}"]`);
    if (control) return control;
  }
  return null;
}

/**
 * Wire a form: on submit, clear its errors, disable its submit button, run `submit(form)`,
 * and show whatever it throws next to the right field. Resolves to submit's result.
 */
export function bindForm(form, submit) {
  form.noValidate = true;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    const buttons = form.querySelectorAll("button[type=submit], button:not([type])");
    for (const button of buttons) button.disabled = true;
    try {
      await submit(form);
    } catch (error) {
      if (error?.status !== 401) showError(form, error);
    } finally {
      for (const button of buttons) button.disabled = false;
    }
  });
  return form;
}

/**
 * A secret shown once: the value with a copy button and a warning. "I have saved it"
 * removes the node, and with it the only reference the page held.
 */
export function secretOnce(title, secret, warning) {
  const value = h("code", { class: "secret-value" }, secret);
  const box = h(
    "div",
    { class: "secret card", role: "status" },
    h("h3", {}, title),
    h("p", { class: "warning" }, warning || "Copy it now: it is shown only once and cannot be shown again."),
    h("div", { class: "secret-row" }, value, copyButton(() => value.textContent)),
    h("button", {
      type: "button",
      class: "dismiss",
      onclick: () => {
        value.textContent = "";
        box.remove();
      },
    }, "I have saved it"),
  );
  return box;
}

/** A button that copies `text()` to the clipboard and says so. */
export function copyButton(text, label = "Copy") {
  const button = h("button", { type: "button", class: "small copy-button" }, label);
  button.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(text());
      button.textContent = "Copied";
    } catch {
      button.textContent = "Select and copy";
    }
    setTimeout(() => (button.textContent = label), 1500);
  });
  return button;
}

/** Ask before something that cannot be undone; resolves true when confirmed. */
export async function confirmAction(text, okLabel = "Delete") {
  const dialog = document.getElementById("confirm-dialog");
  document.getElementById("confirm-text").textContent = text;
  const ok = dialog.querySelector("button[value=ok]");
  ok.textContent = okLabel;
  dialog.returnValue = "";
  dialog.showModal();
  await new Promise((resolve) => dialog.addEventListener("close", resolve, { once: true }));
  ok.textContent = "Delete";
  return dialog.returnValue === "ok";
}

const RELATIVE = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
const ABSOLUTE = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
const STEPS = [
  [60, "second"],
  [60, "minute"],
  [24, "hour"],
  [7, "day"],
  [4.35, "week"],
  [12, "month"],
  [Infinity, "year"],
];

/** A <time> saying "3 minutes ago" (or "never"), the exact time in its tooltip. */
export function when(iso, never = "never") {
  if (!iso) return h("span", { class: "muted" }, never);
  const date = new Date(iso);
  let amount = (date.getTime() - Date.now()) / 1000;
  let unit = "second";
  for (const [size, name] of STEPS) {
    unit = name;
    if (Math.abs(amount) < size) break;
    amount /= size;
  }
  return h("time", { datetime: date.toISOString(), title: ABSOLUTE.format(date) }, RELATIVE.format(Math.round(amount), unit));
}

/**
 * A table: `columns` are `{ label, cell(row) }` (cell returns a node or text); `empty` is
 * said when there are no rows. Returns the <table> (or the empty note).
 */
export function table(columns, rows, empty = "Nothing yet.") {
  if (!rows.length) return h("p", { class: "muted empty-note" }, empty);
  return h(
    "div",
    { class: "table-scroll" },
    h(
      "table",
      { class: "grid" },
      h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c.label)))),
      h("tbody", {}, rows.map((row) => h("tr", {}, columns.map((c) => h("td", { dataset: { label: c.label } }, c.cell(row)))))),
    ),
  );
}

/**
 * Where a view says what its last action did (a status) or why it failed (an alert):
 * `{ node, say(text), fail(error) }`. A 401 is left to the shell, which shows the sign-in form.
 */
export function statusLine() {
  const done = h("p", { class: "status-line muted", role: "status" });
  const failed = h("p", { class: "status-line error", role: "alert", hidden: true });
  return {
    node: h("div", {}, done, failed),
    say(text) {
      failed.hidden = true;
      failed.textContent = "";
      done.textContent = text;
    },
    fail(error) {
      if (error?.status === 401) return;
      done.textContent = "";
      failed.textContent = error?.message || String(error);
      failed.hidden = false;
    },
  };
}

/** A pill naming a state: `pill("failed", "bad")`. */
export function pill(text, tone = "") {
  return h("span", { class: `pill ${tone}`.trim() }, text);
}

/** Query string from an object, skipping empty values. */
export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") search.set(key, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

/** Load a page's own stylesheet once (`page-keys.css`): the chat's first load skips it. */
export function useStyles(name) {
  if (document.querySelector(`link[data-styles="${CSS.escape(name)}"]`)) return;
  document.head.append(h("link", { rel: "stylesheet", href: `/static/${name}`, dataset: { styles: name } }));
}
