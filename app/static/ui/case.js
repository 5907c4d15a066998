// One case: the query beside its candidates per space, the decision form, and (on the case view) history.

import { api } from "/ui/api.js";
import { close as closeCompare, isOpen as compareOpen, openCompare, step as compareStep } from "/ui/compare.js";
import { bar, h, keyedImage, num, pct, showError, showInfo, statusBadge, when } from "/ui/dom.js";

const DECISIONS = [
  { value: "match", label: "Match", hint: "the ticked concepts were copied", key: "m" },
  { value: "no_match", label: "No match", hint: "none of these", key: "x" },
  { value: "escalate", label: "Escalate", hint: "needs another reviewer", key: "e" },
];

function spaceOrder(spaces) {
  const rank = (name) => ({ content: 0, style: 1 }[name] ?? 2);
  return Object.values(spaces || {}).sort((a, b) => rank(a.space) - rank(b.space) || a.space.localeCompare(b.space));
}

// The answer on show: the case's own, which is the newest one after a re-score.
function currentAnswer(kase) {
  return kase.answer || { spaces: {} };
}

// Ticked at first: the verdict's concept in the space surest of it (answers stored before the
// verdict: the top content concept, else the first space that answered).
function defaultTick(answer) {
  const verdict = answer.verdict;
  if (verdict && verdict.kind === "match" && verdict.source_space) return { space: verdict.source_space, concept: verdict.concept };
  const first = spaceOrder(answer.spaces).find((a) => a.available && a.concepts.length);
  return first ? { space: first.space, concept: first.concepts[0].concept } : {};
}

// The case's headline is the answer's verdict (one answer across the spaces).
function summary(kase, answer) {
  const none = kase.none_probability;
  const verdict = answer && answer.verdict;
  const said = verdict ? (verdict.kind === "match" ? `Match: ${verdict.concept}` : "No source in the catalog") : null;
  const why = verdict ? `fused from ${verdict.method === "max_rule" ? "the surest space" : `a ${verdict.method} fit (${verdict.chosen})`}; `
    + `ranked first by: ${verdict.spaces.join(", ") || "–"}` : null;
  return h("div.summary", {},
    said ? h(`div.stat.verdict.${verdict.kind}`, { title: why }, h("span.k", {}, "Verdict"), h("span.v", {}, said)) : null,
    h("div.stat", {}, h("span.k", {}, verdict ? "Best candidate" : "Top concept"), h("span.v", {}, kase.top_concept || "–")),
    h("div.stat", {}, h("span.k", {}, "Confidence"), h("span.v", {}, pct(kase.confidence))),
    none === null || none === undefined ? null
      : h(`div.stat.none${none >= 0.5 ? ".high" : ""}`, {}, h("span.k", {}, "None of these"), h("span.v", {}, pct(none))));
}

function concept(c, spaceName, ticked) {
  const calibrated = c.probability !== undefined && c.probability !== null;
  const value = calibrated ? c.probability : c.share;
  const id = `pick-${spaceName}-${c.concept}`.replace(/[^A-Za-z0-9_-]/g, "_");
  const label = `${c.concept}: ${calibrated ? "probability" : "share"} ${pct(value)}, score ${num(c.score)}`;
  return h("li.concept", {},
    h("div.row", {},
      h("input", { type: "checkbox", id, name: "concept", value: c.concept, checked: ticked }),
      h("label", { for: id }, c.concept),
      h("span.pct", {}, pct(value))),
    bar(value, label),
    h("div.meta", {}, `score ${num(c.score)}`),
    h("ul.sources", {}, (c.sources || []).map((s) => source(s, spaceName))));
}

function source(s, spaceName) {
  const id = `src-${spaceName}-${s.id}`;
  return h("li", {},
    h("label.thumb", { for: id, title: `${s.filename} · score ${num(s.score)}` },
      keyedImage(s.thumbnail_url, `source ${s.id}: ${s.filename}`),
      h("span", {}, h("input", { type: "checkbox", id, name: "source", value: s.id }), ` #${s.id}`)),
    h("button.link.compare", { type: "button", dataset: { sourceId: s.id }, title: `Compare the query with source #${s.id}` },
      "Compare"));
}

function spaceColumn(answer, ticked) {
  const col = h("section.space", { "aria-label": `${answer.space} candidates` },
    h("h3", {}, answer.space),
    answer.head_id ? h("p.head", { title: answer.head_id }, `head ${answer.head_id}`) : null);
  if (!answer.available) {
    col.append(h("p.unavailable", {}, answer.message || "This space has no answer yet."));
    return col;
  }
  const calibrated = answer.concepts.some((c) => c.probability !== undefined && c.probability !== null);
  const fit = answer.calibration;
  col.append(h("p.head", { title: fit ? `calibration: ${fit.method}, ${fit.fitted_on}` : null },
    calibrated ? `bars: calibrated probability${fit ? ` (${fit.method})` : ""}` : "bars: share of these scores (not calibrated)"));
  const none = answer.none_probability;
  if (none !== undefined && none !== null) {
    col.append(h(`div.nonebox${none >= 0.5 ? ".high" : ""}`, {},
      h("div.row", {}, h("strong", {}, "None of these"), h("span.pct", {}, pct(none))),
      bar(none, `none of these: ${pct(none)}`, ".none")));
  }
  if (!answer.concepts.length) col.append(h("p.unavailable", {}, "No concepts returned."));
  col.append(h("ol.concepts", {}, answer.concepts.map((c) =>
    concept(c, answer.space, answer.space === ticked.space && c.concept === ticked.concept))));
  return col;
}

function decisionForm(kase, answer, onDecided) {
  const ticked = defaultTick(answer);
  const note = h("textarea#note", { name: "note", rows: 2, maxlength: 4000, placeholder: "Why? (kept with the decision)" });
  const form = h("form.decide", { "aria-label": "Decision" },
    h("div.results", {},
      h("figure.query", {}, keyedImage(kase.image_url, `query image ${kase.filename}`),
        h("figcaption", {}, kase.filename)),
      spaceOrder(answer.spaces).map((a) => spaceColumn(a, ticked))),
    h("fieldset.decision", {},
      h("legend", {}, "Decision"),
      h("p.hint", {}, "Tick the concepts (and sources) that were copied, add a note, then one click. Keys: m, x, e decide; "
        + "→ / ← compare with the next or previous source."),
      h("label", { for: "note" }, "Note"), note,
      h("div.buttons", {}, DECISIONS.map((d) =>
        h(`button.d-${d.value}`, { type: "submit", name: "decision", value: d.value, title: `${d.hint} (key ${d.key})`,
          "aria-keyshortcuts": d.key }, d.label)))));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const decision = event.submitter ? event.submitter.value : "escalate";
    const data = new FormData(form);
    // "No match" names nothing; the ticks go with a match or an escalation.
    const concepts = decision === "no_match" ? [] : [...new Set(data.getAll("concept"))];
    const sourceIds = decision === "no_match" ? [] : [...new Set(data.getAll("source").map(Number))];
    if (decision === "match" && !concepts.length) {
      showError(new Error("tick at least one concept for a match"), "recording the decision");
      return;
    }
    const buttons = form.querySelectorAll("button");
    buttons.forEach((b) => { b.disabled = true; });
    try {
      const out = await api(`/cases/${kase.id}/decision`, {
        method: "POST", json: { decision, concepts, source_ids: sourceIds, note: note.value.trim() },
      });
      showInfo(`Decision recorded on case #${kase.id}: ${out.decision.replace("_", " ")}.`);
      onDecided(out);
    } catch (err) {
      showError(err, "recording the decision");
    } finally {
      buttons.forEach((b) => { b.disabled = false; });
    }
  });
  return form;
}

// {space: {before: [concepts], after: [concepts]}} -> "content: a, b → b, a"
function changesText(changes) {
  const list = (v) => (Array.isArray(v) ? v.join(", ") || "–" : JSON.stringify(v));
  return Object.entries(changes || {}).map(([space, c]) =>
    (c && typeof c === "object" && "before" in c ? `${space}: ${list(c.before)} → ${list(c.after)}` : `${space}: ${list(c)}`));
}

function history(kase) {
  const events = [
    ...(kase.decisions || []).map((d) => ({ at: d.created_at, kind: "decision", d })),
    ...(kase.rescores || []).map((r) => ({ at: r.created_at, kind: "rescore", r })),
  ].sort((a, b) => new Date(a.at) - new Date(b.at));
  const items = events.map(({ kind, d, r }) => {
    if (kind === "decision") {
      return h(`li.event.decision${d.superseded_by ? ".superseded" : ""}`, {},
        h("div.row", {}, statusBadge(d.decision === "escalate" ? "escalated" : d.decision),
          h("span", {}, ` by ${d.key_name || `key ${d.key_id}`}`), h("time", { datetime: d.created_at }, when(d.created_at)),
          d.superseded_by ? h("em", {}, ` superseded by #${d.superseded_by}`) : null),
        d.concepts && d.concepts.length ? h("div.meta", {}, `concepts: ${d.concepts.join(", ")}`) : null,
        d.source_ids && d.source_ids.length ? h("div.meta", {}, `sources: ${d.source_ids.map((i) => `#${i}`).join(", ")}`) : null,
        d.note ? h("blockquote", {}, d.note) : null);
    }
    const lines = changesText(r.changes);
    return h("li.event.rescore", {},
      h("div.row", {}, h("span.badge.s-rescore", {}, "Re-score"),
        h("span", {}, ` by ${r.key_name || `key ${r.key_id}`}`), h("time", { datetime: r.created_at }, when(r.created_at))),
      h("div.meta", {}, r.changed ? "the top concept changed" : "no top concept changed"),
      lines.length ? h("ul.changes", {}, lines.map((l) => h("li", {}, l))) : null);
  });
  return h("section.history", { "aria-label": "History" }, h("h3", {}, "History"),
    items.length ? h("ol.events", {}, items) : h("p.meta", {}, "No decisions or re-scores yet."));
}

// The whole case. `full` adds re-score, report and history (the case view); upload shows the rest.
export function renderCase(kase, { full = false, onChange = () => {} } = {}) {
  const answer = currentAnswer(kase);
  const rescore = async (event) => {
    event.target.disabled = true;
    try {
      const out = await api(`/cases/${kase.id}/rescore`, { method: "POST" });
      showInfo(out.changed ? "Re-scored: a top concept changed." : "Re-scored: no top concept changed.");
      onChange();
    } catch (err) {
      showError(err, "re-scoring");
    } finally {
      event.target.disabled = false;
    }
  };
  const last = (kase.rescores || []).at(-1);
  const host = h("div.compare-host");
  const sources = compareList(answer);
  const article = h("article.case", {
    dataset: { caseId: kase.id },
    onclick: (event) => {
      const button = event.target.closest("button.compare");
      if (button) openCompare(host, kase, sources, sources.findIndex((s) => String(s.id) === button.dataset.sourceId));
    },
  },
    h("header.case-head", {},
      h("h2", {}, `Case #${kase.id} `, statusBadge(kase.status)),
      h("p.meta", {}, `${kase.filename} · ${when(kase.created_at)} · by ${kase.key_name || "–"}`,
        last ? ` · showing the re-score of ${when(last.created_at)}` : ""),
      summary(kase, answer),
      h("div.actions", {},
        full ? null : h("a.button", { href: `#/cases/${kase.id}` }, "Open case"),
        full ? h("button", { type: "button", onclick: rescore }, "Re-score") : null,
        h("a.button", { href: `#/cases/${kase.id}/report` }, "Report"))),
    host,
    decisionForm(kase, answer, onChange),
    full ? history(kase) : null);
  closeCompare();
  listenForKeys();
  return article;
}

// Every source on show, once: the verdict's first, then by space.
function compareList(answer) {
  const seen = new Map();
  const verdictSource = answer.verdict && answer.verdict.source;
  if (verdictSource) seen.set(verdictSource.id, verdictSource);
  for (const space of spaceOrder(answer.spaces)) {
    for (const c of space.concepts || []) for (const s of c.sources || []) if (!seen.has(s.id)) seen.set(s.id, s);
  }
  return [...seen.values()];
}

// Keys on the case on show (one listener for the page): m / x / e press the decision buttons,
// → / ← step through the sources in the compare view (opening it), Esc closes it.
let listening = false;
function listenForKeys() {
  if (listening) return;
  listening = true;
  document.addEventListener("keydown", (event) => {
    if (event.altKey || event.ctrlKey || event.metaKey || /^(INPUT|TEXTAREA|SELECT)$/.test(event.target.tagName)) return;
    const article = document.querySelector("article.case");
    if (!article) return;
    const decision = DECISIONS.find((d) => d.key === event.key.toLowerCase());
    if (decision) article.querySelector(`button.d-${decision.value}`)?.click();
    else if (event.key === "Escape") closeCompare();
    else if (event.key === "ArrowRight" || event.key === "ArrowLeft") {
      const delta = event.key === "ArrowRight" ? 1 : -1;
      if (!compareOpen() || !compareStep(delta)) article.querySelector("button.compare")?.click();
    } else return;
    event.preventDefault();
  });
}
