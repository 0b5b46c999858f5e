// The trace list: GetTraceSummaries' answer as a table, newest first; a click opens the trace.

import { clock, el, iso, ms, shorten } from "./dom.js";

export function traceHref(id) {
  return `/traces/${encodeURIComponent(id)}`;
}

function state(summary) {
  if (summary.HasFault) return "fault";
  if (summary.HasThrottle) return "throttle";
  if (summary.HasError) return "error";
  return "ok";
}

const STATE_TEXT = { ok: "OK", error: "Error", throttle: "Throttled", fault: "Fault" };

function services(summary) {
  const names = [];
  for (const s of summary.ServiceIds || []) {
    if (s && s.Name && !names.includes(s.Name)) names.push(s.Name);
  }
  return names;
}

/** Rows for `summaries` (sorted newest first here); `open(id)` is called when a row is chosen. */
export function renderList(body, summaries, open) {
  const sorted = [...summaries].sort((a, b) => (b.StartTime || 0) - (a.StartTime || 0));
  body.replaceChildren(
    ...sorted.map((summary) => {
      const http = summary.Http || {};
      const st = state(summary);
      const id = String(summary.Id || "");
      const link = el("a", { href: traceHref(id), class: "trace-id", "data-key": `trace:${id}` }, id);
      const names = services(summary);
      const row = el(
        "tr",
        { class: `trace ${st}` },
        el("td", { title: iso(summary.StartTime) }, clock(summary.StartTime)),
        el("td", {}, link),
        el("td", {}, http.HttpMethod || ""),
        el("td", { class: "url", title: http.HttpURL || "" }, shorten(http.HttpURL || "", 80)),
        el(
          "td",
          {},
          el("span", { class: `badge ${st}` }, http.HttpStatus ? String(http.HttpStatus) : STATE_TEXT[st]),
          summary.IsPartial ? el("span", { class: "badge partial", title: "partial: not every segment arrived" }, "partial") : null,
        ),
        el("td", { class: "number" }, ms(summary.ResponseTime ?? summary.Duration)),
        el("td", { class: "services", title: names.join(", ") }, shorten(names.join(", "), 60)),
      );
      row.addEventListener("click", (event) => {
        if (event.target.closest("a") || window.getSelection().toString()) return;
        open(id);
      });
      return row;
    }),
  );
  return sorted.length;
}
