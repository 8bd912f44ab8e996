// The admin page (/admin): every user, with their role and state, and the audit trail of
// every API key. The shell links here only for admins; the API refuses everyone else, and
// this page says so rather than showing empty tables.
import { api } from "./api.js";
import { bindForm, confirmAction, h, labelled, paged, pill, query, section, showError, table, useStyles, when } from "./ui.js";

/** A section of the page, named by its heading, so it is a region landmark one can jump to. */
function region(title, ...children) {
  const node = section(title, ...children);
  const heading = node.querySelector("h2");
  heading.id = `admin-${title.toLowerCase().replace(/[^a-z]+/g, "-")}`;
  node.setAttribute("aria-labelledby", heading.id);
  return node;
}

const PAGE_SIZE = 50;
const OUTCOMES = ["accepted", "replayed", "refused"];

function refusal(user, error) {
  const why =
    error.code === "admin_required"
      ? `Only an admin may manage users and read the audit trail of every key, and ${user?.email || "your account"} is not an admin. Ask an admin to promote you.`
      : error.message;
  return region(
    "Admins only",
    h("p", { class: "error", role: "alert" }, why),
    h("p", {}, h("a", { href: "/", class: "page-link", "data-nav": "" }, "Back to your conversations")),
  );
}

/** A datetime-local value (the person's time zone) as an ISO instant the API reads; "" stays "". */
function instant(value) {
  if (!value) return "";
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? value : date.toISOString();
}

function usersSection(me, onRefused) {
  const said = h("p", { class: "muted", role: "status" });
  const failed = h("p", { class: "error", role: "alert", hidden: true });
  const search = h("input", { name: "q", type: "search", maxlength: 200, placeholder: "Name or email", autocomplete: "off" });
  const form = h(
    "form",
    { class: "toolbar", role: "search", "aria-label": "Users" },
    labelled("Search users", search),
    h("button", { type: "submit" }, "Search"),
  );
  // Drawn into one holder, so a row changed in place redraws without reloading the pages.
  const holder = h("div");
  let rows = [];

  async function change(row, patch, question, okLabel, done) {
    if (!(await confirmAction(question, okLabel))) return;
    said.textContent = "";
    failed.hidden = true;
    try {
      const updated = await api("PATCH", `/api/admin/users/${encodeURIComponent(row.id)}`, patch);
      Object.assign(row, updated);
      draw();
      said.textContent = done(updated);
      if (updated.id === me.id && updated.role !== "admin") onRefused({ code: "admin_required" });
    } catch (error) {
      if (error?.status === 401) return;
      if (error?.status === 403) return onRefused(error);
      failed.textContent = `${row.name}: ${error.message}`;
      failed.hidden = false;
    }
  }

  function actions(row) {
    const who = `${row.name} (${row.email})`;
    const admin = row.role === "admin";
    const roleButton = h(
      "button",
      {
        type: "button",
        class: "small",
        onclick: () =>
          admin
            ? change(row, { role: "user" }, `Make ${who} a user again? They can no longer manage users or read the audit trail.`, "Make user", (u) => `${u.name} is now a user.`)
            : change(row, { role: "admin" }, `Make ${who} an admin? Admins manage every user and read the audit trail of every key.`, "Make admin", (u) => `${u.name} is now an admin.`),
      },
      admin ? "Make user" : "Make admin",
    );
    // Nobody may disable their own account (the API refuses it): no button that only fails.
    const stateButton =
      row.id === me.id
        ? null
        : h(
            "button",
            {
              type: "button",
              class: "small",
              onclick: () =>
                row.disabled
                  ? change(row, { disabled: false }, `Enable ${who}? They can sign in again; their API keys work again.`, "Enable", (u) => `${u.name} is enabled.`)
                  : change(
                      row,
                      { disabled: true },
                      `Disable ${who}? Every session of theirs ends now, they cannot sign in, and their API keys are refused until enabled again.`,
                      "Disable",
                      (u) => `${u.name} is disabled.`,
                    ),
            },
            row.disabled ? "Enable" : "Disable",
          );
    return h("div", { class: "actions", role: "group", "aria-label": `Actions for ${row.name}` }, roleButton, stateButton);
  }

  function draw() {
    holder.replaceChildren(
      table(
        [
          {
            label: "User",
            cell: (u) => h("div", {}, h("div", {}, u.name, u.id === me.id ? h("span", { class: "muted" }, " (you)") : null), h("div", { class: "muted" }, u.email)),
          },
          { label: "Role", cell: (u) => h("div", {}, u.role === "admin" ? pill("admin", "warn") : pill("user")) },
          { label: "Phone", cell: (u) => (u.phone_number ? h("code", {}, u.phone_number) : h("span", { class: "muted" }, "none")) },
          { label: "Created", cell: (u) => when(u.created_at) },
          {
            label: "State",
            cell: (u) => h("div", {}, u.disabled ? [pill("disabled", "bad"), " ", when(u.disabled_at, "")] : pill("active", "good")),
          },
          { label: "Actions", cell: actions },
        ],
        rows,
        search.value.trim() ? "No user matches." : "No users.",
      ),
    );
    return holder;
  }

  const list = paged(
    async (cursor) => {
      const answer = await api("GET", `/api/admin/users${query({ q: search.value.trim(), limit: PAGE_SIZE, cursor })}`);
      return { items: answer.users, next: answer.next_cursor };
    },
    (items) => {
      rows = items;
      return draw();
    },
  );
  bindForm(form, async () => {
    said.textContent = "";
    failed.hidden = true;
    await list.reload();
  });
  return { node: region("Users", form, said, failed, list.node), load: list.reload };
}

function auditSection() {
  const outcome = h("select", { name: "outcome" }, h("option", { value: "" }, "Any"), OUTCOMES.map((o) => h("option", { value: o }, o)));
  const form = h(
    "form",
    { "aria-label": "Filter the audit trail" },
    h(
      "div",
      { class: "form-grid" },
      labelled("Key id", h("input", { name: "key_id", maxlength: 80, placeholder: "key_… or env:…", autocomplete: "off" })),
      labelled("Outcome", outcome),
      labelled("From", h("input", { name: "since", type: "datetime-local" }), "Your local time."),
      labelled("Until", h("input", { name: "until", type: "datetime-local" })),
    ),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Filter"), h("button", { type: "reset" }, "Clear")),
  );
  const filters = () => {
    const { key_id: key, since, until } = form.elements;
    return { key_id: key.value.trim(), outcome: outcome.value, since: instant(since.value), until: instant(until.value) };
  };
  const filterByKey = (id) => {
    form.elements.key_id.value = id;
    list.reload().catch((error) => showError(form, error));
  };
  const tone = { accepted: "good", refused: "bad" };
  const list = paged(
    async (cursor) => {
      const answer = await api("GET", `/api/admin/audit${query({ ...filters(), limit: PAGE_SIZE, cursor })}`);
      return { items: answer.events, next: answer.next_cursor };
    },
    (events) =>
      table(
        [
          { label: "Time", cell: (e) => h("span", { class: "nowrap" }, when(e.created_at)) },
          {
            label: "Key",
            cell: (e) =>
              e.api_key_id
                ? h("div", {}, h("button", { type: "button", class: "link", title: "Show only this key's requests", onclick: () => filterByKey(e.api_key_id) }, h("code", { class: "nowrap" }, e.api_key_id)))
                : h("span", { class: "muted" }, "none"),
          },
          {
            label: "Request",
            cell: (e) =>
              h("div", {}, h("code", {}, `${e.method} ${e.path}`), e.conversation_id ? h("div", { class: "muted" }, "conversation ", h("code", {}, e.conversation_id)) : null),
          },
          {
            label: "Outcome",
            cell: (e) => h("div", {}, pill(e.outcome, tone[e.outcome] || ""), " ", h("span", {}, String(e.status)), e.reason ? h("div", { class: "muted" }, e.reason) : null),
          },
          { label: "Resolved by", cell: (e) => e.strategy || h("span", { class: "muted" }, "—") },
          { label: "Client", cell: (e) => (e.client_address ? h("code", { class: "nowrap" }, e.client_address) : h("span", { class: "muted" }, "—")) },
          { label: "Latency", cell: (e) => h("span", { class: "nowrap" }, `${Math.round(e.latency_ms)} ms`) },
        ],
        events,
        "No request matches.",
      ),
  );
  bindForm(form, async () => {
    const { since, until } = filters();
    if (since && until && since >= until) {
      throw Object.assign(new Error("Until must be later than From."), { field: "until" });
    }
    await list.reload();
  });
  // "Clear" empties the fields, then shows everything again.
  form.addEventListener("reset", () => setTimeout(() => list.reload().catch((error) => showError(form, error))));
  return {
    node: region("Audit trail of every key", h("p", { class: "muted" }, "Every request made with an API key, newest first."), form, list.node),
    load: list.reload,
  };
}

export async function mount(root, ctx) {
  useStyles("page-admin.css");
  const me = ctx.user;
  const refuse = (error) => root.replaceChildren(refusal(me, error));
  const users = usersSection(me, refuse);
  const audit = auditSection();
  try {
    // The users first: a refusal there is the answer for the whole page.
    await users.load();
  } catch (error) {
    if (error?.status === 403) return refuse(error);
    throw error;
  }
  root.replaceChildren(users.node, audit.node);
  try {
    await audit.load();
  } catch (error) {
    if (error?.status === 403) return refuse(error);
    if (error?.status !== 401) audit.node.append(h("p", { class: "error", role: "alert" }, error.message));
  }
}
