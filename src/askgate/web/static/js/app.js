// The page: the nav bar, the hash router and the sign-in state.

import { me, restore, signOut, isSignedIn } from "./api.js";
import { el, errorText, notice } from "./dom.js";
import * as signin from "./views/signin.js";
import * as register from "./views/register.js";
import * as ask from "./views/ask.js";
import * as history from "./views/history.js";
import * as usage from "./views/usage.js";
import * as keys from "./views/keys.js";
import * as account from "./views/account.js";
import * as admin from "./views/admin.js";

const PUBLIC = {
  signin: { view: signin, title: "Sign in" },
  register: { view: register, title: "Register" },
};
const PRIVATE = {
  ask: { view: ask, title: "Ask" },
  history: { view: history, title: "History" },
  usage: { view: usage, title: "Usage" },
  keys: { view: keys, title: "API keys" },
  account: { view: account, title: "Account" },
  admin: { view: admin, title: "Admin" },
};
const NAV = [
  ["#/ask", "Ask"],
  ["#/history", "History"],
  ["#/usage", "Usage"],
  ["#/keys", "API keys"],
  ["#/account", "Account"],
];
const ADMIN_NAV = [
  ["#/admin/users", "Users"],
  ["#/admin/questions", "All questions"],
  ["#/admin/leaderboard", "Leaderboard"],
];

const main = document.getElementById("main");
const nav = document.getElementById("nav");
let current = null; // {controller} of the view on screen
let renderCount = 0;
let pendingNotice = null; // {text, kind} shown above the next view ("signed out")
// Built once: a new <img> on every route would flicker while it loads again.
const brand = el("a", { class: "brand", href: "#/signin" },
  el("img", { src: "/web/favicon.svg", alt: "", width: 22, height: 22 }), "askgate");

function parseHash() {
  const raw = window.location.hash.replace(/^#\/?/, "");
  const parts = raw.split("/").filter(Boolean).map((part) => {
    try {
      return decodeURIComponent(part);
    } catch {
      return part;
    }
  });
  return { name: parts[0] || "", params: parts.slice(1) };
}

export function navigate(hash) {
  if (window.location.hash === hash) route();
  else window.location.hash = hash;
}

function navLink(href, label, active) {
  return el("a", {
    href,
    text: label,
    class: active ? "active" : null,
    attrs: { "aria-current": active ? "page" : null },
  });
}

function renderNav(name, params) {
  const user = me();
  const here = params.length ? `#/${name}/${params[0]}` : `#/${name}`;
  const isActive = (href) => href === here || (href === `#/${name}` && name !== "admin");
  brand.href = user ? "#/ask" : "#/signin";
  const items = [];
  if (user) {
    for (const [href, label] of NAV) items.push(navLink(href, label, isActive(href)));
    if (user.role === "admin") {
      items.push(el("span", { class: "nav-sep", text: "Admin" }));
      for (const [href, label] of ADMIN_NAV) items.push(navLink(href, label, isActive(href)));
    }
  }
  const right = user
    ? el("div", { class: "nav-user" },
        el("span", { class: "who", text: user.username, attrs: { title: "Signed in as " + user.username } }),
        el("button", { type: "button", class: "secondary small", text: "Sign out", on: { click: onSignOut } }))
    : el("div", { class: "nav-user" },
        navLink("#/signin", "Sign in", name === "signin"),
        navLink("#/register", "Register", name === "register"));
  nav.replaceChildren(brand, el("div", { class: "nav-links" }, items), right);
}

async function onSignOut() {
  await signOut();
  navigate("#/signin");
}

async function route() {
  const count = ++renderCount;
  if (current) current.controller.abort();
  let { name, params } = parseHash();
  const signedIn = isSignedIn() && me();
  let entry;
  if (signedIn) {
    // A non-admin on #/admin/... gets admin.js's own refusal, in words.
    entry = PRIVATE[name];
    if (!entry) {
      if (name !== "ask") {
        replaceHash("#/ask");
        ({ name, params } = parseHash());
      }
      entry = PRIVATE.ask;
    }
  } else {
    entry = PUBLIC[name];
    if (!entry) {
      replaceHash("#/signin");
      ({ name, params } = parseHash());
      entry = PUBLIC.signin;
    }
  }
  renderNav(name, params);
  const controller = new AbortController();
  current = { controller };
  const root = el("section", { class: `view view-${name}` });
  main.replaceChildren(root);
  if (pendingNotice) {
    notice(root, pendingNotice.text, pendingNotice.kind);
    pendingNotice = null;
  }
  document.title = `${entry.title} · askgate`;
  const ctx = { me: me(), params, navigate, signal: controller.signal };
  // Until the view has its data (shown after a moment only: see app.css).
  const loading = el("p", { class: "loading view-loading", attrs: { role: "status" }, text: "Loading…" });
  main.appendChild(loading);
  root.setAttribute("aria-busy", "true");
  try {
    await entry.view.render(root, ctx);
  } catch (err) {
    if (count !== renderCount || (err && err.name === "AbortError")) return;
    notice(root, errorText(err));
  } finally {
    loading.remove();
    root.removeAttribute("aria-busy");
  }
}

function replaceHash(hash) {
  window.history.replaceState(null, "", hash);
}

window.addEventListener("hashchange", () => {
  main.focus({ preventScroll: true });
  route();
});

window.addEventListener("askgate:signedout", () => {
  pendingNotice = { text: "You are signed out; sign in again to go on.", kind: "info" };
  navigate("#/signin");
});

window.addEventListener("askgate:signedin", async () => {
  // Another tab signed in: pick up its login from the refresh cookie.
  if (isSignedIn()) return;
  try {
    if (!(await restore())) return;
  } catch {
    return; // this tab stays signed out; signing in here still works
  }
  const { name } = parseHash();
  if (name === "signin" || name === "register" || name === "") navigate("#/ask");
  else route();
});

document.getElementById("skip-link").addEventListener("click", (event) => {
  event.preventDefault();
  main.focus();
});

async function start() {
  try {
    await restore();
  } catch (err) {
    pendingNotice = { text: errorText(err), kind: "error" };
  }
  route();
}

start();
