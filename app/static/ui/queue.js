// The queue: cases newest first (or the surest verdict first), filtered by status, concept, dates, confidence and reviewer; paged.

import { api } from "/ui/api.js";
import { h, pct, replace, showError, statusBadge, statusLabel, when } from "/ui/dom.js";

const PAGE = 20;
const FILTERS = ["status", "concept", "since", "until", "min_confidence", "reviewer", "sort"];

// Dates are picked as local days; the API gets the instants that bound them.
function instant(day, endOfDay) {
  const d = new Date(`${day}T${endOfDay ? "23:59:59.999" : "00:00:00"}`);
  return Number.isNaN(d.getTime()) ? day : d.toISOString();
}

function apiQuery(params) {
  const q = new URLSearchParams();
  for (const name of FILTERS) {
    const value = params.get(name);
    if (!value) continue;
    if (name === "since" || name === "until") q.set(name, instant(value, name === "until"));
    else q.set(name, value);
  }
  q.set("offset", params.get("offset") || "0");
  q.set("limit", String(PAGE));
  return q;
}

function field(label, input) {
  return h("div.field", {}, h("label", { for: input.id }, label), input);
}

function filterForm(params) {
  const status = h("select#f-status", { name: "status" }, h("option", { value: "" }, "Any"),
    Object.entries(statusLabel).map(([v, l]) => h("option", { value: v, selected: params.get("status") === v }, l)));
  const text = (id, name, extra = {}) => h(`input#${id}`, { name, value: params.get(name) || "", ...extra });
  const form = h("form.filters", { "aria-label": "Filter cases" },
    field("Status", status),
    field("Concept", text("f-concept", "concept", { type: "text", placeholder: "any" })),
    field("From", text("f-since", "since", { type: "date" })),
    field("To", text("f-until", "until", { type: "date" })),
    field("Min. confidence", text("f-min", "min_confidence", { type: "number", min: 0, max: 1, step: 0.05, placeholder: "0–1" })),
    field("Reviewer", text("f-reviewer", "reviewer", { type: "text", placeholder: "key name or id" })),
    field("Sort", h("select#f-sort", { name: "sort" },
      h("option", { value: "" }, "Newest first"),
      h("option", { value: "verdict", selected: params.get("sort") === "verdict" }, "Surest match first"))),
    h("div.buttons", {}, h("button", { type: "submit" }, "Apply"),
      h("a.button.secondary", { href: "#/cases" }, "Clear")));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const q = new URLSearchParams();
    for (const [name, value] of new FormData(form)) if (value) q.set(name, value);
    location.hash = `#/cases${q.toString() ? `?${q}` : ""}`;
  });
  return form;
}

function decisionsCount(decisions) {
  if (Array.isArray(decisions)) return decisions.length;
  return decisions ?? 0;
}

function row(item) {
  const open = `#/cases/${item.id}`;
  const tr = h("tr", { dataset: { caseId: item.id } },
    h("td", {}, h("a", { href: open }, `#${item.id}`)),
    h("td", {}, statusBadge(item.status)),
    h("td", {}, h("time", { datetime: item.created_at }, when(item.created_at))),
    h("td.name", {}, h("a", { href: open }, item.filename)),
    h("td", {}, item.top_concept || "–"),
    h("td.num", {}, pct(item.confidence)),
    h("td.num", {}, pct(item.none_probability)),
    h("td.num", {}, String(decisionsCount(item.decisions))));
  tr.addEventListener("click", (event) => { if (!event.target.closest("a")) location.hash = open; });
  return tr;
}

function pager(page, params) {
  const link = (offset, label, disabled) => {
    const q = new URLSearchParams(params);
    q.set("offset", String(Math.max(0, offset)));
    return disabled ? h("span.button.secondary", { "aria-disabled": "true" }, label)
      : h("a.button.secondary", { href: `#/cases?${q}` }, label);
  };
  const first = page.total ? page.offset + 1 : 0;
  const last = Math.min(page.offset + page.items.length, page.total);
  return h("nav.pager", { "aria-label": "Pages" },
    link(page.offset - page.limit, "← Newer", page.offset <= 0),
    h("span", {}, `${first}–${last} of ${page.total}`),
    link(page.offset + page.limit, "Older →", page.offset + page.limit >= page.total));
}

export async function queueView(root, params) {
  const list = h("div.list", { "aria-live": "polite" }, h("p.meta", {}, "Loading cases…"));
  replace(root, h("section.queue", { "aria-labelledby": "queue-title" },
    h("h2#queue-title", {}, "Queue"), filterForm(params), list));
  let page;
  try {
    page = await api(`/cases?${apiQuery(params)}`);
  } catch (err) {
    replace(list, h("p.meta", {}, "The cases could not be loaded."));
    showError(err, "loading the queue");
    return;
  }
  if (!page.items.length) {
    replace(list, h("p.meta", {}, page.total ? "No cases on this page." : "No cases match these filters."));
    return;
  }
  replace(list,
    h("table.cases", {},
      h("caption.visually-hidden", {}, "Cases, newest first"),
      h("thead", {}, h("tr", {}, ["Case", "Status", "Created", "File", "Top concept", "Confidence", "None", "Decisions"]
        .map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, page.items.map(row))),
    pager(page, params));
}
