// Calls to askgate's API, and the page's login.
//
// The access token lives in this module's memory only. The refresh token is an
// HttpOnly cookie on /auth that the page never sees: `X-Askgate-Web: 1` on
// /auth/token, /auth/refresh and /auth/logout asks askgate to use it.
// Refresh tokens work once, so every refresh runs under a Web Lock shared by all
// of this origin's tabs: two tabs never send the same cookie at once.

const WEB_HEADER = { "X-Askgate-Web": "1" };
const LOCK_NAME = "askgate-refresh";
const REFRESH_MARGIN_S = 60; // refresh this long before the token expires

let accessToken = null;
let tokenGeneration = 0; // one more per access token received
let refreshTimer = null;
let refreshing = null; // the refresh in flight in this tab
let currentUser = null;

const channel =
  typeof BroadcastChannel === "function" ? new BroadcastChannel("askgate") : null;

export class ApiError extends Error {
  constructor(status, detail, { retryAfter = null, body = null } = {}) {
    super(detail);
    this.name = "ApiError";
    this.status = status; // 0: the network failed
    this.detail = detail; // a sentence for people
    this.retryAfter = retryAfter; // seconds, or null
    this.body = body; // the parsed JSON body, or null
  }
}

function capitalize(text) {
  return text ? text[0].toUpperCase() + text.slice(1) : text;
}

const FIELD_NAMES = {
  username: "Username",
  password: "Password",
  new_password: "The new password",
  current_password: "The current password",
  email: "Email",
  content: "The question",
  name: "Name",
  daily_token_quota: "Daily token quota",
  expires_in_days: "Days until it expires",
};

// One of FastAPI's validation errors, {loc, msg, type}, as a sentence.
function validationSentence(item) {
  if (!item || typeof item !== "object") return String(item);
  const loc = Array.isArray(item.loc) ? item.loc : [];
  const field = loc.filter((part) => part !== "body" && part !== "query").pop();
  let msg = String(item.msg || "is not valid").replace(/^Value error, /, "");
  if (item.type === "string_pattern_mismatch" && field === "username") {
    msg = "may only use letters, digits, dots, dashes and underscores";
  } else if (item.type === "missing") {
    msg = "is required";
  } else if (item.type === "extra_forbidden") {
    msg = "is not accepted here";
  } else {
    msg = msg.replace(/^(String|Value|Input) should/, "should");
    msg = msg.replace(/^value is not a valid email address: /, "is not a valid email address: ");
  }
  const name = FIELD_NAMES[field] || capitalize(field ? String(field).replace(/_/g, " ") : "");
  const sentence = name ? `${name} ${msg}` : capitalize(msg);
  return /[.!?]$/.test(sentence) ? sentence : `${sentence}.`;
}

// askgate's `detail` (a string, or a list of validation errors), or the OpenAI
// API's `{"error": {"message"}}`, as words.
export function detailText(body, status) {
  if (body && typeof body === "object") {
    const { detail } = body;
    if (typeof detail === "string") return detail;
    if (Array.isArray(detail)) return detail.map(validationSentence).join(" ");
    if (body.error && typeof body.error.message === "string") return body.error.message;
  }
  if (status === 0) return "askgate cannot be reached; check your connection and try again.";
  return `askgate answered ${status}.`;
}

function retryAfterOf(response) {
  const value = response.headers.get("Retry-After");
  if (!value) return null;
  const seconds = Number.parseInt(value, 10);
  if (Number.isFinite(seconds)) return Math.max(seconds, 0);
  const when = Date.parse(value);
  return Number.isFinite(when) ? Math.max(Math.ceil((when - Date.now()) / 1000), 0) : null;
}

async function errorFrom(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  return new ApiError(response.status, detailText(body, response.status), {
    retryAfter: retryAfterOf(response),
    body,
  });
}

function networkError(err) {
  if (err && err.name === "AbortError") return err;
  return new ApiError(0, detailText(null, 0));
}

function buildUrl(path, query) {
  const url = new URL(path, window.location.origin);
  if (query) {
    for (const [key, value] of Object.entries(query)) {
      if (value === undefined || value === null || value === "") continue;
      url.searchParams.set(key, String(value));
    }
  }
  return url.pathname + url.search;
}

function setToken(pair) {
  accessToken = pair.access_token;
  tokenGeneration += 1;
  clearTimeout(refreshTimer);
  const seconds = Number(pair.expires_in) || 900;
  const wait = Math.max(seconds - REFRESH_MARGIN_S, seconds / 2, 5) * 1000;
  refreshTimer = setTimeout(() => {
    refresh().catch(() => {});
  }, wait);
}

function clearLogin() {
  accessToken = null;
  tokenGeneration += 1;
  currentUser = null;
  clearTimeout(refreshTimer);
  refreshTimer = null;
}

function withLock(fn) {
  if (navigator.locks && typeof navigator.locks.request === "function") {
    return navigator.locks.request(LOCK_NAME, fn);
  }
  return fn(); // no Web Locks (a page served over plain HTTP to another host)
}

async function doRefresh(after) {
  // Inside the lock. A call refused with 401 needs no new token if this tab got
  // one since that call was sent (`after`: the token generation it was sent
  // with). Another tab's refresh, done while this one waited, has rotated the
  // cookie and the browser holds the new one already: refreshing with it is
  // safe (never a used refresh token), and this tab needs its own access token.
  if (after !== null && accessToken && tokenGeneration !== after) return true;
  let response;
  try {
    response = await fetch("/auth/refresh", {
      method: "POST",
      headers: WEB_HEADER,
      credentials: "same-origin",
    });
  } catch (err) {
    throw networkError(err);
  }
  if (!response.ok) {
    if (response.status === 401 || response.status === 400 || response.status === 422) {
      const wasSignedIn = accessToken !== null;
      clearLogin();
      if (wasSignedIn) window.dispatchEvent(new CustomEvent("askgate:signedout"));
      return false;
    }
    throw await errorFrom(response);
  }
  setToken(await response.json());
  return true;
}

// Gets a new access token with the refresh cookie; true when signed in.
// `after`: the tokenGeneration a call refused with 401 was sent with.
export function refresh({ after = null } = {}) {
  if (!refreshing) {
    refreshing = withLock(() => doRefresh(after)).finally(() => {
      refreshing = null;
    });
  }
  return refreshing;
}

// The Response of a call, once it is known to be 2xx (for streams and headers).
export async function apiRaw(path, { method = "GET", json, form, query, signal, headers } = {}) {
  const send = async () => {
    const init = { method, headers: { ...(headers || {}) }, signal, credentials: "same-origin" };
    if (accessToken) init.headers.Authorization = `Bearer ${accessToken}`;
    if (json !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(json);
    } else if (form !== undefined) {
      init.body = new URLSearchParams(form);
    }
    try {
      return await fetch(buildUrl(path, query), init);
    } catch (err) {
      throw networkError(err);
    }
  };
  const sentWith = tokenGeneration;
  let response = await send();
  if (response.status === 401 && !path.startsWith("/auth/")) {
    if (await refresh({ after: sentWith })) response = await send();
  }
  if (!response.ok) throw await errorFrom(response);
  return response;
}

// Calls askgate: the parsed JSON, or null for 204. Throws ApiError on non-2xx.
export async function api(path, options = {}) {
  const response = await apiRaw(path, options);
  if (response.status === 204) return null;
  const text = await response.text();
  if (!text) return null;
  const type = response.headers.get("Content-Type") || "";
  return type.includes("json") ? JSON.parse(text) : text;
}

export function me() {
  return currentUser;
}

export function isSignedIn() {
  return accessToken !== null;
}

export async function reloadMe() {
  currentUser = await api("/users/me");
  return currentUser;
}

// On load: signed in again from the refresh cookie, or null.
export async function restore() {
  try {
    if (!(await refresh())) return null;
    return await reloadMe();
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      clearLogin();
      return null;
    }
    throw err;
  }
}

export async function signIn(username, password) {
  let response;
  try {
    response = await fetch("/auth/token", {
      method: "POST",
      headers: WEB_HEADER,
      body: new URLSearchParams({ username, password }),
      credentials: "same-origin",
    });
  } catch (err) {
    throw networkError(err);
  }
  if (!response.ok) throw await errorFrom(response);
  setToken(await response.json());
  const user = await reloadMe();
  if (channel) channel.postMessage({ type: "signedin" });
  return user;
}

export async function signOut() {
  try {
    await withLock(() =>
      fetch("/auth/logout", {
        method: "POST",
        headers: WEB_HEADER,
        credentials: "same-origin",
      }),
    );
  } catch {
    // signed out here anyway; the login ends when its refresh token expires
  }
  clearLogin();
  if (channel) channel.postMessage({ type: "signedout" });
}

// Other tabs of this page: signed out there means signed out here.
if (channel) {
  channel.addEventListener("message", (event) => {
    const type = event.data && event.data.type;
    if (type === "signedout" && accessToken !== null) {
      clearLogin();
      window.dispatchEvent(new CustomEvent("askgate:signedout"));
    } else if (type === "signedin" && accessToken === null) {
      window.dispatchEvent(new CustomEvent("askgate:signedin"));
    }
  });
}
