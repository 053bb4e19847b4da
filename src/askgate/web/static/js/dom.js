// Small DOM helpers. Text always goes in as text nodes: nothing here parses HTML.

import { ApiError } from "./api.js";

// el("button", {class: "primary", type: "button", text: "Save", on: {click: fn},
//               attrs: {"aria-label": "..."}, dataset: {id: 3}}, ...children)
export function el(tag, props = {}, ...children) {
  const node = tag === "svg" || props.svg
    ? document.createElementNS("http://www.w3.org/2000/svg", tag)
    : document.createElement(tag);
  const isSvg = node.namespaceURI === "http://www.w3.org/2000/svg";
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "svg") continue;
    if (key === "text") {
      node.textContent = String(value);
    } else if (key === "class") {
      if (isSvg) node.setAttribute("class", value);
      else node.className = Array.isArray(value) ? value.filter(Boolean).join(" ") : value;
    } else if (key === "on") {
      for (const [event, handler] of Object.entries(value)) node.addEventListener(event, handler);
    } else if (key === "attrs") {
      for (const [name, attr] of Object.entries(value)) {
        if (attr === undefined || attr === null || attr === false) continue;
        if (name === "style") throw new Error("style attributes break the page's CSP");
        node.setAttribute(name, attr === true ? "" : String(attr));
      }
    } else if (key === "dataset") {
      for (const [name, data] of Object.entries(value)) node.dataset[name] = String(data);
    } else if (key === "style") {
      throw new Error("set element.style.<prop> from code instead");
    } else if (isSvg) {
      node.setAttribute(key, String(value));
    } else if (key in node) {
      node[key] = value;
    } else {
      node.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false || child === true) continue;
    if (Array.isArray(child)) append(node, child);
    else if (child instanceof Node) node.appendChild(child);
    else node.appendChild(document.createTextNode(String(child)));
  }
}

export function waitText(seconds) {
  const s = Math.max(Math.ceil(Number(seconds) || 0), 1);
  if (s < 90) return `${s} s`;
  const minutes = Math.ceil(s / 60);
  if (minutes < 90) return `${minutes} minute${minutes === 1 ? "" : "s"}`;
  const hours = Math.floor(minutes / 60);
  const rest = minutes % 60;
  return rest ? `${hours} h ${rest} min` : `${hours} h`;
}

// An error as a sentence for people.
export function errorText(err) {
  if (err instanceof ApiError) {
    if (err.status === 0) return err.detail;
    let text = err.detail || `askgate answered ${err.status}.`;
    if (err.status === 401) text = "Your session has ended; sign in again.";
    else if (err.status === 403 && !err.detail) text = "You are not allowed to do that.";
    else if (err.status >= 500 && err.status !== 502 && err.status !== 503 && err.status !== 504) {
      text = "askgate had a problem; try again in a minute.";
    }
    if (err.retryAfter !== null && err.retryAfter !== undefined && !/try again/i.test(text)) {
      text = `${text.replace(/\s*$/, "")} Try again in ${waitText(err.retryAfter)}.`;
    }
    return text;
  }
  if (err && err.name === "AbortError") return "Stopped.";
  return (err && err.message) || "Something went wrong.";
}

// <p class="notice notice-<kind>" role="alert|status">text</p> in container.
export function notice(container, text, kind = "error") {
  const p = el("p", {
    class: `notice notice-${kind}`,
    attrs: { role: kind === "error" ? "alert" : "status" },
    text,
  });
  if (container) container.appendChild(p);
  return p;
}

// Replaces a container's notices with one (or none, with an empty text).
export function setNotice(container, text, kind = "error") {
  for (const old of container.querySelectorAll(":scope > .notice")) old.remove();
  return text ? notice(container, text, kind) : null;
}

let dialogCount = 0;

// A modal <dialog> asking to confirm; resolves true or false.
export function confirmAction(text, { confirmLabel = "Delete", cancelLabel = "Cancel" } = {}) {
  return new Promise((resolve) => {
    const cancel = el("button", { type: "button", class: "secondary", text: cancelLabel });
    const confirm = el("button", { type: "button", class: "danger", text: confirmLabel });
    dialogCount += 1;
    const message = el("p", { id: `confirm-text-${dialogCount}`, text });
    const dialog = el(
      "dialog",
      { class: "confirm", attrs: { "aria-labelledby": message.id } },
      message,
      el("div", { class: "actions" }, cancel, confirm),
    );
    let answer = false;
    cancel.addEventListener("click", () => dialog.close());
    confirm.addEventListener("click", () => {
      answer = true;
      dialog.close();
    });
    dialog.addEventListener("close", () => {
      dialog.remove();
      resolve(answer);
    });
    document.body.appendChild(dialog);
    dialog.showModal();
    cancel.focus();
  });
}

const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
const numberFormat = new Intl.NumberFormat();

export function formatDate(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso) : dateFormat.format(date);
}

export function formatNumber(n) {
  if (n === null || n === undefined || n === "") return "";
  const value = Number(n);
  return Number.isFinite(value) ? numberFormat.format(value) : String(n);
}

export async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch {
      // fall back below
    }
  }
  const area = el("textarea", { class: "offscreen", attrs: { readonly: true, "aria-hidden": "true" } });
  area.value = text;
  document.body.appendChild(area);
  area.select();
  let ok = false;
  try {
    ok = document.execCommand("copy");
  } catch {
    ok = false;
  }
  area.remove();
  return ok;
}
