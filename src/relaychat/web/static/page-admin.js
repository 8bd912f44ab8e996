// The admin page (/admin): every user, with their role and state, and the audit trail of
// every API key. The shell links here only for admins; the API refuses everyone else, and
// this page says so rather than showing empty tables.
import { api, updateUser } from "./api.js";
import {
  bindForm,
  confirmAction,
  h,
  labelled,
  pill,
  query,
  section,
  showError,
  table,
  useStyles,
  when,
} from "./ui.js";
import { paged } from "./paged.js";

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
const TONES = { accepted: "good", refused: "bad" };

const muted = (text) => h("span", { class: "muted" }, text);

// What each button asks before it acts, and says once done.
const CHANGES = {
  promote: {
    label: "Make admin",
    patch: { role: "admin" },
    ask: (who) => `Make ${who} an admin? Admins manage every user and read the audit trail of every key.`,
    done: (u) => `${u.name} is now an admin.`,
  },
  demote: {
    label: "Make user",
    patch: { role: "user" },
    ask: (who) => `Make ${who} a user again? They can no longer manage users or read the audit trail.`,
    done: (u) => `${u.name} is now a user.`,
  },
  disable: {
    label: "Disable",
    patch: { disabled: true },
    ask: (who) =>
      `Disable ${who}? Every session of theirs ends now, they cannot sign in, ` +
      "and their API keys are refused until enabled again.",
    done: (u) => `${u.name} is disabled.`,
  },
  enable: {
    label: "Enable",
    patch: { disabled: false },
    ask: (who) => `Enable ${who}? They can sign in again, and their API keys work again.`,
    done: (u) => `${u.name} is enabled.`,
  },
};

function refusal(user, error) {
  const who = user?.email || "your account";
  const why =
    error.code === "admin_required"
      ? `Only an admin may manage users and read the audit trail of every key, and ${who} is not an admin. ` +
        "Ask an admin to promote you."
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
  const search = h("input", {
    name: "q",
    type: "search",
    maxlength: 200,
    placeholder: "Name or email",
    autocomplete: "off",
  });
  const form = h(
    "form",
    { class: "toolbar", role: "search", "aria-label": "Users" },
    labelled("Search users", search),
    h("button", { type: "submit" }, "Search"),
  );
  // Drawn into one holder, so a row changed in place redraws without reloading the pages.
  const holder = h("div");
  let rows = [];

  async function change(row, spec) {
    if (!(await confirmAction(spec.ask(`${row.name} (${row.email})`), spec.label))) return;
    said.textContent = "";
    failed.hidden = true;
    try {
      const updated = await api("PATCH", `/api/admin/users/${encodeURIComponent(row.id)}`, spec.patch);
      Object.assign(row, updated);
      draw();
      // The redraw replaced the button that had the focus: give it to its successor.
      const group = holder.querySelector(`[data-user="${CSS.escape(row.id)}"]`);
      group?.querySelectorAll("button")[spec.patch.role ? 0 : 1]?.focus();
      said.textContent = spec.done(updated);
      if (updated.id === me.id && updated.role !== "admin") {
        // Demoted themselves: the shell drops its Admin link, and this page says why it ends.
        updateUser({ role: updated.role });
        onRefused({ code: "admin_required" });
      }
    } catch (error) {
      if (error?.status === 401) return;
      if (error?.status === 403) return onRefused(error);
      failed.textContent = `${row.name}: ${error.message}`;
      failed.hidden = false;
    }
  }

  function button(row, kind) {
    const spec = CHANGES[kind];
    return h("button", { type: "button", class: "small", onclick: () => change(row, spec) }, spec.label);
  }

  function actions(row) {
    return h(
      "div",
      { class: "actions", role: "group", "aria-label": `Actions for ${row.name}`, dataset: { user: row.id } },
      button(row, row.role === "admin" ? "demote" : "promote"),
      // Nobody may disable their own account (the API refuses it): no button that only fails.
      row.id === me.id ? null : button(row, row.disabled ? "enable" : "disable"),
    );
  }

  function draw() {
    holder.replaceChildren(
      table(
        [
          {
            label: "User",
            cell: (u) =>
              h(
                "div",
                {},
                h("div", {}, u.name, u.id === me.id ? h("span", { class: "muted" }, " (you)") : null),
                h("div", { class: "muted wrap" }, u.email),
              ),
          },
          { label: "Role", cell: (u) => h("div", {}, u.role === "admin" ? pill("admin", "warn") : pill("user")) },
          { label: "Phone", cell: (u) => (u.phone_number ? h("code", {}, u.phone_number) : muted("none")) },
          { label: "Created", cell: (u) => when(u.created_at) },
          {
            label: "State",
            cell: (u) =>
              h("div", {}, u.disabled ? [pill("disabled", "bad"), " ", when(u.disabled_at, "")] : pill("active", "good")),
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
      const filter = query({ q: search.value.trim(), limit: PAGE_SIZE, cursor });
      const answer = await api("GET", `/api/admin/users${filter}`);
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
  const outcome = h(
    "select",
    { name: "outcome" },
    h("option", { value: "" }, "Any"),
    OUTCOMES.map((o) => h("option", { value: o }, o)),
  );
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
    h(
      "div",
      { class: "actions" },
      h("button", { type: "submit", class: "primary" }, "Filter"),
      h("button", { type: "reset" }, "Clear"),
    ),
  );
  const filters = () => {
    const { key_id: key, since, until } = form.elements;
    return {
      key_id: key.value.trim(),
      outcome: outcome.value,
      since: instant(since.value),
      until: instant(until.value),
    };
  };
  const filterByKey = (id) => {
    form.elements.key_id.value = id;
    list.reload().catch((error) => showError(form, error));
  };
  // The key id filters the trail by that key: the quickest way from one odd row to its key's story.
  const keyButton = (id) =>
    h(
      "div",
      {},
      h(
        "button",
        { type: "button", class: "link", title: "Show only this key's requests", onclick: () => filterByKey(id) },
        h("code", { class: "nowrap" }, id),
      ),
    );
  const list = paged(
    async (cursor) => {
      const filter = query({ ...filters(), limit: PAGE_SIZE, cursor });
      const answer = await api("GET", `/api/admin/audit${filter}`);
      return { items: answer.events, next: answer.next_cursor };
    },
    (events) =>
      table(
        [
          { label: "Time", cell: (e) => h("span", { class: "nowrap" }, when(e.created_at)) },
          { label: "Key", cell: (e) => (e.api_key_id ? keyButton(e.api_key_id) : muted("none")) },
          {
            label: "Request",
            cell: (e) =>
              h(
                "div",
                {},
                h("code", {}, `${e.method} ${e.path}`),
                e.conversation_id ? h("div", { class: "muted" }, "conversation ", h("code", {}, e.conversation_id)) : null,
              ),
          },
          {
            label: "Outcome",
            cell: (e) =>
              h(
                "div",
                {},
                pill(e.outcome, TONES[e.outcome] || ""),
                ` ${e.status}`,
                e.reason ? h("div", { class: "muted" }, e.reason) : null,
              ),
          },
          { label: "Resolved by", cell: (e) => e.strategy || muted("—") },
          { label: "Client", cell: (e) => (e.client_address ? h("code", { class: "nowrap" }, e.client_address) : muted("—")) },
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
  const about = h("p", { class: "muted" }, "Every request made with an API key, newest first.");
  return { node: region("Audit trail of every key", about, form, list.node), load: list.reload };
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
