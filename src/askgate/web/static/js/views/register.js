// #/register: create an account, then sign in with it.

import { ApiError, api, signIn } from "../api.js";
import { el, errorText, setNotice } from "../dom.js";
import { signInErrorText } from "./signin.js";

function field(id, label, input, hint) {
  const hintNode = hint ? el("span", { class: "hint", id: `${id}-hint`, text: hint }) : null;
  if (hintNode) input.setAttribute("aria-describedby", hintNode.id);
  return el("div", { class: "field" }, el("label", { attrs: { for: id }, text: label }), input, hintNode);
}

export async function render(root, ctx) {
  const username = el("input", {
    id: "reg-username", name: "username", type: "text", required: true,
    autocomplete: "username", autocapitalize: "none", attrs: { spellcheck: "false", minlength: 3, maxlength: 32 },
  });
  const email = el("input", {
    id: "reg-email", name: "email", type: "email", autocomplete: "email", attrs: { maxlength: 320 },
  });
  const password = el("input", {
    id: "reg-password", name: "password", type: "password", required: true,
    autocomplete: "new-password", attrs: { minlength: 8, maxlength: 128 },
  });
  const submit = el("button", { type: "submit", text: "Create account" });
  const messages = el("div", { class: "messages", attrs: { "aria-live": "polite" } });
  const form = el("form", { id: "register-form", class: "card", novalidate: true },
    field("reg-username", "Username", username, "3 to 32 letters, digits or _ . -"),
    field("reg-email", "Email (optional)", email),
    field("reg-password", "Password", password, "8 to 128 characters, not a common password"),
    messages,
    el("div", { class: "form-actions" }, submit,
      el("span", { class: "muted" }, "Have an account? ", el("a", { href: "#/signin", text: "Sign in" }))),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    setNotice(messages, "");
    const body = { username: username.value.trim(), password: password.value };
    if (email.value.trim()) body.email = email.value.trim();
    submit.disabled = true;
    try {
      try {
        await api("/auth/register", { method: "POST", json: body });
      } catch (err) {
        if (err instanceof ApiError && err.status === 409) {
          setNotice(messages, `${err.detail}. Choose another one, or sign in.`.replace(/\.\./, "."));
        } else {
          setNotice(messages, errorText(err));
        }
        return;
      }
      try {
        await signIn(body.username, body.password);
      } catch (err) {
        setNotice(messages, `Your account is made, but signing in failed: ${signInErrorText(err)}`);
        return;
      }
      ctx.navigate("#/ask");
    } finally {
      submit.disabled = false;
    }
  });
  root.append(el("h1", { text: "Create an account" }), form);
  username.focus();
}
