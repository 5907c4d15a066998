// A case's report: fetched with the key, shown in a sandboxed frame (no scripts), or opened in a new tab.

import { api } from "/ui/api.js";
import { h, replace, showError } from "/ui/dom.js";

// The tab opened from a blob: URL shares this page's origin, so it is told to run no script at all.
const NO_SCRIPT = '<meta http-equiv="Content-Security-Policy" content="script-src \'none\'; object-src \'none\'">';

export async function reportView(root, id) {
  const back = h("a.button.secondary", { href: `#/cases/${id}` }, "← Case");
  const body = h("div.report-body", {}, h("p.meta", {}, "Loading the report…"));
  replace(root, h("section.report", { "aria-labelledby": "report-title" },
    h("header.case-head", {}, h("h2#report-title", {}, `Report for case #${id}`), h("div.actions", {}, back)),
    body));
  let html;
  try {
    html = await api(`/cases/${id}/report`, { text: true });
  } catch (err) {
    replace(body, h("p.meta", {}, "The report could not be loaded."));
    showError(err, "loading the report");
    return;
  }
  const url = URL.createObjectURL(new Blob([NO_SCRIPT, html], { type: "text/html" }));
  const frame = h("iframe.report-frame", { title: `Report for case #${id}`, sandbox: "", srcdoc: html });
  const open = h("button", { type: "button", onclick: () => window.open(url, "_blank", "noopener") }, "Open in a new tab");
  const save = h("a.button.secondary", { href: url, download: `case-${id}-report.html` }, "Download");
  back.after(open, save);
  replace(body, frame);
  window.addEventListener("hashchange", () => URL.revokeObjectURL(url), { once: true });
}
