// #/ask: ask a question and watch the answer stream in; Stop cancels it.

import { ApiError, api, apiRaw } from "../api.js";
import { el, errorText, setNotice, waitText } from "../dom.js";
import { renderMarkdownInto } from "../markdown.js";
import { questionList } from "./history.js";

const MODEL_KEY = "askgate-model"; // the last model picked (a name, nothing secret)
const UPSTREAM_DOWN = "The model is not answering right now; try again in a minute.";

// What to tell people about a refused question, and what to do next.
export function askErrorText(err) {
  if (err instanceof ApiError) {
    const detail = err.detail || "";
    if (err.status === 429) {
      if (/whole daily quota/i.test(detail)) return detail;
      if (/quota/i.test(detail)) {
        return "Your daily quota is used up; it resets at midnight UTC. See Usage for today's tokens.";
      }
      if (/at once/i.test(detail)) {
        return "You have too many questions being answered at once; try again when one has ended.";
      }
      const wait = err.retryAfter ? waitText(err.retryAfter) : "a minute";
      return `You are asking too fast: try again in ${wait}.`;
    }
    if (err.status === 502 || err.status === 503 || err.status === 504) return UPSTREAM_DOWN;
    if (err.status === 413) return "This question is too long; shorten it and ask again.";
  }
  return errorText(err);
}

// Reads a text/event-stream body and calls onEvent(parsedJson) per `data:` event.
export async function readEvents(response, onEvent) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  const flush = (block) => {
    const data = [];
    for (const line of block.split(/\r\n|\r|\n/)) {
      if (!line || line.startsWith(":")) continue; // a comment: keep-alive
      const colon = line.indexOf(":");
      const field = colon === -1 ? line : line.slice(0, colon);
      let value = colon === -1 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "data") data.push(value);
    }
    if (!data.length) return;
    const text = data.join("\n");
    let event;
    try {
      event = JSON.parse(text);
    } catch {
      return; // not one of askgate's events
    }
    onEvent(event);
  };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let match;
    while ((match = /\r\n\r\n|\n\n|\r\r/.exec(buffer))) {
      const block = buffer.slice(0, match.index);
      buffer = buffer.slice(match.index + match[0].length);
      flush(block);
    }
  }
  if (buffer.trim()) flush(buffer);
}

function tokensText(question) {
  const usage = question.usage || {};
  const parts = [];
  if (usage.prompt_tokens !== null && usage.prompt_tokens !== undefined) {
    parts.push(`${usage.prompt_tokens} in`);
  }
  if (usage.completion_tokens !== null && usage.completion_tokens !== undefined) {
    parts.push(`${usage.completion_tokens} out`);
  }
  return parts.length ? `tokens: ${parts.join(", ")}` : "";
}

async function loadModels(signal) {
  try {
    const list = await api("/v1/models", { signal });
    return Array.isArray(list && list.data) ? list.data.map((m) => m.id) : [];
  } catch (err) {
    if (err && err.name === "AbortError") throw err;
    return []; // no picker: the default model answers
  }
}

export async function render(root, ctx) {
  const textarea = el("textarea", {
    id: "question", name: "content", rows: 4, required: true,
    placeholder: "Ask anything…", attrs: { "aria-describedby": "ask-hint" },
  });
  const modelSlot = el("span", { class: "model-slot" });
  const askButton = el("button", { type: "submit", text: "Ask" });
  const stopButton = el("button", { type: "button", class: "danger", text: "Stop", hidden: true });
  const isMac = /Mac|iPhone|iPad/.test(navigator.platform || navigator.userAgent);
  const hint = el("span", { id: "ask-hint", class: "hint", text: `${isMac ? "⌘" : "Ctrl"}+Enter sends` });
  const form = el("form", { class: "ask-form", id: "ask-form" },
    el("label", { attrs: { for: "question" }, text: "Your question" }),
    textarea,
    el("div", { class: "ask-controls" }, modelSlot, hint, stopButton, askButton),
  );
  const messages = el("div", { class: "messages", attrs: { "aria-live": "polite" } });
  const status = el("p", { class: "answer-status", attrs: { role: "status", "aria-live": "polite" } });
  const answer = el("div", { class: "markdown answer", id: "answer" });
  const asked = el("p", { class: "question-text asked" });
  const answerBox = el("section", { class: "answer-box", hidden: true, attrs: { "aria-labelledby": "answer-title" } },
    el("h2", { id: "answer-title", text: "Answer" }), asked, status, answer);
  const recentList = el("div", { class: "recent-wrap" });
  root.append(
    el("h1", { text: "Ask" }),
    form,
    messages,
    answerBox,
    el("h2", { text: "Recent questions" }),
    recentList,
    el("p", {}, el("a", { href: "#/history", text: "All your questions" })),
  );

  let modelSelect = null;
  let streaming = null; // the AbortController of the stream in flight

  async function loadRecent() {
    try {
      const questions = await api("/questions/me", { signal: ctx.signal });
      recentList.replaceChildren(questionList(questions, {
        empty: "No questions yet: ask your first one above.",
        onDeleted: loadRecent,
      }));
    } catch (err) {
      if (err && err.name === "AbortError") return;
      recentList.replaceChildren(el("p", { class: "muted", text: errorText(err) }));
    }
  }

  textarea.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      form.requestSubmit();
    }
  });

  stopButton.addEventListener("click", () => {
    if (streaming) streaming.abort();
  });

  ctx.signal.addEventListener("abort", () => {
    if (streaming) streaming.abort();
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (streaming) return;
    const content = textarea.value.trim();
    setNotice(messages, "");
    if (!content) {
      setNotice(messages, "Write a question first.");
      textarea.focus();
      return;
    }
    const body = { content, stream: true };
    if (modelSelect) {
      body.model = modelSelect.value;
      try {
        localStorage.setItem(MODEL_KEY, modelSelect.value);
      } catch {
        // not remembered
      }
    }
    await ask(body);
  });

  async function ask(body) {
    const controller = new AbortController();
    streaming = controller;
    askButton.disabled = true;
    stopButton.hidden = false;
    answerBox.hidden = false;
    answer.replaceChildren();
    asked.textContent = body.content;
    answer.setAttribute("aria-busy", "true");
    status.className = "answer-status";
    status.textContent = "Waiting for the model…";

    let text = "";
    let frame = 0;
    let outcome = null; // "done" | "error"
    const paint = () => {
      frame = 0;
      renderMarkdownInto(answer, text);
    };
    const schedule = () => {
      if (!frame) frame = requestAnimationFrame(paint);
    };

    try {
      const response = await apiRaw("/questions", { method: "POST", json: body, signal: controller.signal });
      status.textContent = "Answering…";
      textarea.value = "";
      await readEvents(response, (event) => {
        if (event.type === "delta" && typeof event.text === "string") {
          text += event.text;
          schedule();
        } else if (event.type === "done" && event.question) {
          outcome = "done";
          const q = event.question;
          if (typeof q.answer === "string") text = q.answer;
          const bits = [q.status === "answered" ? "Answered" : `Status: ${q.status}`, q.model, tokensText(q)];
          status.textContent = bits.filter(Boolean).join(" · ");
        } else if (event.type === "error") {
          outcome = "error";
          setNotice(messages, event.detail ? `${UPSTREAM_DOWN} (${event.detail})` : UPSTREAM_DOWN);
          status.textContent = "Failed";
        }
      });
      if (!outcome) {
        outcome = "error";
        setNotice(messages, "The answer was cut off; ask again.");
        status.textContent = "Cut off";
      }
      if (outcome === "error") {
        if (!text) answerBox.hidden = true;
        if (textarea.value === "") textarea.value = body.content;
      }
    } catch (err) {
      if (controller.signal.aborted || (err && err.name === "AbortError")) {
        status.textContent = "Stopped";
        status.className = "answer-status stopped";
      } else {
        if (!text) answerBox.hidden = true;
        setNotice(messages, askErrorText(err));
        if (textarea.value === "" && body.content) textarea.value = body.content;
      }
    } finally {
      if (frame) cancelAnimationFrame(frame);
      if (text || !answerBox.hidden) paint();
      answer.removeAttribute("aria-busy");
      streaming = null;
      const hadFocus = document.activeElement === stopButton;
      stopButton.hidden = true;
      askButton.disabled = false;
      if (hadFocus) textarea.focus();
    }
    if (ctx.signal.aborted) return;
    loadRecent();
    // A stopped question is stored once askgate notices the client left.
    if (controller.signal.aborted) setTimeout(() => { if (!ctx.signal.aborted) loadRecent(); }, 1000);
  }

  const [models] = await Promise.all([loadModels(ctx.signal), loadRecent()]);
  if (models.length >= 2) {
    let saved = null;
    try {
      saved = localStorage.getItem(MODEL_KEY);
    } catch {
      saved = null;
    }
    modelSelect = el("select", { id: "model", name: "model" },
      models.map((id) => el("option", { value: id, text: id, selected: id === saved })));
    modelSlot.replaceChildren(el("span", { class: "model-field" },
      el("label", { attrs: { for: "model" }, text: "Model" }), modelSelect));
  }
  if (!ctx.signal.aborted && document.activeElement === document.getElementById("main")) {
    textarea.focus({ preventScroll: true });
  }
}
