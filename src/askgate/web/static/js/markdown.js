// Markdown from a model (or a person) to safe DOM nodes.
//
// Two layers: marked never passes raw HTML through (an HTML token is rendered as
// escaped text, so `<img src=x onerror=...>` shows as those characters), and its
// output still goes through DOMPurify. Images become links: the page loads nothing
// from elsewhere (its CSP would refuse it anyway).

import { Marked } from "../vendor/marked.esm.js";
import DOMPurify from "../vendor/purify.es.mjs";

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

const marked = new Marked({
  gfm: true,
  breaks: true,
  async: false,
  renderer: {
    html(token) {
      const text = escapeHtml(token.raw ?? token.text ?? "");
      return token.block ? `<p>${text}</p>\n` : text;
    },
    image(token) {
      const label = token.text || token.title || token.href || "image";
      const href = escapeHtml(token.href || "");
      return `<a href="${href}">${escapeHtml(label)}</a>`;
    },
  },
});

const PURIFY = {
  RETURN_DOM_FRAGMENT: true,
  USE_PROFILES: { html: true },
  FORBID_TAGS: ["style", "form", "input", "button", "textarea", "select", "img", "svg", "math",
    "iframe", "object", "embed", "video", "audio", "source", "picture", "link", "meta", "base"],
  FORBID_ATTR: ["style", "id", "name", "srcset"],
  ALLOW_DATA_ATTR: false,
};

const HTTP_LINK = /^https?:\/\//i;

// Markdown text -> a DocumentFragment to append (never a string for innerHTML).
export function renderMarkdown(text) {
  const html = marked.parse(String(text ?? ""));
  const fragment = DOMPurify.sanitize(html, PURIFY);
  for (const link of fragment.querySelectorAll("a[href]")) {
    const href = link.getAttribute("href");
    if (HTTP_LINK.test(href)) {
      link.setAttribute("target", "_blank");
      link.setAttribute("rel", "noopener noreferrer");
    } else {
      link.removeAttribute("target");
      link.setAttribute("rel", "noopener noreferrer");
    }
  }
  return fragment;
}

// Fills `container` with the rendered Markdown of `text`.
export function renderMarkdownInto(container, text) {
  container.replaceChildren(renderMarkdown(text));
  return container;
}
