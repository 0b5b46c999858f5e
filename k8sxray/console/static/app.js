// The viewer's entry point: the router (state lives in the URL), polling, and wiring of the
// page's fixed controls. Views are drawn by map.js, traces.js and timeline.js.

import { ApiError, call, lastSeconds } from "./api.js";
import { clock, el } from "./dom.js";
import { isClient, legend, nodeKey, renderMap, selectionPanel } from "./map.js";
import { renderList, traceHref } from "./traces.js";
import { details, rawDocuments, rows, traceSummary, waterfall } from "./timeline.js";

const RANGES = { "5m": 300, "15m": 900, "1h": 3600, "6h": 21600, "24h": 86400 };
const DEFAULT_RANGE = "15m";
const POLL_MS = 2000;
const LIST_PAGES = 5;
const LIST_LIMIT = 100;

const $ = (id) => document.getElementById(id);

// ---- state in the URL -------------------------------------------------------------------------

function readState() {
  const url = new URL(window.location.href);
  const match = url.pathname.match(/^\/traces\/([^/]+)\/?$/);
  const range = url.searchParams.get("range");
  return {
    view: match ? "trace" : "home",
    traceId: match ? decodeURIComponent(match[1]) : "",
    range: range in RANGES ? range : DEFAULT_RANGE,
    filter: url.searchParams.get("filter") || "",
    select: url.searchParams.get("select") || "",
    entity: url.searchParams.get("entity") || "",
  };
}

function urlOf(s) {
  const params = new URLSearchParams();
  if (s.range !== DEFAULT_RANGE) params.set("range", s.range);
  if (s.view === "trace") {
    if (s.entity) params.set("entity", s.entity);
  } else {
    if (s.filter) params.set("filter", s.filter);
    if (s.select) params.set("select", s.select);
  }
  const query = params.toString();
  const path = s.view === "trace" ? traceHref(s.traceId) : "/";
  return query ? `${path}?${query}` : path;
}

let state = readState();

function navigate(changes, { replace = false } = {}) {
  const next = { ...state, ...changes };
  const url = urlOf(next);
  if (replace) window.history.replaceState(null, "", url);
  else window.history.pushState(null, "", url);
  show();
}

// ---- polling ----------------------------------------------------------------------------------

let timer = null;
let inflight = null;
let paused = false;

async function refresh() {
  clearTimeout(timer);
  timer = null;
  if (inflight) inflight.abort();
  if (paused || document.hidden) {
    inflight = null;
    setStatus(paused ? "Updates paused" : "Updates paused while the tab is hidden");
    return;
  }
  const controller = new AbortController();
  inflight = controller;
  try {
    if (state.view === "trace") await refreshTrace(controller.signal);
    else await refreshHome(controller.signal);
    banner("");
    setStatus(`Live · updated ${clock(Date.now() / 1000)}`);
  } catch (exc) {
    if (exc && exc.name === "AbortError") return;
    problem(exc);
  } finally {
    if (inflight === controller) {
      inflight = null;
      timer = setTimeout(refresh, POLL_MS);
    }
  }
}

function setStatus(text) {
  $("status").textContent = text;
}

function banner(text) {
  const node = $("banner");
  node.textContent = text;
  node.hidden = !text;
}

function problem(exc) {
  if (exc instanceof ApiError && exc.status === 0) {
    banner(`The console's API at ${window.location.origin} is unreachable: is the daemon running? Retrying every ${POLL_MS / 1000} s.`);
    setStatus("Offline");
  } else if (exc instanceof ApiError && exc.status === 401) {
    banner("This console needs its token: open the address the daemon logged when it started (it ends in ?token=…).");
    setStatus("Not signed in");
  } else if (exc instanceof ApiError) {
    banner(`The API answered ${exc.status}: ${exc.message}`);
    setStatus("Error");
  } else {
    banner(`The viewer failed: ${exc && exc.message ? exc.message : String(exc)}`);
    setStatus("Error");
    console.error(exc);
  }
}

/** Redraw `host` with `draw()`, keeping the keyboard focus on the same item if it is redrawn. */
function keepingFocus(draw) {
  const active = document.activeElement;
  const key = active && active.getAttribute ? active.getAttribute("data-key") : null;
  draw();
  if (key) {
    const again = document.querySelector(`[data-key="${CSS.escape(key)}"]`);
    if (again && again !== active) again.focus({ preventScroll: true });
  }
}

// ---- home: the service map and the trace list ---------------------------------------------------

function quote(text) {
  return `"${String(text).replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`;
}

function filterFor(selection) {
  if (selection.kind === "node") return isClient(selection.service) ? "" : `service(${quote(selection.service.Name)})`;
  if (isClient(selection.source)) return `service(${quote(selection.target.Name)})`;
  return `edge(${quote(selection.source.Name)}, ${quote(selection.target.Name)})`;
}

function select(selection) {
  if (selection.key === state.select) {
    navigate({ select: "", filter: state.filter === filterFor(selection) ? "" : state.filter });
  } else {
    navigate({ select: selection.key, filter: filterFor(selection) });
  }
}

function findSelection(services) {
  if (!state.select) return null;
  for (const service of services) {
    if (nodeKey(service) === state.select) return { kind: "node", key: state.select, service };
    for (const edge of service.Edges || []) {
      const target = services.find((s) => s.ReferenceId === edge.ReferenceId);
      if (!target) continue;
      const key = JSON.stringify([JSON.parse(nodeKey(service)), JSON.parse(nodeKey(target))]);
      if (key === state.select) return { kind: "edge", key, source: service, target, edge };
    }
  }
  return null;
}

async function traceSummaries(range, signal) {
  const found = [];
  let scanned = 0;
  let token;
  for (let page = 0; page < LIST_PAGES && found.length < LIST_LIMIT; page += 1) {
    const body = { ...range, Sampling: false };
    if (state.filter) body.FilterExpression = state.filter;
    if (token) body.NextToken = token;
    const answer = await call("/TraceSummaries", body, signal);
    found.push(...(answer.TraceSummaries || []));
    scanned += answer.TracesProcessedCount || 0;
    token = answer.NextToken;
    if (!token) break;
  }
  return { found: found.slice(0, LIST_LIMIT), scanned, more: Boolean(token) || found.length > LIST_LIMIT };
}

async function refreshHome(signal) {
  const seconds = RANGES[state.range];
  const range = lastSeconds(seconds);
  const [graph, list] = await Promise.all([
    call("/ServiceGraph", range, signal),
    traceSummaries(range, signal).catch((exc) => exc),
  ]);
  const services = graph.Services || [];
  const selection = findSelection(services);
  keepingFocus(() => {
    renderMap($("map"), services, { rangeSeconds: seconds, selected: selection ? selection.key : "", onSelect: select });
    drawSelection(selection, seconds);
  });
  if (list instanceof ApiError && list.status === 400) {
    $("filter-error").textContent = list.message;
    $("filter-error").hidden = false;
    $("trace-rows").replaceChildren();
    $("list-info").textContent = "";
    return;
  }
  if (list instanceof Error) throw list;
  $("filter-error").hidden = true;
  $("filter-error").textContent = "";
  let count = 0;
  keepingFocus(() => {
    count = renderList($("trace-rows"), list.found, (id) => navigate({ view: "trace", traceId: id, entity: "" }));
  });
  const what = state.filter ? "matching traces" : "traces";
  $("list-info").textContent = count
    ? `${count} ${what}${list.more ? " (the newest; narrow the filter or the time range for older ones)" : ""}.`
    : `No ${what} in this time range.`;
}

function drawSelection(selection, seconds) {
  const aside = $("selection");
  if (!selection) {
    aside.replaceChildren(
      el("h2", { class: "selection-title" }, state.select ? "Selection not in this time range" : "Select a service or an edge"),
      el("p", { class: "muted" }, "Click a node or an edge of the map (or focus it and press Enter) to see its response times and list its traces."),
    );
    if (state.select) aside.append(clearButton());
    return;
  }
  aside.replaceChildren(...selectionPanel(selection, seconds), clearButton());
}

function clearButton() {
  return el("button", { type: "button", class: "clear-selection", "data-key": "clear-selection", onclick: () => navigate({ select: "", filter: "" }) }, "Clear selection");
}

// ---- one trace --------------------------------------------------------------------------------

let shownTrace = { id: "", documents: "", entity: null };

async function refreshTrace(signal) {
  const id = state.traceId;
  const answer = await call("/Traces", { TraceIds: [id] }, signal);
  const trace = (answer.Traces || []).find((t) => t.Id === id);
  if (!trace) {
    shownTrace = { id, documents: "", entity: null };
    $("timeline").replaceChildren(el("p", { class: "empty" }, "This trace is not in the console (yet): its segments may still be on their way, or retention removed it. Still looking…"));
    $("details").replaceChildren();
    $("trace-summary").replaceChildren();
    $("raw").replaceChildren();
    return;
  }
  const documents = JSON.stringify(trace.Segments || []);
  if (shownTrace.id === id && shownTrace.documents === documents && shownTrace.entity === state.entity) return;
  shownTrace = { id, documents, entity: state.entity };
  drawTrace(trace);
}

function drawTrace(trace) {
  const entries = rows(trace);
  let chosen = entries.find((e) => e.doc.id === state.entity) || entries[0] || null;
  const chosenId = chosen ? String(chosen.doc.id ?? "") : "";
  keepingFocus(() => {
    const { nodes } = waterfall(entries, chosenId, (entityId) => {
      navigate({ entity: entityId }, { replace: true });
    });
    $("timeline").replaceChildren(...nodes);
    $("details").replaceChildren(...(chosen ? details(chosen).filter(Boolean) : []));
    $("trace-summary").replaceChildren(traceSummary(trace, entries) || "");
    $("raw").replaceChildren(rawDocuments(trace));
  });
}

// ---- the page ---------------------------------------------------------------------------------

function show() {
  const previous = state;
  state = readState();
  const home = state.view === "home";
  $("home").hidden = !home;
  $("trace").hidden = home;
  $("range").value = state.range;
  $("back").setAttribute("href", urlOf({ ...state, view: "home", filter: "", select: "" }));
  if (home) {
    document.title = "k8sxray console";
    $("filter").value = state.filter;
  } else {
    document.title = `Trace ${state.traceId} · k8sxray console`;
    $("trace-id").textContent = state.traceId;
    if (previous.traceId !== state.traceId || previous.view !== "trace") {
      shownTrace = { id: "", documents: "", entity: null };
      for (const id of ["timeline", "details", "trace-summary", "raw"]) $(id).replaceChildren();
      $("timeline").append(el("p", { class: "muted" }, "Loading…"));
    }
  }
  if (!home && shownTrace.id === state.traceId && shownTrace.documents) {
    // a choice of entity: redraw from what is already here, then keep polling
    shownTrace.entity = state.entity;
    const trace = { Segments: JSON.parse(shownTrace.documents) };
    drawTrace(trace);
  }
  refresh();
}

function start() {
  const url = new URL(window.location.href);
  if (url.searchParams.has("token")) {
    // the daemon has set its cookie from this load; keep the token out of history and screenshots
    url.searchParams.delete("token");
    window.history.replaceState(null, "", url.pathname + url.search);
  }
  $("legend").replaceChildren(legend());
  $("range").addEventListener("change", (event) => navigate({ range: event.target.value }));
  $("filter-form").addEventListener("submit", (event) => {
    event.preventDefault();
    navigate({ filter: $("filter").value.trim(), select: "" });
  });
  $("filter-clear").addEventListener("click", () => navigate({ filter: "", select: "" }));
  $("pause").addEventListener("click", () => {
    paused = !paused;
    $("pause").setAttribute("aria-pressed", String(paused));
    $("pause").textContent = paused ? "Resume updates" : "Pause updates";
    refresh();
  });
  document.addEventListener("visibilitychange", refresh);
  window.addEventListener("popstate", show);
  document.addEventListener("click", (event) => {
    const link = event.target.closest("a[href]");
    if (!link || event.defaultPrevented || event.button !== 0) return;
    if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey || link.target) return;
    const target = new URL(link.href, window.location.href);
    if (target.origin !== window.location.origin || target.pathname.startsWith("/static/")) return;
    event.preventDefault();
    window.history.pushState(null, "", target.pathname + target.search);
    show();
  });
  show();
}

start();
