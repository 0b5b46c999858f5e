// One trace: its segments and their nested subsegments as a waterfall on one time axis, and
// the details of the chosen entity (HTTP, annotations, metadata, exceptions, SQL, AWS, resources).

import { clock, el, iso, ms, pairs } from "./dom.js";

const RESOURCE_KEYS = ["eks", "ec2", "ecs", "elastic_beanstalk", "xray"];

const num = (v) => (typeof v === "number" && Number.isFinite(v) ? v : null);
const obj = (v) => (v && typeof v === "object" && !Array.isArray(v) ? v : null);

/** A value as text: strings as they are, anything else as JSON. */
function text(value) {
  if (typeof value === "string") return value;
  if (value === undefined) return "";
  try {
    return JSON.stringify(value);
  } catch {
    return String(value);
  }
}

function pretty(value) {
  try {
    return JSON.stringify(value, null, 2);
  } catch {
    return String(value);
  }
}

/** ok, error, throttle or fault, from the entity's flags and its HTTP status. */
export function entityState(doc) {
  const status = num(obj(obj(doc.http)?.response)?.status);
  if (doc.fault === true || (status !== null && status >= 500)) return "fault";
  if (doc.throttle === true || status === 429) return "throttle";
  if (doc.error === true || (status !== null && status >= 400)) return "error";
  return "ok";
}

/** Parse BatchGetTraces' trace into the waterfall's rows (depth-first, children by start time). */
export function rows(trace) {
  const documents = [];
  for (const segment of trace.Segments || []) {
    try {
      const doc = JSON.parse(segment.Document);
      if (obj(doc)) documents.push(doc);
    } catch {
      // a document that is not JSON has nothing to draw
    }
  }
  const byId = new Map();
  const visit = (doc, segment, isSegment) => {
    const node = { doc, segment, isSegment, children: [] };
    if (typeof doc.id === "string" && !byId.has(doc.id)) byId.set(doc.id, node);
    for (const sub of Array.isArray(doc.subsegments) ? doc.subsegments : []) {
      if (obj(sub)) node.children.push(visit(sub, segment, false));
    }
    return node;
  };
  const tops = documents.map((doc) => visit(doc, doc, true));
  const roots = [];
  for (const top of tops) {
    const parent = typeof top.doc.parent_id === "string" ? byId.get(top.doc.parent_id) : undefined;
    if (parent && parent !== top) parent.children.push(top);
    else roots.push(top);
  }
  const start = (n) => num(n.doc.start_time) ?? Infinity;
  const out = [];
  const seen = new Set();
  const walk = (node, depth) => {
    if (seen.has(node)) return;
    seen.add(node);
    out.push({ ...node, depth });
    [...node.children].sort((a, b) => start(a) - start(b)).forEach((child) => walk(child, depth + 1));
  };
  roots.sort((a, b) => start(a) - start(b)).forEach((root) => walk(root, 0));
  tops.filter((t) => !seen.has(t)).forEach((t) => walk(t, 0)); // parents forming a loop
  return out;
}

function span(entries) {
  const starts = entries.map((e) => num(e.doc.start_time)).filter((v) => v !== null);
  const ends = entries.flatMap((e) => [num(e.doc.end_time), num(e.doc.start_time)]).filter((v) => v !== null);
  const t0 = starts.length ? Math.min(...starts) : 0;
  const t1 = ends.length ? Math.max(...ends) : t0;
  return { t0, t1, total: Math.max(t1 - t0, 1e-6) };
}

/** The waterfall: an axis and one button per entity; `choose(id)` on a click. */
export function waterfall(entries, selectedId, choose) {
  const { t0, t1, total } = span(entries);
  const axis = el("div", { class: "axis-row", "aria-hidden": "true" }, el("span", { class: "name" }, "Name"));
  const ticks = el("span", { class: "track ticks" });
  for (const f of [0, 0.25, 0.5, 0.75, 1]) {
    const tick = el("span", { class: "tick" }, ms(f * total));
    tick.style.left = `${f * 100}%`;
    ticks.append(tick);
  }
  axis.append(ticks, el("span", { class: "duration" }, "Duration"));
  const list = el("ol", { class: "waterfall", "aria-label": "Segments and subsegments" });
  for (const entry of entries) {
    const { doc } = entry;
    const start = num(doc.start_time) ?? t0;
    const inProgress = doc.in_progress === true || num(doc.end_time) === null;
    const end = inProgress ? t1 : num(doc.end_time);
    const st = entityState(doc);
    const id = typeof doc.id === "string" ? doc.id : "";
    const bar = el("span", { class: `bar ${st}${inProgress ? " in-progress" : ""}` });
    bar.style.left = `${((start - t0) / total) * 100}%`;
    bar.style.width = `${Math.max(((end - start) / total) * 100, 0.4)}%`;
    const name = el(
      "span",
      { class: "name" },
      entry.isSegment ? el("span", { class: "kind", title: "segment" }, "◆") : null,
      text(doc.name ?? "(unnamed)"),
    );
    name.style.paddingLeft = `${0.4 + entry.depth * 1.1}em`;
    const status = num(obj(obj(doc.http)?.response)?.status);
    const label = [
      inProgress ? "in progress" : ms(end - start),
      status !== null ? String(status) : "",
      st !== "ok" ? st : "",
    ].filter(Boolean).join(" · ");
    const button = el(
      "button",
      {
        type: "button",
        class: `entity-row ${st}${entry.isSegment ? " segment" : ""}${id === selectedId ? " selected" : ""}`,
        "aria-pressed": id === selectedId ? "true" : "false",
        "data-key": `entity:${id}`,
        "data-id": id,
        title: `${text(doc.name)} — ${label}`,
      },
      name,
      el("span", { class: "track" }, bar),
      el("span", { class: `duration ${st}` }, label),
    );
    button.addEventListener("click", () => choose(id));
    list.append(el("li", {}, button));
  }
  return { nodes: [axis, list], t0, t1 };
}

function section(title, ...content) {
  const body = content.flat().filter(Boolean);
  return body.length ? el("section", { class: "detail" }, el("h3", {}, title), ...body) : null;
}

function flatPairs(object, prefix = "") {
  const out = [];
  for (const [key, value] of Object.entries(obj(object) || {})) {
    if (obj(value)) out.push(...flatPairs(value, `${prefix}${key}.`));
    else out.push([`${prefix}${key}`, text(value)]);
  }
  return out;
}

function exceptions(cause) {
  if (typeof cause === "string") return [el("p", {}, "Exception ", el("code", {}, cause), " (recorded in a subsegment)")];
  const c = obj(cause);
  if (!c) return [];
  const out = [];
  if (c.working_directory) out.push(pairs([["Working directory", text(c.working_directory)]]));
  for (const exc of Array.isArray(c.exceptions) ? c.exceptions : []) {
    const e = obj(exc);
    if (!e) continue;
    const frames = (Array.isArray(e.stack) ? e.stack : []).map((frame) => {
      const f = obj(frame) || {};
      const where = `${text(f.path ?? "?")}${f.line !== undefined ? `:${text(f.line)}` : ""}`;
      return el("li", {}, el("code", { class: "frame-path" }, where), " ", el("span", { class: "frame-label" }, text(f.label ?? "")));
    });
    out.push(
      el(
        "div",
        { class: "exception" },
        el("p", { class: "exception-title" }, el("strong", {}, text(e.type ?? "Exception")), e.message !== undefined ? `: ${text(e.message)}` : ""),
        pairs([
          ["Id", text(e.id ?? "")],
          ["Remote", e.remote === true ? "yes" : ""],
          ["Cause", e.cause !== undefined ? text(e.cause) : ""],
          ["Frames skipped", e.skipped !== undefined ? text(e.skipped) : ""],
          ["Truncated", e.truncated !== undefined ? text(e.truncated) : ""],
        ]),
        frames.length ? el("ol", { class: "stack" }, frames) : null,
      ),
    );
  }
  return out;
}

function resources(segment) {
  const aws = obj(segment.aws) || {};
  const k8s = obj(obj(segment.metadata)?.k8s);
  const blocks = [
    pairs([["Origin", text(segment.origin ?? "")], ["Segment", text(segment.name ?? "")]]),
  ];
  const titles = { eks: "aws.eks", ec2: "aws.ec2", ecs: "aws.ecs", elastic_beanstalk: "aws.elastic_beanstalk", xray: "aws.xray" };
  for (const key of RESOURCE_KEYS) {
    if (obj(aws[key])) blocks.push(el("h4", {}, titles[key]), pairs(flatPairs(aws[key])));
  }
  if (k8s) blocks.push(el("h4", {}, "k8s"), pairs(flatPairs(k8s)));
  return blocks;
}

/** The details panel for one entry of rows(). */
export function details(entry) {
  const { doc, segment } = entry;
  const http = obj(doc.http) || {};
  const start = num(doc.start_time);
  const end = num(doc.end_time);
  const flags = ["error", "throttle", "fault"].filter((f) => doc[f] === true).join(", ");
  const overview = pairs([
    ["Name", text(doc.name ?? "")],
    ["Id", text(doc.id ?? "")],
    ["Kind", entry.isSegment ? "segment" : "subsegment"],
    ["Namespace", text(doc.namespace ?? "")],
    ["Origin", entry.isSegment ? text(doc.origin ?? "") : ""],
    ["Trace", entry.isSegment ? text(doc.trace_id ?? "") : ""],
    ["Parent", text(doc.parent_id ?? "")],
    ["Start", start !== null ? clock(start, true) : ""],
    ["End", end !== null ? clock(end, true) : ""],
    ["Duration", start !== null && end !== null ? ms(end - start) : ""],
    ["In progress", doc.in_progress === true ? "yes" : ""],
    ["Flags", flags],
    ["User", text(doc.user ?? "")],
  ]);
  const request = obj(http.request);
  const response = obj(http.response);
  const annotations = obj(doc.annotations);
  const metadata = obj(doc.metadata);
  const aws = obj(doc.aws);
  const awsFields = aws ? Object.fromEntries(Object.entries(aws).filter(([k]) => !RESOURCE_KEYS.includes(k))) : null;
  return [
    el("h2", { class: "details-title" }, text(doc.name ?? "(unnamed)")),
    section("Overview", overview),
    section(
      "HTTP",
      request ? [el("h4", {}, "Request"), pairs(flatPairs(request))] : null,
      response ? [el("h4", {}, "Response"), pairs(flatPairs(response))] : null,
    ),
    section("Annotations", annotations ? pairs(Object.entries(annotations).map(([k, v]) => [k, text(v)])) : null),
    section(
      "Metadata",
      metadata
        ? Object.entries(metadata).map(([namespace, value]) => [
            el("h4", {}, namespace),
            el("pre", { class: "json" }, pretty(value)),
          ])
        : null,
    ),
    section("Exceptions", doc.cause !== undefined ? exceptions(doc.cause) : null),
    section("SQL", obj(doc.sql) ? pairs(flatPairs(doc.sql)) : null),
    section("AWS", awsFields && Object.keys(awsFields).length ? pairs(flatPairs(awsFields)) : null),
    section("Service", obj(doc.service) ? pairs(flatPairs(doc.service)) : null),
    section("Resources", resources(segment)),
  ];
}

const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

/** A line about the whole trace: start, duration, segment count, state. */
export function traceSummary(trace, entries) {
  const { t0, t1 } = span(entries);
  const segments = entries.filter((e) => e.isSegment).length;
  const states = entries.map((e) => entityState(e.doc));
  const worst = ["fault", "throttle", "error"].find((s) => states.includes(s)) || "ok";
  const inProgress = entries.some((e) => e.doc.in_progress === true);
  return pairs([
    ["Started", entries.length ? iso(t0) : ""],
    ["Duration", ms(num(trace.Duration) ?? t1 - t0)],
    ["Entities", `${plural(segments, "segment")}, ${plural(entries.length - segments, "subsegment")}`],
    ["State", `${worst}${inProgress ? ", in progress" : ""}`],
  ]);
}

/** The trace's documents, pretty printed, for reading or copying. */
export function rawDocuments(trace) {
  const docs = (trace.Segments || []).map((s) => {
    try {
      return JSON.parse(s.Document);
    } catch {
      return s.Document;
    }
  });
  return el("details", { class: "raw" }, el("summary", {}, "Raw segment documents"), el("pre", { class: "json" }, pretty(docs)));
}
