// #/history: my questions, newest first, "Older" pages back; #/history/<id>: one.

import { ApiError, api } from "../api.js";
import { confirmAction, el, errorText, formatDate, formatNumber, notice, setNotice } from "../dom.js";
import { renderMarkdown } from "../markdown.js";

export function statusBadge(status) {
  return el("span", { class: `status status-${status}`, text: status });
}

// The start of a text on one line (lists show this; a question's page all of it).
function excerpt(text, length = 240) {
  if (!text) return "";
  const flat = text.replace(/\s+/g, " ").trim();
  return flat.length > length ? `${flat.slice(0, length).trimEnd()}…` : flat;
}

async function deleteQuestion(question) {
  const ok = await confirmAction(`Delete the question “${excerpt(question.content, 80)}”? This cannot be undone.`);
  if (!ok) return false;
  await api(`/questions/${question.id}`, { method: "DELETE" });
  return true;
}

// One question in a list (the answer as plain text: the full one renders on its page).
export function questionItem(question, { onDeleted } = {}) {
  const messages = el("div", { class: "messages" });
  const item = el("li", { class: "question-item", dataset: { id: question.id } },
    el("div", { class: "q-head" },
      statusBadge(question.status),
      el("time", { attrs: { datetime: question.created_at }, text: formatDate(question.created_at) }),
      el("span", { text: question.model })),
    el("p", { class: "q-content", text: excerpt(question.content, 400) }),
    question.answer
      ? el("p", { class: "q-answer", text: excerpt(question.answer) })
      : el("p", { class: "q-answer", text: question.error ? `Error: ${question.error}` : "No answer." }),
    el("div", { class: "q-actions" },
      el("a", { href: `#/history/${question.id}`, text: "Open",
        attrs: { "aria-label": `Open question ${question.id}` } }),
      el("button", {
        type: "button", class: "link", text: "Delete",
        attrs: { "aria-label": `Delete question ${question.id}` },
        on: {
          click: async () => {
            try {
              if (await deleteQuestion(question)) {
                item.remove();
                if (onDeleted) onDeleted(question);
              }
            } catch (err) {
              setNotice(messages, errorText(err));
            }
          },
        },
      })),
    messages,
  );
  return item;
}

export function questionList(questions, { empty = "No questions.", onDeleted } = {}) {
  if (!questions || !questions.length) return el("p", { class: "muted empty", text: empty });
  return el("ul", { class: "recent questions" }, questions.map((q) => questionItem(q, { onDeleted })));
}

async function renderList(root, ctx) {
  const list = el("ul", { class: "recent questions" });
  const messages = el("div", { class: "messages", attrs: { "aria-live": "polite" } });
  const older = el("button", { type: "button", class: "secondary", text: "Older", hidden: true });
  const end = el("p", { class: "muted", hidden: true, text: "No older questions." });
  root.append(
    el("h1", { text: "History" }),
    messages,
    list,
    el("div", { class: "pager" }, older, end),
  );

  let pageSize = null; // the API's default page (ASKGATE_HISTORY_SIZE)
  let smallest = null;

  function onDeleted() {
    if (!list.children.length) {
      list.replaceWith(el("p", { class: "muted empty", text: "No questions left." }));
    }
  }

  async function load() {
    older.disabled = true;
    try {
      const page = await api("/questions/me", { query: { before_id: smallest }, signal: ctx.signal });
      if (pageSize === null) pageSize = page.length;
      const first = list.children.length;
      for (const q of page) {
        list.appendChild(questionItem(q, { onDeleted }));
        smallest = smallest === null ? q.id : Math.min(smallest, q.id);
      }
      if (first === 0 && !page.length) {
        list.replaceWith(el("p", { class: "muted empty" }, "No questions yet. ",
          el("a", { href: "#/ask", text: "Ask one" }), "."));
      }
      const more = page.length > 0 && page.length >= pageSize;
      older.hidden = !more;
      end.hidden = more || first === 0;
      if (first > 0 && page.length) {
        const link = list.children[first].querySelector("a");
        if (link) link.focus();
      } else if (first > 0 && !more) {
        end.setAttribute("tabindex", "-1");
        end.focus();
      }
    } catch (err) {
      if (err && err.name === "AbortError") return;
      setNotice(messages, errorText(err));
    } finally {
      older.disabled = false;
    }
  }

  older.addEventListener("click", load);
  await load();
}

function detailRow(term, value) {
  if (value === null || value === undefined || value === "") return null;
  return [el("dt", { text: term }), el("dd", {}, value)];
}

async function renderOne(root, ctx, id) {
  const back = el("p", {}, el("a", { href: "#/history", text: "← History" }));
  root.append(back);
  let q;
  try {
    q = await api(`/questions/${encodeURIComponent(id)}`, { signal: ctx.signal });
  } catch (err) {
    if (err && err.name === "AbortError") return;
    root.append(el("h1", { text: "Question" }));
    notice(root, err instanceof ApiError && (err.status === 404 || err.status === 422)
      ? "This question does not exist (or was deleted)."
      : errorText(err));
    return;
  }
  const usage = q.usage || {};
  const tokens = [
    usage.prompt_tokens !== null && usage.prompt_tokens !== undefined ? `${formatNumber(usage.prompt_tokens)} in` : null,
    usage.completion_tokens !== null && usage.completion_tokens !== undefined ? `${formatNumber(usage.completion_tokens)} out` : null,
  ].filter(Boolean).join(", ") || "not reported";
  const model = q.upstream_model && q.upstream_model !== q.model ? `${q.model} (answered by ${q.upstream_model})` : q.model;
  const messages = el("div", { class: "messages", attrs: { "aria-live": "polite" } });
  const del = el("button", { type: "button", class: "danger", text: "Delete" });
  del.addEventListener("click", async () => {
    try {
      if (await deleteQuestion(q)) ctx.navigate("#/history");
    } catch (err) {
      setNotice(messages, errorText(err));
    }
  });
  const answer = el("div", { class: "markdown answer", id: "answer" });
  if (q.answer) answer.appendChild(renderMarkdown(q.answer));
  else answer.appendChild(el("p", { class: "muted", text: "No answer." }));
  let conversation = null;
  if (Array.isArray(q.messages) && q.messages.length) {
    conversation = el("details", { class: "conversation" },
      el("summary", { text: `The conversation (${q.messages.length} messages)` }),
      el("ol", {}, q.messages.map((m) => el("li", {},
        el("strong", { text: `${m.role}: ` }),
        el("span", { class: "question-text-inline", text: typeof m.content === "string" ? m.content : JSON.stringify(m.content) })))));
  }
  root.append(
    el("div", { class: "question-detail" },
      el("h1", { text: `Question ${q.id}` }),
      el("p", { class: "question-text", text: q.content }),
      el("dl", {},
        detailRow("Status", statusBadge(q.status)),
        detailRow("Model", model),
        detailRow("Tokens", tokens),
        detailRow("Asked", el("time", { attrs: { datetime: q.created_at }, text: formatDate(q.created_at) })),
        detailRow("Time taken", q.latency_ms !== null && q.latency_ms !== undefined ? `${formatNumber(q.latency_ms)} ms` : null),
        detailRow("Error", q.error),
        detailRow("Asked with", q.api_key_id ? `API key ${q.api_key_id}` : null)),
      conversation,
      el("h2", { text: "Answer" }),
      answer,
      messages,
      el("div", { class: "actions" }, del)),
  );
}

export async function render(root, ctx) {
  const [id] = ctx.params;
  if (id) await renderOne(root, ctx, id);
  else await renderList(root, ctx);
}
