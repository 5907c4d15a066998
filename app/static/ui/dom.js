// Small DOM helpers shared by the views. Text always goes in as text, never as HTML.

import { describe, imageUrl } from "/ui/api.js";

// h("div.class#id", {attr: value, onclick: fn}, child, ...) -> element
export function h(spec, attrs = {}, ...children) {
  const [, tag, rest = ""] = spec.match(/^([a-z0-9]+)(.*)$/);
  const el = document.createElement(tag);
  for (const part of rest.match(/[.#][^.#]+/g) || []) {
    if (part[0] === ".") el.classList.add(part.slice(1));
    else el.id = part.slice(1);
  }
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(el.dataset, value);
    else el.setAttribute(name, value === true ? "" : value);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

const box = () => document.getElementById("messages");

// An error box with a headline, the API's code and message, and a close button.
export function showError(err, doing) {
  const { title, detail } = describe(err, doing);
  const note = h("div.msg.error", { dataset: { code: err.code || "" } },
    h("strong", {}, title), detail ? h("code", {}, detail) : null,
    h("button.link", { type: "button", "aria-label": "Dismiss", onclick: () => note.remove() }, "×"));
  box().append(note);
  return note;
}

export function showInfo(text) {
  const note = h("div.msg.info", {}, h("span", {}, text),
    h("button.link", { type: "button", "aria-label": "Dismiss", onclick: () => note.remove() }, "×"));
  box().append(note);
  setTimeout(() => note.remove(), 6000);
  return note;
}

export function clearMessages() {
  box().replaceChildren();
}

export const pct = (x) => (x === null || x === undefined ? "–" : `${Math.round(x * 1000) / 10}%`);
export const num = (x, digits = 3) => (x === null || x === undefined ? "–" : Number(x).toFixed(digits));

export function when(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

// An <img> whose bytes are fetched with the key; alt text always set.
export function keyedImage(path, alt, cls = "") {
  const img = h(`img${cls}`, { alt, loading: "lazy", decoding: "async" });
  if (path) {
    imageUrl(path).then((url) => { img.src = url; }, () => { img.classList.add("broken"); img.title = "image not available"; });
  }
  return img;
}

// A horizontal bar for a value in [0, 1].
export function bar(value, label, cls = "") {
  const fill = h("span.fill");
  fill.style.width = `${Math.max(0, Math.min(1, value || 0)) * 100}%`;
  return h(`span.bar${cls}`, { role: "img", "aria-label": label }, fill);
}

export const statusLabel = { open: "Open", match: "Match", no_match: "No match", escalated: "Escalated" };

export function statusBadge(status) {
  return h(`span.badge.s-${status}`, {}, statusLabel[status] || status);
}
