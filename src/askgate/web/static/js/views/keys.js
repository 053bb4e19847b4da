// #/keys: the signed-in person's personal API keys: list, create (the key shown
// once), revoke. Uses /users/me/api-keys (askgate.api_keys.router).
import { api } from "../api.js";
import {
  confirmAction,
  copyText,
  el,
  errorText,
  formatDate,
  notice,
} from "../dom.js";

const NAME_MAX = 100;
const EXPIRES_MAX_DAYS = 3650;

function isExpired(key) {
  return key.expires_at !== null && new Date(key.expires_at).getTime() <= Date.now();
}

export async function render(root, ctx) {
  root.classList.add("manage", "keys-page");
  const messages = el("div", { class: "manage-messages" });
  const created = el("div", { class: "key-created-slot" });
  const listSlot = el("div", { class: "keys-list" });

  const nameInput = el("input", {
    attrs: {
      id: "key-name",
      name: "name",
      type: "text",
      required: "",
      maxlength: String(NAME_MAX),
      autocomplete: "off",
      placeholder: "e.g. laptop scripts",
    },
  });
  const expiresInput = el("input", {
    attrs: {
      id: "key-expires",
      name: "expires_in_days",
      type: "number",
      min: "1",
      max: String(EXPIRES_MAX_DAYS),
      step: "1",
      inputmode: "numeric",
    },
  });
  const createButton = el("button", { type: "submit", class: "primary", text: "Create key" });
  const form = el(
    "form",
    { class: "stack-form key-create-form", attrs: { id: "key-create-form", novalidate: "" } },
    el("div", { class: "field" },
      el("label", { attrs: { for: "key-name" }, text: "Name" }),
      nameInput,
    ),
    el("div", { class: "field" },
      el("label", { attrs: { for: "key-expires" }, text: "Expires after (days, optional)" }),
      expiresInput,
    ),
    el("div", { class: "form-actions" }, createButton),
  );

  root.append(
    el("h1", { text: "API keys" }),
    el("p", { class: "lead-text" },
      "A key lets a program ask questions and read your own questions and usage, " +
        "sent as ",
      el("code", { text: "Authorization: Bearer ag-…" }),
      ". A key can never change your account or manage keys.",
    ),
    messages,
    el("section", { class: "card", attrs: { "aria-labelledby": "key-create-title" } },
      el("h2", { attrs: { id: "key-create-title" }, text: "Create a key" }),
      form,
      created,
    ),
    el("section", { class: "card", attrs: { "aria-labelledby": "key-list-title" } },
      el("h2", { attrs: { id: "key-list-title" }, text: "Your keys" }),
      listSlot,
    ),
  );

  function clearMessages() {
    messages.replaceChildren();
  }

  function showCreated(key) {
    const keyField = el("input", {
      class: "key-value",
      attrs: {
        id: "new-key",
        type: "text",
        readonly: "",
        autocomplete: "off",
        spellcheck: "false",
      },
    });
    keyField.value = key.key;
    const copyStatus = el("span", {
      class: "copy-status",
      attrs: { role: "status", "aria-live": "polite" },
    });
    const copyButton = el("button", {
      type: "button",
      text: "Copy",
      attrs: { "aria-label": "Copy the new key" },
      on: {
        click: async () => {
          let copied = false;
          try {
            copied = await copyText(keyField.value);
          } catch {
            copied = false;
          }
          if (copied) {
            copyStatus.textContent = "Copied to the clipboard.";
          } else {
            keyField.focus();
            keyField.select();
            copyStatus.textContent = "Could not copy: the key is selected, copy it yourself.";
          }
        },
      },
    });
    const done = el("button", {
      type: "button",
      class: "secondary",
      text: "Done",
      on: {
        click: () => {
          keyField.value = "";
          created.replaceChildren();
          nameInput.focus();
        },
      },
    });
    keyField.addEventListener("focus", () => keyField.select());
    const panel = el(
      "div",
      { class: "key-created", attrs: { role: "region", "aria-labelledby": "new-key-title" } },
      el("h3", { attrs: { id: "new-key-title" }, text: `New key “${key.name}”` }),
      el("p", { class: "notice notice-info key-once" },
        el("strong", { text: "Copy it now: you will not see it again." }),
        " askgate keeps only a fingerprint of it.",
      ),
      el("label", { attrs: { for: "new-key" }, text: "Your new key" }),
      el("div", { class: "key-copy-row" }, keyField, copyButton),
      copyStatus,
      el("div", { class: "form-actions" }, done),
    );
    created.replaceChildren(panel);
    keyField.focus();
  }

  async function revoke(key) {
    const ok = await confirmAction(
      `Revoke the key “${key.name}” (${key.prefix}…)? Programs using it stop working at once.`,
      { confirmLabel: "Revoke" },
    );
    if (!ok) return;
    clearMessages();
    try {
      await api(`/users/me/api-keys/${key.id}`, { method: "DELETE" });
      notice(messages, `The key “${key.name}” is revoked.`, "ok");
    } catch (err) {
      notice(messages, `Could not revoke the key “${key.name}”: ${errorText(err)}`);
    }
    await loadList();
  }

  function keyRow(key) {
    const expired = isExpired(key);
    return el("tr", { dataset: { keyId: key.id }, class: expired ? "is-expired" : "" },
      el("th", { attrs: { scope: "row" }, class: "key-name" }, key.name),
      el("td", { dataset: { label: "Prefix" } }, el("code", { text: `${key.prefix}…` })),
      el("td", { dataset: { label: "Created" } }, formatDate(key.created_at)),
      el("td", { dataset: { label: "Last used" } }, key.last_used_at ? formatDate(key.last_used_at) : "never"),
      el("td", { dataset: { label: "Expires" } },
        key.expires_at === null
          ? "never"
          : expired
            ? el("span", { class: "badge badge-muted", text: `expired ${formatDate(key.expires_at)}` })
            : formatDate(key.expires_at),
      ),
      el("td", { class: "cell-actions" },
        el("button", {
          type: "button",
          class: "danger",
          text: "Revoke",
          attrs: { "aria-label": `Revoke key ${key.name}` },
          on: { click: () => revoke(key) },
        }),
      ),
    );
  }

  async function loadList() {
    if (!listSlot.firstChild) listSlot.append(el("p", { class: "loading", text: "Loading…" }));
    let keys;
    try {
      keys = await api("/users/me/api-keys", { query: { limit: 100 } });
    } catch (err) {
      listSlot.replaceChildren();
      notice(listSlot, `Could not load your keys: ${errorText(err)}`);
      return;
    }
    if (!keys || keys.length === 0) {
      listSlot.replaceChildren(el("p", { class: "empty", text: "You have no API keys yet." }));
      return;
    }
    listSlot.replaceChildren(
      el("div", { class: "table-wrap" },
        el("table", { class: "data-table keys-table" },
          el("caption", { class: "visually-hidden", text: "Your API keys" }),
          el("thead", {},
            el("tr", {},
              el("th", { attrs: { scope: "col" }, text: "Name" }),
              el("th", { attrs: { scope: "col" }, text: "Prefix" }),
              el("th", { attrs: { scope: "col" }, text: "Created" }),
              el("th", { attrs: { scope: "col" }, text: "Last used" }),
              el("th", { attrs: { scope: "col" }, text: "Expires" }),
              el("th", { attrs: { scope: "col" }, text: "Actions" }),
            ),
          ),
          el("tbody", {}, keys.map(keyRow)),
        ),
      ),
    );
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearMessages();
    const name = nameInput.value.trim();
    if (!name) {
      notice(messages, "Give the key a name, to recognize it later.");
      nameInput.focus();
      return;
    }
    const body = { name };
    const days = expiresInput.value.trim();
    if (days !== "") {
      const n = Number(days);
      if (!Number.isInteger(n) || n < 1 || n > EXPIRES_MAX_DAYS) {
        notice(messages, `The expiry must be a whole number of days from 1 to ${EXPIRES_MAX_DAYS}, or empty for never.`);
        expiresInput.focus();
        return;
      }
      body.expires_in_days = n;
    }
    createButton.disabled = true;
    try {
      const key = await api("/users/me/api-keys", { method: "POST", json: body });
      form.reset();
      showCreated(key);
      await loadList();
    } catch (err) {
      notice(messages, `Could not create the key: ${errorText(err)}`);
    } finally {
      createButton.disabled = false;
    }
  });

  await loadList();
}
