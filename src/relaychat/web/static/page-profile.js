// The profile page (/profile): your name and phone number, your password, and ending every
// session at once. Every field is named as the API names it, so its problems land next to it.
import { api, logout, updateUser } from "./api.js";
import { bindForm, confirmAction, h, labelled, section, showError, useStyles, when } from "./ui.js";

/** A section of the page, named by its heading, so it is a region landmark one can jump to. */
function region(title, ...children) {
  const node = section(title, ...children);
  const heading = node.querySelector("h2");
  heading.id = `profile-${title.toLowerCase().replace(/[^a-z]+/g, "-")}`;
  node.setAttribute("aria-labelledby", heading.id);
  return node;
}

/** A problem found in the page, shown like the API's: next to the control it names. */
function fieldError(field, message) {
  return Object.assign(new Error(message), { field });
}

function status() {
  return h("p", { class: "muted", role: "status" });
}

function profileSection(me) {
  const name = h("input", { name: "name", autocomplete: "name", required: true, maxlength: 200, value: me.name });
  const phone = h("input", {
    name: "phone_number",
    type: "tel",
    autocomplete: "tel",
    maxlength: 64,
    value: me.phone_number || "",
  });
  const saved = status();
  const form = h(
    "form",
    { "aria-label": "Profile" },
    h(
      "dl",
      { class: "facts" },
      h("dt", {}, "Email"),
      h("dd", {}, me.email),
      h("dt", {}, "Role"),
      h("dd", {}, me.role === "admin" ? "Admin" : "User"),
      h("dt", {}, "Member since"),
      h("dd", {}, when(me.created_at)),
    ),
    h(
      "div",
      { class: "form-grid" },
      labelled("Name", name),
      labelled(
        "Phone number",
        phone,
        "Used to match your SMS and WhatsApp messages to you. " +
          "Saved in international form (+14155552671); leave empty to remove it.",
      ),
    ),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Save profile"), saved),
  );
  bindForm(form, async () => {
    saved.textContent = "";
    const user = await api("PATCH", "/api/user", {
      name: name.value.trim(),
      phone_number: phone.value.trim() || null,
    });
    // The stored form, not what was typed: the person sees the number as senders will match it.
    name.value = user.name;
    phone.value = user.phone_number || "";
    saved.textContent = user.phone_number ? `Saved. Your phone number is ${user.phone_number}.` : "Saved.";
    updateUser({ name: user.name, phone_number: user.phone_number });
  });
  return region("Profile", form);
}

function passwordSection(me) {
  const changed = status();
  const form = h(
    "form",
    { "aria-label": "Change password" },
    // Lets a password manager know whose password this is, so it updates the right entry.
    h("input", { type: "text", name: "username", autocomplete: "username", value: me.email, hidden: true }),
    h(
      "div",
      { class: "form-grid" },
      labelled(
        "Current password",
        h("input", { name: "current_password", type: "password", autocomplete: "current-password", required: true }),
      ),
      labelled(
        "New password",
        h("input", { name: "new_password", type: "password", autocomplete: "new-password", required: true, minlength: 8 }),
        "At least 8 characters.",
      ),
      labelled(
        "Repeat the new password",
        h("input", { name: "confirm_password", type: "password", autocomplete: "new-password", required: true }),
      ),
    ),
    h("p", { class: "muted" }, "Changing it signs out every other session of yours; this one stays signed in."),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Change password"), changed),
  );
  bindForm(form, async () => {
    changed.textContent = "";
    const { current_password: current, new_password: next, confirm_password: again } = form.elements;
    if (!current.value) throw fieldError("current_password", "Enter your current password.");
    // Caught here: the API never sees the repeated password, so it cannot catch a typo in it.
    if (next.value !== again.value) throw fieldError("confirm_password", "The two new passwords differ.");
    await api("POST", "/api/user/password", { current_password: current.value, new_password: next.value });
    form.reset();
    changed.textContent = "Password changed. Your other sessions are signed out.";
  });
  return region("Password", form);
}

function sessionsSection() {
  const form = h(
    "form",
    { "aria-label": "Sessions" },
    h(
      "p",
      {},
      "Signed in on a device you no longer use, or left a session open somewhere? " +
        "End every session of yours, this one included; each device must sign in again.",
    ),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "danger" }, "Sign out everywhere")),
  );
  form.noValidate = true;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const sure = await confirmAction(
      "Sign out of every session, on every device, this one included?",
      "Sign out everywhere",
    );
    if (!sure) return;
    const button = form.querySelector("button");
    button.disabled = true;
    try {
      await api("POST", "/api/auth/logout-all");
    } catch (error) {
      button.disabled = false;
      if (error?.status !== 401) showError(form, error);
      return;
    }
    // This session is over on the server too: sign out here at once, rather than wait for
    // the next request's 401.
    await logout();
  });
  return region("Sessions", form);
}

export async function mount(root) {
  useStyles("page-profile.css");
  const me = await api("GET", "/api/user");
  root.replaceChildren(profileSection(me), passwordSection(me), sessionsSection());
}
