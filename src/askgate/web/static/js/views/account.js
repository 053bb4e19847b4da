// #/account: the signed-in person's account: details, change email, change
// password, delete the account. Uses GET/PATCH/DELETE /users/me.
import { api, me, reloadMe, signOut } from "../api.js";
import { el, errorText, formatDate, notice } from "../dom.js";

const PASSWORD_MIN = 8;
const PASSWORD_MAX = 128;

function field(id, label, attrs = {}, hint = null) {
  const input = el("input", {
    attrs: { id, name: id, ...attrs, ...(hint ? { "aria-describedby": `${id}-hint` } : {}) },
  });
  const wrap = el("div", { class: "field" },
    el("label", { attrs: { for: id }, text: label }),
    input,
    hint ? el("p", { class: "hint", attrs: { id: `${id}-hint` }, text: hint }) : null,
  );
  return { input, wrap };
}

// A modal <dialog> saying something, with one button; resolves when closed.
function tell(title, text, buttonLabel) {
  return new Promise((resolve) => {
    const button = el("button", { type: "button", class: "primary", text: buttonLabel });
    const dialog = el("dialog", { class: "manage-dialog", attrs: { "aria-labelledby": "tell-title" } },
      el("h2", { attrs: { id: "tell-title" }, text: title }),
      el("p", { text }),
      el("div", { class: "form-actions" }, button),
    );
    button.addEventListener("click", () => dialog.close());
    dialog.addEventListener("close", () => {
      dialog.remove();
      resolve();
    });
    document.body.append(dialog);
    dialog.showModal();
    button.focus();
  });
}

// After the login is gone (password changed, account deleted): forget it here
// and show the sign-in page.
async function endLogin(ctx) {
  try {
    await signOut();
  } catch {
    // The login is already ended on the server: nothing else to do.
  }
  ctx.navigate("#/signin");
}

export async function render(root, ctx) {
  root.classList.add("manage", "account-page");
  let user = me() || ctx.me;
  const loading = el("p", { class: "loading", text: "Loading…" });
  root.append(loading);
  try {
    user = await reloadMe();
  } catch (err) {
    loading.remove();
    if (!user) {
      root.append(el("h1", { text: "Account" }));
      notice(root, `Could not load your account: ${errorText(err)}`);
      return;
    }
  }

  const details = el("dl", { class: "account-details" });
  function showDetails() {
    details.replaceChildren(
      el("dt", { text: "Username" }), el("dd", { class: "account-username", text: user.username }),
      el("dt", { text: "Email" }),
      el("dd", { class: "account-email" }, user.email ? user.email : el("span", { class: "muted", text: "none" })),
      el("dt", { text: "Role" }), el("dd", { class: "account-role", text: user.role }),
      el("dt", { text: "Created" }), el("dd", { text: formatDate(user.created_at) }),
    );
  }
  showDetails();

  // --- Change email --------------------------------------------------------
  const emailMessages = el("div", { class: "manage-messages" });
  const email = field("new-email", "New email", {
    type: "email",
    autocomplete: "email",
    maxlength: "320",
  }, "Leave it empty to remove your email address.");
  email.input.value = user.email || "";
  const emailButton = el("button", { type: "submit", class: "primary", text: "Save email" });
  const emailForm = el("form", { class: "stack-form", attrs: { id: "email-form", novalidate: "" } },
    email.wrap,
    el("div", { class: "form-actions" }, emailButton),
  );
  emailForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    emailMessages.replaceChildren();
    const value = email.input.value.trim();
    if (value === (user.email || "")) {
      notice(emailMessages, "That is already your email address.", "info");
      return;
    }
    emailButton.disabled = true;
    try {
      user = await api("/users/me", { method: "PATCH", json: { email: value === "" ? null : value } });
      try {
        user = await reloadMe();
      } catch {
        // The PATCH answer is the account already.
      }
      showDetails();
      email.input.value = user.email || "";
      notice(emailMessages, value === "" ? "Your email address is removed." : "Your email address is changed.", "ok");
    } catch (err) {
      notice(emailMessages, `Could not change the email address: ${errorText(err)}`);
    } finally {
      emailButton.disabled = false;
    }
  });

  // --- Change password -----------------------------------------------------
  const passwordMessages = el("div", { class: "manage-messages" });
  const current = field("current-password", "Current password", {
    type: "password",
    autocomplete: "current-password",
    required: "",
    maxlength: String(PASSWORD_MAX),
  });
  const fresh = field("new-password", "New password", {
    type: "password",
    autocomplete: "new-password",
    required: "",
    minlength: String(PASSWORD_MIN),
    maxlength: String(PASSWORD_MAX),
  }, `${PASSWORD_MIN}–${PASSWORD_MAX} characters, not a common password.`);
  const repeat = field("repeat-password", "Repeat the new password", {
    type: "password",
    autocomplete: "new-password",
    required: "",
    maxlength: String(PASSWORD_MAX),
  });
  const passwordButton = el("button", { type: "submit", class: "primary", text: "Change password" });
  const passwordForm = el("form", { class: "stack-form", attrs: { id: "password-form", novalidate: "" } },
    current.wrap,
    fresh.wrap,
    repeat.wrap,
    el("p", { class: "hint", text: "Changing the password signs you out everywhere, here too: you then sign in with the new one." }),
    el("div", { class: "form-actions" }, passwordButton),
  );
  passwordForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    passwordMessages.replaceChildren();
    const currentValue = current.input.value;
    const newValue = fresh.input.value;
    if (!currentValue) {
      notice(passwordMessages, "Enter your current password.");
      current.input.focus();
      return;
    }
    if (newValue.length < PASSWORD_MIN) {
      notice(passwordMessages, `The new password needs at least ${PASSWORD_MIN} characters.`);
      fresh.input.focus();
      return;
    }
    if (newValue !== repeat.input.value) {
      notice(passwordMessages, "The two new passwords do not match.");
      repeat.input.focus();
      return;
    }
    passwordButton.disabled = true;
    try {
      await api("/users/me", {
        method: "PATCH",
        json: { password: newValue, current_password: currentValue },
      });
    } catch (err) {
      passwordButton.disabled = false;
      notice(passwordMessages, `Could not change the password: ${errorText(err)}`);
      return;
    }
    passwordForm.reset();
    await tell(
      "Password changed",
      "Your password is changed. Every login of your account has been ended, this one too: sign in again with your new password.",
      "Sign in again",
    );
    await endLogin(ctx);
  });

  // --- Delete the account --------------------------------------------------
  const deleteMessages = el("div", { class: "manage-messages" });
  const deleteButton = el("button", {
    type: "button",
    class: "danger",
    text: "Delete my account…",
    on: { click: () => openDeleteDialog() },
  });

  function openDeleteDialog() {
    const dialogMessages = el("div", { class: "manage-messages" });
    const confirmInput = el("input", {
      attrs: {
        id: "delete-confirm-username",
        type: "text",
        autocomplete: "off",
        spellcheck: "false",
        autocapitalize: "off",
      },
    });
    const confirmButton = el("button", {
      type: "submit",
      class: "danger",
      text: "Delete account",
      attrs: { disabled: "" },
    });
    const cancelButton = el("button", { type: "button", class: "secondary", text: "Cancel" });
    const form = el("form", { attrs: { id: "delete-account-form", novalidate: "" } },
      el("h2", { attrs: { id: "delete-title" }, text: "Delete your account?" }),
      el("p", {
        text: "This deletes your account with everything askgate holds about it: " +
          "your questions, API keys, logins and usage. It cannot be undone.",
      }),
      el("label", { attrs: { for: "delete-confirm-username" } },
        "Type your username, ", el("strong", { text: user.username }), ", to confirm",
      ),
      confirmInput,
      dialogMessages,
      el("div", { class: "form-actions" }, cancelButton, confirmButton),
    );
    const dialog = el("dialog", {
      class: "manage-dialog",
      attrs: { "aria-labelledby": "delete-title" },
    }, form);
    confirmInput.addEventListener("input", () => {
      confirmButton.disabled = confirmInput.value.trim() !== user.username;
    });
    cancelButton.addEventListener("click", () => dialog.close());
    dialog.addEventListener("close", () => {
      dialog.remove();
      deleteButton.focus();
    });
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (confirmInput.value.trim() !== user.username) return;
      dialogMessages.replaceChildren();
      confirmButton.disabled = true;
      cancelButton.disabled = true;
      try {
        await api("/users/me", { method: "DELETE" });
      } catch (err) {
        confirmButton.disabled = false;
        cancelButton.disabled = false;
        notice(dialogMessages, `Could not delete the account: ${errorText(err)}`);
        return;
      }
      dialog.close();
      await tell("Account deleted", `The account ${user.username} and everything in it is deleted.`, "OK");
      await endLogin(ctx);
    });
    document.body.append(dialog);
    dialog.showModal();
    confirmInput.focus();
  }

  loading.remove();
  root.append(
    el("h1", { text: "Account" }),
    el("section", { class: "card", attrs: { "aria-labelledby": "account-details-title" } },
      el("h2", { attrs: { id: "account-details-title" }, text: "Your account" }),
      details,
    ),
    el("section", { class: "card", attrs: { "aria-labelledby": "account-email-title" } },
      el("h2", { attrs: { id: "account-email-title" }, text: "Change email" }),
      emailMessages,
      emailForm,
    ),
    el("section", { class: "card", attrs: { "aria-labelledby": "account-password-title" } },
      el("h2", { attrs: { id: "account-password-title" }, text: "Change password" }),
      passwordMessages,
      passwordForm,
    ),
    el("section", { class: "card danger-zone", attrs: { "aria-labelledby": "account-delete-title" } },
      el("h2", { attrs: { id: "account-delete-title" }, text: "Delete the account" }),
      el("p", { text: "Deletes your account, your questions, API keys and usage for good." }),
      deleteMessages,
      deleteButton,
    ),
  );
}
