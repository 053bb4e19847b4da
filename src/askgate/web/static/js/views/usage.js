// #/usage: today's tokens against the quota, and tokens per day over 30 days.

import { api } from "../api.js";
import { el, errorText, formatDate, formatNumber, notice } from "../dom.js";

const SVG = "http://www.w3.org/2000/svg";
const DAYS = 30;

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value !== null && value !== undefined) node.setAttribute(name, String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

function isoDay(date) {
  return date.toISOString().slice(0, 10);
}

// The last 30 UTC days, oldest first, each with its totals over every model.
export function dailyTotals(rows, today = new Date()) {
  const end = Date.UTC(today.getUTCFullYear(), today.getUTCMonth(), today.getUTCDate());
  const days = [];
  const byDay = new Map();
  for (let i = DAYS - 1; i >= 0; i -= 1) {
    const day = { day: isoDay(new Date(end - i * 86400000)), tokens: 0, questions: 0, failed: 0, models: [] };
    days.push(day);
    byDay.set(day.day, day);
  }
  for (const row of rows || []) {
    const day = byDay.get(row.day);
    if (!day) continue;
    day.tokens += row.total_tokens || 0;
    day.questions += row.questions || 0;
    day.failed += row.failed || 0;
    day.models.push(row);
  }
  return days;
}

function niceMax(value) {
  if (value <= 0) return 10;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) {
    if (step * power >= value) return step * power;
  }
  return 10 * power;
}

const shortDayFormat = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric", timeZone: "UTC" });

function shortDay(iso) {
  return shortDayFormat.format(new Date(`${iso}T00:00:00Z`));
}

function dayLabel(day) {
  const models = day.models.length > 1
    ? ` (${day.models.map((m) => `${m.model}: ${formatNumber(m.total_tokens)}`).join(", ")})`
    : "";
  const q = `${formatNumber(day.questions)} question${day.questions === 1 ? "" : "s"}`;
  return `${day.day}: ${formatNumber(day.tokens)} tokens, ${q}${models}`;
}

// An SVG bar chart of tokens per day, `width` pixels wide.
export function drawChart(days, width) {
  const height = 220;
  const pad = { top: 14, right: 10, bottom: 28, left: 48 };
  const plotW = Math.max(width - pad.left - pad.right, 10);
  const plotH = height - pad.top - pad.bottom;
  const max = niceMax(Math.max(0, ...days.map((d) => d.tokens)));
  const total = days.reduce((sum, d) => sum + d.tokens, 0);
  const busiest = days.reduce((best, d) => (d.tokens > best.tokens ? d : best), days[0]);
  const summary = total
    ? `Tokens per day over the last ${DAYS} days: ${formatNumber(total)} in all; the most on ${busiest.day} (${formatNumber(busiest.tokens)}).`
    : `Tokens per day over the last ${DAYS} days: none yet.`;
  const chart = svg("svg", {
    class: "chart", width, height, viewBox: `0 0 ${width} ${height}`,
    role: "img", "aria-label": summary,
  });
  chart.appendChild(svg("title", {}, summary));
  const y = (value) => pad.top + plotH - (value / max) * plotH;
  for (const fraction of [0, 0.5, 1]) {
    const value = max * fraction;
    const yy = y(value);
    chart.appendChild(svg("line", {
      class: fraction === 0 ? "axis" : "grid", x1: pad.left, x2: pad.left + plotW, y1: yy, y2: yy,
    }));
    chart.appendChild(svg("text", { x: pad.left - 6, y: yy + 4, "text-anchor": "end" }, formatNumber(value)));
  }
  const slot = plotW / days.length;
  const barW = Math.max(slot * 0.7, 1);
  const every = slot < 16 ? (slot < 9 ? 10 : 5) : 3;
  days.forEach((day, i) => {
    const x = pad.left + i * slot + (slot - barW) / 2;
    if (day.tokens > 0) {
      const top = y(day.tokens);
      const h = Math.max(pad.top + plotH - top, 1);
      chart.appendChild(svg("rect", {
        class: "bar", x: x.toFixed(1), y: (pad.top + plotH - h).toFixed(1), width: barW.toFixed(1), height: h.toFixed(1),
        "data-day": day.day, "data-tokens": day.tokens,
      }, svg("title", {}, dayLabel(day))));
    }
    const fromEnd = days.length - 1 - i;
    if (fromEnd % every === 0) {
      chart.appendChild(svg("text", {
        x: (pad.left + i * slot + slot / 2).toFixed(1), y: height - 8, "text-anchor": "middle",
      }, shortDay(day.day)));
    }
  });
  if (!total) {
    chart.appendChild(svg("text", {
      class: "empty-text", x: pad.left + plotW / 2, y: pad.top + plotH / 2, "text-anchor": "middle",
    }, "No questions in the last 30 days"));
  }
  return chart;
}

function dailyTable(days) {
  const used = days.filter((d) => d.questions > 0).reverse();
  const rows = [];
  for (const day of used) {
    for (const m of day.models) {
      rows.push(el("tr", {},
        el("td", { text: day.day }),
        el("td", { text: m.model }),
        el("td", { class: "num", text: formatNumber(m.questions) }),
        el("td", { class: "num", text: formatNumber(m.failed) }),
        el("td", { class: "num", text: formatNumber(m.prompt_tokens) }),
        el("td", { class: "num", text: formatNumber(m.completion_tokens) }),
        el("td", { class: "num", text: formatNumber(m.total_tokens) })));
    }
  }
  if (!rows.length) return null;
  return el("details", { class: "chart-table" },
    el("summary", { text: "The figures, per day and model" }),
    el("div", { class: "table-wrap" },
      el("table", {},
        el("thead", {}, el("tr", {},
          ["Day (UTC)", "Model", "Questions", "Failed", "Prompt", "Completion", "Total"].map(
            (h, i) => el("th", { class: i >= 2 ? "num" : null, attrs: { scope: "col" }, text: h })))),
        el("tbody", {}, rows))));
}

function todayBox(today) {
  const used = today.used_tokens || 0;
  const reserved = today.reserved_tokens || 0;
  const resets = formatDate(today.resets_at);
  if (today.quota === null || today.quota === undefined || today.quota === 0) {
    return el("div", { class: "meter-wrap card" },
      el("p", {}, el("strong", { text: `${formatNumber(used)} tokens` }), " used today (UTC day ", today.day, ")."),
      el("p", { class: "muted", text: "No quota: you may use as many tokens as you need." }));
  }
  const quota = today.quota;
  const spent = Math.min(used + reserved, quota);
  const percent = Math.round((spent / quota) * 100);
  const meter = el("progress", {
    id: "quota-meter", max: quota, value: spent,
    attrs: { "aria-label": `Tokens used today: ${percent}% of the daily quota` },
  });
  return el("div", { class: "meter-wrap card" },
    el("p", {},
      el("strong", { text: `${formatNumber(used)} of ${formatNumber(quota)} tokens` }),
      ` used today (${percent}%).`),
    meter,
    el("p", { class: "muted small-text" },
      reserved ? `${formatNumber(reserved)} more held by questions being answered. ` : "",
      `${formatNumber(today.remaining ?? Math.max(quota - used - reserved, 0))} left; the quota resets at midnight UTC (${resets}).`));
}

export async function render(root, ctx) {
  root.append(el("h1", { text: "Usage" }));
  let today;
  let rows;
  try {
    [today, rows] = await Promise.all([
      api("/users/me/usage", { signal: ctx.signal }),
      api("/users/me/usage/daily", { signal: ctx.signal }),
    ]);
  } catch (err) {
    if (err && err.name === "AbortError") return;
    notice(root, errorText(err));
    return;
  }
  const days = dailyTotals(rows);
  const chartBox = el("div", { class: "chart-box" });
  root.append(...[
    el("h2", { text: "Today" }),
    todayBox(today),
    el("h2", { text: `Tokens per day, the last ${DAYS} days` }),
    chartBox,
    days.some((d) => d.questions > 0)
      ? null
      : el("p", { class: "muted", text: "No questions in the last 30 days: ask one and it shows here." }),
    dailyTable(days),
  ].filter(Boolean));
  let drawnWidth = 0;
  const draw = () => {
    const width = Math.max(Math.floor(chartBox.clientWidth), 260);
    if (width === drawnWidth) return;
    drawnWidth = width;
    chartBox.replaceChildren(drawChart(days, width));
  };
  draw();
  if (typeof ResizeObserver === "function") {
    let pending = 0;
    const observer = new ResizeObserver(() => {
      if (!pending) pending = requestAnimationFrame(() => { pending = 0; draw(); });
    });
    observer.observe(chartBox);
    ctx.signal.addEventListener("abort", () => observer.disconnect());
  }
}
