// #/admin/users, #/admin/questions, #/admin/leaderboard: the administrators'
// pages (ctx.params[0] picks one). Uses GET/POST /users, PATCH/DELETE
// /users/{id}, GET /questions and GET /usage/leaderboard.
import { api, apiRaw, me } from "../api.js";
import {
  confirmAction,
  el,
  errorText,
  formatDate,
  formatNumber,
  notice,
} from "../dom.js";

const PAGES = [
  ["users", "Users"],
  ["questions", "Questions"],
  ["leaderboard", "Leaderboard"],
];
const USERS_PAGE = 25;
const QUESTIONS_PAGE = 20;
const QUOTA_MAX = 10 ** 12;
const STATUSES = ["answered", "failed", "cancelled"];

function refused(root) {
  root.append(
    el("h1", { text: "Administration" }),
    el("p", {
      class: "notice notice-error admin-refused",
      attrs: { role: "alert" },
      text: "Only administrators can see this.",
    }),
  );
}

function loadingText() {
  return el("p", { class: "loading", text: "Loading…" });
}

// One page of a list and its total (X-Total-Count; null when absent).
async function fetchPage(path, query) {
  const response = await apiRaw(path, { query });
  const header = response.headers.get("X-Total-Count");
  const total = header === null || header === "" ? null : Number(header);
  return { items: await response.json(), total: Number.isFinite(total) ? total : null };
}

function isForbidden(err) {
  return err && err.status === 403;
}

// A list that failed to load: the refusal in place of the page when askgate says
// the caller is no administrator (any more), otherwise what failed, in words.
function loadFailed(err, root, slot, what) {
  if (isForbidden(err)) {
    root.replaceChildren();
    refused(root);
    return;
  }
  notice(slot, `Could not load ${what}: ${errorText(err)}`);
}

// A column header: "Name", or ["Tokens", "num"] for a right-aligned number.
function th(header) {
  const [text, cls] = Array.isArray(header) ? header : [header, null];
  return el("th", { class: cls, attrs: { scope: "col" }, text });
}

function table(caption, headers, rows, className) {
  return el("div", { class: "table-wrap" },
    el("table", { class: `data-table ${className}` },
      el("caption", { class: "visually-hidden", text: caption }),
      el("thead", {}, el("tr", {}, headers.map((h) => th(h)))),
      el("tbody", {}, rows),
    ),
  );
}

const dayFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium" });

function formatDay(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso) : dayFormat.format(date);
}

function quotaText(quota) {
  if (quota === null || quota === undefined) return "default";
  if (quota === 0) return "unlimited";
  return formatNumber(quota);
}

export async function render(root, ctx) {
  root.classList.add("manage", "admin-page");
  const user = me() || ctx.me;
  if (!user || user.role !== "admin") {
    refused(root);
    return;
  }
  const page = (ctx.params && ctx.params[0]) || "users";
  const known = PAGES.find(([slug]) => slug === page);
  if (!known) {
    root.append(
      el("h1", { text: "Administration" }),
      el("p", { class: "notice notice-error", attrs: { role: "alert" }, text: "There is no such administration page." }),
    );
    return;
  }
  root.append(el("h1", { text: `Administration: ${known[1].toLowerCase()}` }));
  const body = el("div", { class: "admin-body" });
  root.append(body);
  if (page === "users") await renderUsers(body, user, root);
  else if (page === "questions") await renderQuestions(body, root);
  else await renderLeaderboard(body, root);
}

// --- Users ------------------------------------------------------------------

async function renderUsers(body, self, root) {
  const messages = el("div", { class: "manage-messages" });
  const listSlot = el("div", { class: "users-list" });
  const search = el("input", {
    attrs: {
      id: "user-search",
      type: "search",
      maxlength: "32",
      autocomplete: "off",
      spellcheck: "false",
      placeholder: "part of a username",
    },
  });
  const searchForm = el("form", {
    class: "inline-form",
    attrs: { id: "user-search-form", role: "search", novalidate: "" },
  },
    el("label", { attrs: { for: "user-search" }, text: "Search users" }),
    search,
    el("button", { type: "submit", text: "Search" }),
  );

  let query = "";
  let offset = 0;

  function say(text, kind = "error") {
    messages.replaceChildren();
    notice(messages, text, kind);
  }

  async function patch(target, changes, doneText) {
    try {
      await api(`/users/${target.id}`, { method: "PATCH", json: changes });
      say(doneText, "ok");
    } catch (err) {
      if (isForbidden(err)) {
        root.replaceChildren();
        refused(root);
        return;
      }
      say(`Could not change ${target.username}: ${errorText(err)}`);
    }
    await load();
  }

  function quotaForm(target) {
    const id = `quota-${target.id}`;
    const input = el("input", {
      class: "quota-input",
      attrs: {
        id,
        type: "number",
        min: "0",
        max: String(QUOTA_MAX),
        step: "1",
        inputmode: "numeric",
        placeholder: "default",
        "aria-label": `Daily token quota of ${target.username}`,
      },
    });
    if (target.daily_token_quota !== null) input.value = String(target.daily_token_quota);
    const form = el("form", { class: "quota-form", attrs: { novalidate: "" } },
      input,
      el("button", {
        type: "submit",
        text: "Set",
        attrs: { "aria-label": `Set the quota of ${target.username}` },
      }),
    );
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const raw = input.value.trim();
      let quota = null;
      if (raw !== "") {
        quota = Number(raw);
        if (!Number.isInteger(quota) || quota < 0 || quota > QUOTA_MAX) {
          say(`The quota must be a whole number of tokens from 0 to ${formatNumber(QUOTA_MAX)}, or empty for the default.`);
          input.focus();
          return;
        }
      }
      const words = quota === null
        ? `${target.username} now has the default daily quota.`
        : quota === 0
          ? `${target.username} now has no daily quota (unlimited).`
          : `${target.username} may now use ${formatNumber(quota)} tokens a day.`;
      await patch(target, { daily_token_quota: quota }, words);
    });
    return form;
  }

  async function remove(target) {
    const ok = await confirmAction(
      `Delete the user ${target.username} with all their questions, API keys and usage? This cannot be undone.`,
      { confirmLabel: "Delete" },
    );
    if (!ok) return;
    try {
      await api(`/users/${target.id}`, { method: "DELETE" });
      say(`${target.username} is deleted.`, "ok");
    } catch (err) {
      say(`Could not delete ${target.username}: ${errorText(err)}`);
    }
    await load();
  }

  function userRow(target) {
    const isSelf = target.id === self.id;
    const nextRole = target.role === "admin" ? "user" : "admin";
    return el("tr", { dataset: { userId: target.id }, class: target.is_active ? "" : "is-inactive" },
      el("th", { attrs: { scope: "row" }, class: "user-name" },
        target.username,
        isSelf ? el("span", { class: "badge", text: "you" }) : null,
      ),
      el("td", { class: "user-email", dataset: { label: "Email" } }, target.email || el("span", { class: "muted", text: "—" })),
      el("td", { class: "user-role", dataset: { label: "Role" } }, target.role),
      el("td", { class: "user-active", dataset: { label: "Active" } }, target.is_active ? "yes" : el("span", { class: "badge badge-muted", text: "no" })),
      el("td", { class: "user-quota", dataset: { label: "Daily quota" } },
        el("span", { class: "quota-now", text: quotaText(target.daily_token_quota) }),
        quotaForm(target),
      ),
      el("td", { class: "user-created", dataset: { label: "Created" } },
        el("time", { attrs: { datetime: target.created_at, title: formatDate(target.created_at) }, text: formatDay(target.created_at) }),
      ),
      el("td", { class: "cell-actions" },
        el("div", { class: "row-actions" },
          el("button", {
            type: "button",
            text: nextRole === "admin" ? "Make admin" : "Make user",
            attrs: { "aria-label": `${nextRole === "admin" ? "Make admin" : "Make user"}: ${target.username}` },
            on: {
              click: () => patch(target, { role: nextRole }, `${target.username} is now ${nextRole === "admin" ? "an admin" : "a user"}.`),
            },
          }),
          el("button", {
            type: "button",
            text: target.is_active ? "Deactivate" : "Activate",
            attrs: { "aria-label": `${target.is_active ? "Deactivate" : "Activate"} ${target.username}` },
            on: {
              click: () => patch(
                target,
                { is_active: !target.is_active },
                target.is_active
                  ? `${target.username} is deactivated: their logins are ended and they cannot sign in.`
                  : `${target.username} is active again.`,
              ),
            },
          }),
          el("button", {
            type: "button",
            class: "danger",
            text: "Delete",
            attrs: { "aria-label": `Delete ${target.username}` },
            on: { click: () => remove(target) },
          }),
        ),
      ),
    );
  }

  let generation = 0; // a load that a newer one overtook shows nothing

  async function load() {
    const mine = ++generation;
    if (!listSlot.firstChild) listSlot.append(loadingText());
    let users;
    let total;
    try {
      const params = { limit: USERS_PAGE, offset };
      if (query) params.q = query;
      ({ items: users, total } = await fetchPage("/users", params));
    } catch (err) {
      if (mine !== generation) return;
      listSlot.replaceChildren();
      loadFailed(err, root, listSlot, "the users");
      return;
    }
    if (mine !== generation) return;
    const more = total === null ? users.length === USERS_PAGE : offset + users.length < total;
    if (users.length === 0) {
      listSlot.replaceChildren(el("p", {
        class: "empty",
        text: query ? `No username contains “${query}”.` : "No users.",
      }));
      if (offset > 0) listSlot.append(pager(false, null));
      return;
    }
    const shown = total === null
      ? null
      : `${formatNumber(offset + 1)}–${formatNumber(offset + users.length)} of ${formatNumber(total)} ${total === 1 ? "user" : "users"}`;
    listSlot.replaceChildren(
      table(
        query ? `Users whose name contains “${query}”` : "Users",
        ["Username", "Email", "Role", "Active", "Daily quota", "Created", "Actions"],
        users.map(userRow),
        "users-table",
      ),
      el("p", { class: "hint", text: "Daily quota: tokens per UTC day; empty means the server’s default, 0 means unlimited." }),
      pager(more, shown),
    );
  }

  function pager(more, shown) {
    return el("div", { class: "pager" },
      shown ? el("span", { class: "muted pager-count", text: shown }) : null,
      offset > 0
        ? el("button", {
          type: "button",
          text: "Previous",
          on: { click: () => { offset = Math.max(0, offset - USERS_PAGE); load(); } },
        })
        : null,
      more
        ? el("button", {
          type: "button",
          text: "Next",
          on: { click: () => { offset += USERS_PAGE; load(); } },
        })
        : null,
    );
  }

  searchForm.addEventListener("submit", (event) => {
    event.preventDefault();
    query = search.value.trim();
    offset = 0;
    messages.replaceChildren();
    load();
  });

  body.append(
    el("section", { class: "card", attrs: { "aria-labelledby": "users-title" } },
      el("h2", { attrs: { id: "users-title" }, text: "Users" }),
      searchForm,
      messages,
      listSlot,
    ),
    createUserSection(async (created) => {
      say(`${created.username} is created.`, "ok");
      await load();
    }),
  );
  await load();
}

function createUserSection(onCreated) {
  const messages = el("div", { class: "manage-messages" });
  const input = (id, label, attrs) => {
    const field = el("input", { attrs: { id, name: id, ...attrs } });
    return [field, el("div", { class: "field" }, el("label", { attrs: { for: id }, text: label }), field)];
  };
  const [username, usernameField] = input("new-user-username", "Username", {
    type: "text", required: "", minlength: "3", maxlength: "32", autocomplete: "off",
    spellcheck: "false", autocapitalize: "off",
  });
  const [password, passwordField] = input("new-user-password", "Password", {
    type: "password", required: "", minlength: "8", maxlength: "128", autocomplete: "new-password",
  });
  const [email, emailField] = input("new-user-email", "Email (optional)", {
    type: "email", maxlength: "320", autocomplete: "off",
  });
  const role = el("select", { attrs: { id: "new-user-role", name: "role" } },
    el("option", { attrs: { value: "user" }, text: "user" }),
    el("option", { attrs: { value: "admin" }, text: "admin" }),
  );
  const button = el("button", { type: "submit", class: "primary", text: "Create user" });
  const form = el("form", { class: "stack-form", attrs: { id: "create-user-form", novalidate: "" } },
    usernameField,
    passwordField,
    emailField,
    el("div", { class: "field" }, el("label", { attrs: { for: "new-user-role" }, text: "Role" }), role),
    el("div", { class: "form-actions" }, button),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    messages.replaceChildren();
    const data = { username: username.value.trim(), password: password.value, role: role.value };
    if (data.username.length < 3 || data.password.length < 8) {
      notice(messages, "A user needs a username of 3–32 characters and a password of at least 8.");
      return;
    }
    if (email.value.trim()) data.email = email.value.trim();
    button.disabled = true;
    try {
      const created = await api("/users", { method: "POST", json: data });
      form.reset();
      await onCreated(created);
    } catch (err) {
      notice(messages, `Could not create the user: ${errorText(err)}`);
    } finally {
      button.disabled = false;
    }
  });
  return el("section", { class: "card", attrs: { "aria-labelledby": "create-user-title" } },
    el("h2", { attrs: { id: "create-user-title" }, text: "Create a user" }),
    messages,
    form,
  );
}

// --- Questions ----------------------------------------------------------------

async function renderQuestions(body, root) {
  const messages = el("div", { class: "manage-messages" });
  const list = el("ol", { class: "recent admin-questions" });
  const more = el("div", { class: "pager" });
  const names = new Map(); // user id -> username

  const userInput = el("input", {
    attrs: {
      id: "questions-user", type: "search", maxlength: "32", autocomplete: "off",
      spellcheck: "false", autocapitalize: "off", placeholder: "any user",
    },
  });
  const textInput = el("input", {
    attrs: { id: "questions-text", type: "search", maxlength: "200", autocomplete: "off", placeholder: "any text" },
  });
  const statusSelect = el("select", { attrs: { id: "questions-status" } },
    el("option", { attrs: { value: "" }, text: "any" }),
    STATUSES.map((s) => el("option", { attrs: { value: s }, text: s })),
  );
  const filterForm = el("form", {
    class: "filter-form",
    attrs: { id: "questions-filter-form", role: "search", novalidate: "" },
  },
    el("div", { class: "field" }, el("label", { attrs: { for: "questions-user" }, text: "User" }), userInput),
    el("div", { class: "field" }, el("label", { attrs: { for: "questions-text" }, text: "Text" }), textInput),
    el("div", { class: "field" }, el("label", { attrs: { for: "questions-status" }, text: "Status" }), statusSelect),
    el("div", { class: "form-actions" }, el("button", { type: "submit", text: "Filter" })),
  );

  let filters = {};
  let offset = 0;

  async function resolveUser(name) {
    const found = await api("/users", { query: { q: name, limit: 100 } });
    const lower = name.toLowerCase();
    const user = found.find((u) => u.username.toLowerCase() === lower);
    if (user) names.set(user.id, user.username);
    return user || null;
  }

  async function nameOf(id) {
    if (names.has(id)) return names.get(id);
    try {
      const user = await api(`/users/${id}`);
      names.set(id, user.username);
    } catch {
      names.set(id, `user ${id}`);
    }
    return names.get(id);
  }

  function questionItem(q) {
    const answer = q.answer || q.error || "";
    const tokens = (q.usage.prompt_tokens || 0) + (q.usage.completion_tokens || 0);
    return el("li", { class: "question-item admin-question", dataset: { questionId: q.id } },
      el("div", { class: "q-head" },
        el("strong", { class: "question-user", text: names.get(q.user_id) || `user ${q.user_id}` }),
        el("time", { attrs: { datetime: q.created_at }, text: formatDate(q.created_at) }),
        el("span", { class: "question-model", text: q.model }),
        el("span", { class: `status status-${q.status}`, text: q.status }),
        el("span", { class: "question-tokens", text: `${formatNumber(tokens)} tokens` }),
      ),
      el("p", { class: "q-content", text: q.content }),
      answer ? el("p", { class: "q-answer", text: answer }) : null,
      el("div", { class: "q-actions" },
        el("a", {
          class: "question-open",
          attrs: { href: `#/history/${q.id}`, "aria-label": `Open question ${q.id} of ${names.get(q.user_id) || `user ${q.user_id}`}` },
          text: "Open",
        }),
      ),
    );
  }

  let generation = 0; // a load that a newer one overtook shows nothing
  const shown = new Set(); // ids of the questions listed

  async function load(append) {
    const mine = ++generation;
    more.replaceChildren(loadingText());
    let questions;
    let total;
    try {
      ({ items: questions, total } = await fetchPage("/questions", { ...filters, limit: QUESTIONS_PAGE, offset }));
      if (mine === generation) {
        await Promise.all([...new Set(questions.map((q) => q.user_id))].map(nameOf));
      }
    } catch (err) {
      if (mine !== generation) return;
      more.replaceChildren();
      loadFailed(err, root, messages, "the questions");
      return;
    }
    if (mine !== generation) return;
    more.replaceChildren();
    const hasMore = total === null
      ? questions.length === QUESTIONS_PAGE
      : offset + questions.length < total;
    if (!append) {
      list.replaceChildren();
      shown.clear();
    }
    // Offsets shift as questions are asked: one already on screen is not repeated.
    const fresh = questions.filter((q) => !shown.has(q.id));
    for (const q of fresh) shown.add(q.id);
    list.append(...fresh.map(questionItem));
    if (!append && questions.length === 0) {
      messages.replaceChildren();
      notice(messages, "No questions match.", "info");
    }
    if (total !== null && total > 0) {
      more.append(el("span", {
        class: "muted pager-count",
        text: `${formatNumber(list.children.length)} of ${formatNumber(total)} ${total === 1 ? "question" : "questions"}`,
      }));
    }
    if (hasMore) {
      more.append(el("button", {
        type: "button",
        text: "Older",
        on: {
          click: async () => {
            offset += QUESTIONS_PAGE;
            await load(true);
          },
        },
      }));
    }
  }

  filterForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    messages.replaceChildren();
    const next = {};
    const name = userInput.value.trim();
    if (name) {
      let user;
      try {
        user = await resolveUser(name);
      } catch (err) {
        notice(messages, `Could not look the user up: ${errorText(err)}`);
        return;
      }
      if (!user) {
        list.replaceChildren();
        more.replaceChildren();
        notice(messages, `There is no user named “${name}”.`);
        return;
      }
      next.user_id = user.id;
    }
    if (textInput.value.trim()) next.q = textInput.value.trim();
    if (statusSelect.value) next.status = statusSelect.value;
    filters = next;
    offset = 0;
    await load(false);
  });

  body.append(
    el("section", { class: "card", attrs: { "aria-labelledby": "admin-questions-title" } },
      el("h2", { attrs: { id: "admin-questions-title" }, text: "Every user’s questions, newest first" }),
      filterForm,
      messages,
      list,
      more,
    ),
  );
  await load(false);
}

// --- Leaderboard ----------------------------------------------------------------

const PERIODS = [
  [1, "Today"],
  [7, "Last 7 days"],
  [30, "Last 30 days"],
  [90, "Last 90 days"],
];

async function renderLeaderboard(body, root) {
  const slot = el("div", { class: "leaderboard" });
  const days = el("select", { attrs: { id: "leaderboard-days" } },
    PERIODS.map(([n, label]) => el("option", { attrs: { value: String(n) }, text: label })),
  );
  days.value = "7";
  const by = el("select", { attrs: { id: "leaderboard-by" } },
    el("option", { attrs: { value: "tokens" }, text: "tokens" }),
    el("option", { attrs: { value: "questions" }, text: "questions" }),
  );
  const form = el("form", { class: "filter-form", attrs: { id: "leaderboard-form", novalidate: "" } },
    el("div", { class: "field" }, el("label", { attrs: { for: "leaderboard-days" }, text: "Period" }), days),
    el("div", { class: "field" }, el("label", { attrs: { for: "leaderboard-by" }, text: "Rank by" }), by),
  );

  let generation = 0; // a load that a newer one overtook shows nothing

  async function load() {
    const mine = ++generation;
    if (!slot.firstChild) slot.append(loadingText());
    let rows;
    try {
      rows = await api("/usage/leaderboard", { query: { days: days.value, by: by.value, limit: 100 } });
    } catch (err) {
      if (mine !== generation) return;
      slot.replaceChildren();
      loadFailed(err, root, slot, "the leaderboard");
      return;
    }
    if (mine !== generation) return;
    const period = PERIODS.find(([n]) => String(n) === days.value)[1].toLowerCase();
    if (rows.length === 0) {
      slot.replaceChildren(el("p", { class: "empty", text: `Nobody asked anything ${period === "today" ? "today" : `in the ${period}`}.` }));
      return;
    }
    slot.replaceChildren(
      table(
        `The users who used most, ${period}`,
        [["#", "num"], "User", ["Tokens", "num"], ["Questions", "num"], ["Failed", "num"]],
        rows.map((row, i) =>
          el("tr", { dataset: { userId: row.user_id } },
            el("td", { class: "num", text: String(i + 1) }),
            el("th", { attrs: { scope: "row" }, text: row.username }),
            el("td", { class: "num", text: formatNumber(row.total_tokens) }),
            el("td", { class: "num", text: formatNumber(row.questions) }),
            el("td", { class: "num", text: formatNumber(row.failed) }),
          ),
        ),
        "leaderboard-table",
      ),
    );
  }

  days.addEventListener("change", load);
  by.addEventListener("change", load);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    load();
  });
  body.append(
    el("section", { class: "card", attrs: { "aria-labelledby": "leaderboard-title" } },
      el("h2", { attrs: { id: "leaderboard-title" }, text: "Who used most" }),
      form,
      slot,
    ),
  );
  await load();
}
