// The JSON API client and the sign-in session.
// The access token lives in this module's memory only; the HttpOnly refresh cookie renews it
// shortly before it expires and after a reload. Every state change carries the token in the
// Authorization header, so a cookie alone never changes anything.

export class ApiError extends Error {
  constructor(status, code, detail, { field = null, errors = null } = {}) {
    super(detail || code || `HTTP ${status}`);
    this.status = status;
    this.code = code || `http_${status}`;
    // The field the problem names, and every field's message when there are several:
    // forms show each next to its control.
    this.field = field;
    this.errors = errors;
  }
}

/** Fires "signedin" (detail: user), "userchanged" (detail: user) and "signedout"
 * (detail: {reason}). */
export const session = new EventTarget();

let token = null;
let user = null;
let refreshTimer = 0;
let inflight = null;
// Whether this browser signed in before: only then is a refresh worth trying at start-up
// (it saves a 401 on every first visit). It holds no secret; the cookie is the credential.
const HINT = "relaychat.signedIn";

export function currentUser() {
  return user;
}

/** The signed-in person changed (their name, or their own role): keep it and fire
 * "userchanged" (detail: user), so the shell shows it without a reload. */
export function updateUser(changes) {
  if (!user) return;
  user = { ...user, ...changes };
  session.dispatchEvent(new CustomEvent("userchanged", { detail: user }));
}

async function problem(response) {
  try {
    const body = await response.json();
    return new ApiError(response.status, body.code, body.detail || body.title, {
      field: body.field || null,
      errors: Array.isArray(body.errors) ? body.errors : null,
    });
  } catch {
    return new ApiError(response.status, null, response.statusText);
  }
}

function accept(answer) {
  token = answer.access_token;
  const first = user === null;
  user = answer.user;
  clearTimeout(refreshTimer);
  // Renew at 80 % of the lifetime: early enough to survive a slow network.
  const delay = Math.max(1, answer.expires_in * 0.8) * 1000;
  refreshTimer = setTimeout(() => refresh().catch(() => {}), delay);
  localStorage.setItem(HINT, "1");
  if (first) session.dispatchEvent(new CustomEvent("signedin", { detail: user }));
}

function signedOut(reason) {
  const had = user !== null;
  token = null;
  user = null;
  clearTimeout(refreshTimer);
  localStorage.removeItem(HINT);
  session.dispatchEvent(new CustomEvent("signedout", { detail: { reason: had ? reason : "" } }));
}

async function refreshOnce() {
  const response = await fetch("/api/auth/refresh", { method: "POST", credentials: "same-origin" });
  if (!response.ok) {
    const error = await problem(response);
    if (response.status === 401 || response.status === 403) {
      signedOut(`Your session ended (${error.code}). Please sign in again.`);
    }
    throw error;
  }
  accept(await response.json());
}

/** A fresh access token from the refresh cookie; one request at a time across all tabs. */
export function refresh() {
  if (!inflight) {
    // Tabs share the refresh cookie and the server rotates it on use: two tabs refreshing
    // with the same cookie would look like a stolen token. The lock runs them in turn.
    const run = navigator.locks
      ? navigator.locks.request("relaychat-refresh", refreshOnce)
      : refreshOnce();
    inflight = run.finally(() => {
      inflight = null;
    });
  }
  return inflight;
}

/** Restore a session after a reload; resolves false when there is none. */
export async function resume() {
  if (!localStorage.getItem(HINT)) return false;
  try {
    await refresh();
    return true;
  } catch {
    return false;
  }
}

export async function login(email, password) {
  const response = await fetch("/api/auth/login", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ email, password }),
  });
  if (!response.ok) throw await problem(response);
  accept(await response.json());
}

export async function register(name, email, password) {
  const response = await fetch("/api/auth/register", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ name, email, password }),
  });
  if (!response.ok) throw await problem(response);
  await login(email, password);
}

export async function logout() {
  try {
    await fetch("/api/auth/logout", { method: "POST", headers: authHeaders() });
  } finally {
    signedOut("");
  }
}

function authHeaders() {
  return token ? { authorization: `Bearer ${token}` } : {};
}

/** Call the API; JSON in and out; a 401 renews the token once and tries again. */
export async function api(method, path, body, { retry = true } = {}) {
  if (!token) await refresh();
  const headers = { ...authHeaders(), accept: "application/json" };
  if (body !== undefined) headers["content-type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401 && retry) {
    await refresh();
    return api(method, path, body, { retry: false });
  }
  if (!response.ok) throw await problem(response);
  if (response.status === 204) return null;
  return response.json();
}
