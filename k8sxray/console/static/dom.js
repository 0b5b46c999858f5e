// Building the page's elements. Every string goes in as a text node or an attribute value,
// so content that came from a segment is always shown as text and never parsed as markup.

const SVG_NS = "http://www.w3.org/2000/svg";

function fill(node, attrs, children) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      node.addEventListener(key.slice(2), value);
    } else {
      node.setAttribute(key, value === true ? "" : String(value));
    }
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** An HTML element: el("a", {href: "/"}, "text", otherNode). */
export function el(tag, attrs, ...children) {
  return fill(document.createElement(tag), attrs, children);
}

/** An SVG element, the same way. */
export function svg(tag, attrs, ...children) {
  return fill(document.createElementNS(SVG_NS, tag), attrs, children);
}

/** A definition list of [term, value] pairs, skipping empty values. */
export function pairs(rows) {
  const list = el("dl", { class: "pairs" });
  for (const [term, value] of rows) {
    if (value === undefined || value === null || value === "") continue;
    list.append(el("dt", {}, term), el("dd", {}, value instanceof Node ? value : String(value)));
  }
  return list.childElementCount ? list : null;
}

/** Milliseconds from seconds, readable: "0.8 ms", "12 ms", "1.25 s". */
export function ms(seconds) {
  if (typeof seconds !== "number" || !Number.isFinite(seconds)) return "";
  const value = seconds * 1000;
  if (value >= 1000) return `${(value / 1000).toFixed(2)} s`;
  if (value >= 10) return `${Math.round(value)} ms`;
  return `${value.toFixed(1)} ms`;
}

const pad = (n, width = 2) => String(n).padStart(width, "0");

/** A local wall-clock time from epoch seconds: "14:03:07.120", with the date when not today. */
export function clock(epoch, withMillis = false) {
  if (typeof epoch !== "number" || !Number.isFinite(epoch)) return "";
  const d = new Date(epoch * 1000);
  let text = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  if (withMillis) text += `.${pad(d.getMilliseconds(), 3)}`;
  if (d.toDateString() !== new Date().toDateString()) {
    text = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${text}`;
  }
  return text;
}

/** An ISO time for tooltips. */
export function iso(epoch) {
  return typeof epoch === "number" && Number.isFinite(epoch) ? new Date(epoch * 1000).toISOString() : "";
}

/** Shortens a label for drawing; the full text goes in a tooltip beside it. */
export function shorten(text, max) {
  const s = String(text);
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}
