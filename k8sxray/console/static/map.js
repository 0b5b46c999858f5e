// The service map: GetServiceGraph's services and edges drawn as SVG, laid out in layers from
// left to right (clients, then each service one step right of its furthest caller).

import { el, ms, shorten, svg } from "./dom.js";

const RADIUS = 30;
const COLUMN = 240;
const ROW = 118;
const MARGIN_X = 80;
const MARGIN_Y = 40;
const STATES = ["ok", "error", "throttle", "fault"];
const STATE_LABEL = { ok: "OK", error: "Errors (4xx)", throttle: "Throttled (429)", fault: "Faults (5xx)" };

export const isClient = (service) => service.Type === "client";

/** A stable key for a service: its name and type. */
export function nodeKey(service) {
  return JSON.stringify([service.Name || "", service.Type || ""]);
}

/** Counts by state, total and average response time (seconds) from X-Ray's statistics. */
export function stats(summary) {
  const s = summary || {};
  const err = s.ErrorStatistics || {};
  const fault = s.FaultStatistics || {};
  const counts = {
    ok: s.OkCount || 0,
    error: err.OtherCount || 0,
    throttle: err.ThrottleCount || 0,
    fault: fault.TotalCount || 0,
  };
  const total = s.TotalCount || counts.ok + counts.error + counts.throttle + counts.fault;
  const average = total ? (s.TotalResponseTime || 0) / total : null;
  return { counts, total, average };
}

export function perMinute(total, rangeSeconds) {
  const rate = total / Math.max(rangeSeconds / 60, 1e-9);
  return rate >= 10 ? rate.toFixed(0) : rate.toFixed(1);
}

/** The worst state with any count, for colouring an edge or a row. */
export function worst(counts) {
  for (const state of ["fault", "throttle", "error"]) if (counts[state] > 0) return state;
  return "ok";
}

function label(service) {
  return isClient(service) ? "Clients" : service.Name || "(unnamed)";
}

/** The graph as nodes, edges and a position per node. */
export function layout(services) {
  const byRef = new Map(services.map((s) => [s.ReferenceId, s]));
  const edges = [];
  for (const source of services) {
    for (const edge of source.Edges || []) {
      const target = byRef.get(edge.ReferenceId);
      if (target) edges.push({ source, target, edge });
    }
  }
  const layer = new Map(services.map((s) => [s, 0]));
  for (let round = 0; round < services.length; round += 1) {
    let changed = false;
    for (const { source, target } of edges) {
      if (source === target) continue;
      const wanted = Math.min(layer.get(source) + 1, services.length);
      if (wanted > layer.get(target)) {
        layer.set(target, wanted);
        changed = true;
      }
    }
    if (!changed) break;
  }
  if (services.some(isClient)) {
    for (const s of services) if (!isClient(s) && layer.get(s) === 0) layer.set(s, 1);
  }
  const columns = [];
  for (const s of services) {
    const index = layer.get(s);
    (columns[index] ||= []).push(s);
  }
  const packed = columns.filter(Boolean);
  const traffic = (s) => (s.Edges || []).reduce((sum, e) => sum + stats(e.SummaryStatistics).total, 0) + stats(s.SummaryStatistics).total;
  const rows = Math.max(1, ...packed.map((c) => c.length));
  const position = new Map();
  packed.forEach((column, x) => {
    const order = (s) => {
      const callers = edges.filter((e) => e.target === s && position.has(e.source));
      const mean = callers.reduce((sum, e) => sum + position.get(e.source).y, 0) / (callers.length || 1);
      return callers.length ? mean : 0;
    };
    column.sort((a, b) => order(a) - order(b) || traffic(b) - traffic(a) || label(a).localeCompare(label(b)));
    const top = MARGIN_Y + ((rows - column.length) * ROW) / 2;
    column.forEach((s, y) => position.set(s, { x: MARGIN_X + x * COLUMN, y: top + y * ROW + ROW / 2 }));
  });
  const width = MARGIN_X * 2 + (packed.length - 1) * COLUMN;
  const height = MARGIN_Y * 2 + rows * ROW;
  return { edges, position, width, height };
}

function ring(counts, total) {
  const parts = [];
  const circumference = 2 * Math.PI * RADIUS;
  if (!total) {
    parts.push(svg("circle", { r: RADIUS, class: "ring none" }));
    return parts;
  }
  let offset = 0;
  for (const state of STATES) {
    const share = counts[state] / total;
    if (share <= 0) continue;
    const length = share * circumference;
    parts.push(
      svg("circle", {
        r: RADIUS,
        class: `ring ${state}`,
        "stroke-dasharray": `${length} ${circumference - length}`,
        "stroke-dashoffset": String(-offset),
        transform: "rotate(-90)",
      }),
    );
    offset += length;
  }
  return parts;
}

function describe(name, st, rangeSeconds) {
  if (!st.total) return `${name}: no requests`;
  const shares = STATES.filter((s) => st.counts[s])
    .map((s) => `${Math.round((100 * st.counts[s]) / st.total)}% ${STATE_LABEL[s].toLowerCase()}`)
    .join(", ");
  return `${name}: ${ms(st.average)} average, ${perMinute(st.total, rangeSeconds)} calls per minute, ${shares}`;
}

function activate(handler) {
  return (event) => {
    if (event.type === "click" || event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      handler();
    }
  };
}

function drawEdge({ source, target, edge }, position, rangeSeconds, selected, onSelect) {
  const a = position.get(source);
  const b = position.get(target);
  const dx = b.x - a.x;
  const dy = b.y - a.y;
  const length = Math.hypot(dx, dy) || 1;
  const [ux, uy] = [dx / length, dy / length];
  const start = [a.x + ux * (RADIUS + 4), a.y + uy * (RADIUS + 4)];
  const end = [b.x - ux * (RADIUS + 10), b.y - uy * (RADIUS + 10)];
  const d = `M${start[0]},${start[1]} L${end[0]},${end[1]}`;
  const st = stats(edge.SummaryStatistics);
  const key = JSON.stringify([JSON.parse(nodeKey(source)), JSON.parse(nodeKey(target))]);
  const name = `${label(source)} → ${label(target)}`;
  const text = st.total ? `${ms(st.average)} · ${perMinute(st.total, rangeSeconds)}/min` : "";
  const mid = [(start[0] + end[0]) / 2, (start[1] + end[1]) / 2 - 8];
  const pick = () => onSelect({ kind: "edge", key, source, target, edge });
  return svg(
    "g",
    {
      class: `edge ${worst(st.counts)}${selected === key ? " selected" : ""}`,
      "data-key": `edge:${key}`,
      tabindex: "0",
      role: "button",
      "aria-pressed": selected === key ? "true" : "false",
      "aria-label": describe(`Edge ${name}`, st, rangeSeconds),
      onclick: activate(pick),
      onkeydown: activate(pick),
    },
    svg("title", {}, describe(name, st, rangeSeconds)),
    svg("path", { d, class: "hit" }),
    svg("path", { d, class: "line", "marker-end": "url(#arrow)" }),
    text ? svg("text", { x: mid[0], y: mid[1], class: "edge-label", "text-anchor": "middle" }, text) : null,
  );
}

function drawNode(service, position, rangeSeconds, selected, onSelect) {
  const { x, y } = position.get(service);
  const key = nodeKey(service);
  const client = isClient(service);
  const st = stats(service.SummaryStatistics);
  const name = label(service);
  const pick = () => onSelect({ kind: "node", key, service });
  const inner = client
    ? [svg("text", { class: "node-figure", y: 5, "text-anchor": "middle" }, "client")]
    : [
        svg("text", { class: "node-figure", y: -2, "text-anchor": "middle" }, st.total ? ms(st.average) : "–"),
        svg(
          "text",
          { class: "node-rate", y: 13, "text-anchor": "middle" },
          st.total ? `${perMinute(st.total, rangeSeconds)} t/min` : "",
        ),
      ];
  return svg(
    "g",
    {
      class: `node${client ? " client" : ""}${selected === key ? " selected" : ""}`,
      "data-key": `node:${key}`,
      transform: `translate(${x},${y})`,
      tabindex: "0",
      role: "button",
      "aria-pressed": selected === key ? "true" : "false",
      "aria-label": client ? "Clients" : describe(`Service ${name} (${service.Type || "no type"})`, st, rangeSeconds),
      onclick: activate(pick),
      onkeydown: activate(pick),
    },
    svg("title", {}, client ? "Clients" : `${name}\n${service.Type || ""}`),
    svg("circle", { r: RADIUS + 7, class: "halo" }),
    svg("circle", { r: RADIUS - 4, class: "disc" }),
    client ? svg("circle", { r: RADIUS, class: "ring none" }) : ring(st.counts, st.total),
    inner,
    svg("text", { class: "node-name", y: RADIUS + 20, "text-anchor": "middle" }, shorten(name, 26)),
    service.Type && !client
      ? svg("text", { class: "node-type", y: RADIUS + 34, "text-anchor": "middle" }, shorten(service.Type, 30))
      : null,
  );
}

/** Draw the map of `services` into `host`; `onSelect` gets the clicked node or edge. */
export function renderMap(host, services, { rangeSeconds, selected, onSelect }) {
  if (!services.length) {
    host.replaceChildren(
      el(
        "p",
        { class: "empty" },
        "No traces in this time range yet. Send segments to the daemon's UDP port and they appear here.",
      ),
    );
    return;
  }
  const { edges, position, width, height } = layout(services);
  const drawing = svg(
    "svg",
    {
      class: "map",
      viewBox: `0 0 ${width} ${height}`,
      width,
      height,
      role: "group",
      "aria-label": "Service map",
    },
    svg(
      "defs",
      {},
      svg(
        "marker",
        { id: "arrow", viewBox: "0 0 10 10", refX: "1", refY: "5", markerWidth: "7", markerHeight: "7", orient: "auto" },
        svg("path", { d: "M0,0 L10,5 L0,10 z", class: "arrowhead" }),
      ),
    ),
    edges.map((e) => drawEdge(e, position, rangeSeconds, selected, onSelect)),
    services.map((s) => drawNode(s, position, rangeSeconds, selected, onSelect)),
  );
  host.replaceChildren(drawing);
}

/** Response times as bars: [{from, to, count}] in seconds, one per entry when there are few
 * (X-Ray's histograms are already bucketed), else binned linearly into `bins`. */
export function bin(histogram, bins = 24) {
  const entries = (histogram || [])
    .filter((h) => typeof h.Value === "number" && h.Count > 0)
    .sort((a, b) => a.Value - b.Value);
  if (entries.length <= bins) return entries.map((h) => ({ from: h.Value, to: h.Value, count: h.Count }));
  const lo = entries[0].Value;
  const hi = entries[entries.length - 1].Value;
  const width = (hi - lo) / bins;
  const bars = Array.from({ length: bins }, (_, i) => ({ from: lo + i * width, to: lo + (i + 1) * width, count: 0 }));
  for (const h of entries) bars[Math.min(bins - 1, Math.floor((h.Value - lo) / width))].count += h.Count;
  return bars;
}

const range = (b) => (b.from === b.to ? ms(b.from) : `${ms(b.from)} – ${ms(b.to)}`);

/** The response-time histogram as SVG bars. */
export function histogram(entries, title) {
  const bars = bin(entries);
  if (!bars.length) return el("p", { class: "muted" }, "No response times recorded.");
  const [w, h, left, bottom, top] = [340, 150, 34, 26, 10];
  const most = Math.max(...bars.map((b) => b.count));
  const step = (w - left - 6) / Math.max(bars.length, 6);
  const plot = h - bottom - top;
  const last = bars[bars.length - 1];
  return svg(
    "svg",
    { class: "histogram", viewBox: `0 0 ${w} ${h}`, width: w, height: h, role: "img", "aria-label": title },
    svg("title", {}, title),
    bars.map((b, i) => {
      const height = Math.max(1, (b.count / most) * plot);
      return svg(
        "rect",
        { x: left + i * step + 1, y: top + plot - height, width: Math.max(1, step - 2), height, class: "bar" },
        svg("title", {}, `${range(b)}: ${b.count}`),
      );
    }),
    svg("line", { x1: left, y1: top + plot, x2: w - 4, y2: top + plot, class: "axis" }),
    svg("text", { x: left, y: h - 8, class: "tick" }, ms(bars[0].from)),
    bars.length > 1
      ? svg("text", { x: left + bars.length * step - 1, y: h - 8, class: "tick", "text-anchor": "end" }, ms(last.to))
      : null,
    svg("text", { x: left - 4, y: top + 8, class: "tick", "text-anchor": "end" }, String(most)),
    svg("text", { x: left - 4, y: top + plot, class: "tick", "text-anchor": "end" }, "0"),
  );
}

/** The panel describing the selected node or edge: its statistics and histogram. */
export function selectionPanel(selection, rangeSeconds) {
  const summary = selection.kind === "node" ? selection.service.SummaryStatistics : selection.edge.SummaryStatistics;
  const histogramEntries =
    selection.kind === "node" ? selection.service.ResponseTimeHistogram : selection.edge.ResponseTimeHistogram;
  const title =
    selection.kind === "node"
      ? label(selection.service)
      : `${label(selection.source)} → ${label(selection.target)}`;
  const st = stats(summary);
  const rows = el("dl", { class: "pairs" });
  const add = (term, value, state) =>
    rows.append(el("dt", {}, term), el("dd", state ? { class: `count ${state}` } : {}, value));
  if (selection.kind === "node" && selection.service.Type) add("Type", selection.service.Type);
  add("Requests", String(st.total));
  add("Average response", st.total ? ms(st.average) : "–");
  add("Calls per minute", perMinute(st.total, rangeSeconds));
  for (const state of STATES) {
    const share = st.total ? ` (${Math.round((100 * st.counts[state]) / st.total)}%)` : "";
    add(STATE_LABEL[state], `${st.counts[state]}${share}`, state);
  }
  return [
    el("h2", { class: "selection-title" }, title),
    rows,
    el("h3", {}, "Response time distribution"),
    histogram(histogramEntries, `Response time histogram of ${title}`),
  ];
}

/** The legend of the map's colours. */
export function legend() {
  return el(
    "ul",
    { class: "legend", "aria-label": "Colours" },
    STATES.map((state) => el("li", {}, el("span", { class: `swatch ${state}` }), STATE_LABEL[state])),
  );
}
