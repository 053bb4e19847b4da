// #/signin: the sign-in form (form#signin-form, input#username, input#password).

import { ApiError, signIn } from "../api.js";
import { el, errorText, setNotice, waitText } from "../dom.js";

export function signInErrorText(err) {
  if (err instanceof ApiError) {
    if (err.status === 401) return "Wrong username or password.";
    if (err.status === 429) {
      const wait = err.retryAfter ? waitText(err.retryAfter) : "a few minutes";
      return `Too many failed attempts: try again in ${wait}.`;
    }
  }
  return errorText(err);
}

export async function render(root, ctx) {
  const username = el("input", {
    id: "username", name: "username", type: "text", required: true,
    autocomplete: "username", autocapitalize: "none", attrs: { spellcheck: "false", maxlength: 128 },
  });
  const password = el("input", {
    id: "password", name: "password", type: "password", required: true,
    autocomplete: "current-password", attrs: { maxlength: 128 },
  });
  const submit = el("button", { type: "submit", text: "Sign in" });
  const messages = el("div", { class: "messages", attrs: { "aria-live": "polite" } });
  const form = el("form", { id: "signin-form", class: "card", novalidate: false },
    el("div", { class: "field" }, el("label", { attrs: { for: "username" }, text: "Username" }), username),
    el("div", { class: "field" }, el("label", { attrs: { for: "password" }, text: "Password" }), password),
    messages,
    el("div", { class: "form-actions" }, submit,
      el("span", { class: "muted" }, "No account? ", el("a", { href: "#/register", text: "Register" }))),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    setNotice(messages, "");
    submit.disabled = true;
    submit.textContent = "Signing in…";
    try {
      await signIn(username.value.trim(), password.value);
      ctx.navigate("#/ask");
    } catch (err) {
      setNotice(messages, signInErrorText(err));
      password.select();
      submit.disabled = false;
      submit.textContent = "Sign in";
    }
  });
  root.append(el("h1", { text: "Sign in" }), form);
  username.focus();
}
