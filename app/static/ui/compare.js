// The compare view: a case's query and one source side by side (GET /cases/{id}/evidence/{source}),
// the matched regions outlined in both, a heat map of the matched points, and a slider that lays
// the source, warped by the fitted transform, over the query. Keys: → / ← next and previous
// source, Esc closes (and, on the case, m / x / e decide: case.js).

import { api, imageUrl } from "/ui/api.js";
import { h, num, showError } from "/ui/dom.js";

const HEIGHT = 360;
// Colours that photos rarely have, so that the drawing stands out (and a test can find it).
const COLOURS = { box: "#00c8ff", frame: "#ff00ff", heat: "rgba(255, 60, 0, 0.3)" };
let current = null;  // {kase, sources, index, el, evidence, images, heat, mix}

function loadImage(path) {
  return imageUrl(path).then((url) => new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("the image could not be shown"));
    img.src = url;
  }));
}

// The inverse of a 2 x 3 affine map [[a, b, c], [d, e, f]].
function inverse([[a, b, c], [d, e, f]]) {
  const det = a * e - b * d;
  return [[e / det, -b / det, (b * f - c * e) / det], [-d / det, a / det, (c * d - a * f) / det]];
}

function box(ctx, b, scale, colour) {
  if (!b) return;
  ctx.strokeStyle = colour;
  ctx.lineWidth = 3;
  ctx.strokeRect(b[0] * scale, b[1] * scale, (b[2] - b[0]) * scale, (b[3] - b[1]) * scale);
}

function heat(ctx, points, scale) {
  ctx.fillStyle = COLOURS.heat;
  for (const [x, y] of points) {
    ctx.beginPath();
    ctx.arc(x * scale, y * scale, 9, 0, 2 * Math.PI);
    ctx.fill();
  }
}

function draw(state) {
  const { evidence: ev, images, el } = state;
  const [qc, sc] = [el.querySelector("canvas.cmp-query"), el.querySelector("canvas.cmp-source")];
  const qs = HEIGHT / ev.query_size[1];
  const ss = HEIGHT / ev.source_size[1];
  qc.width = Math.round(ev.query_size[0] * qs); qc.height = HEIGHT;
  sc.width = Math.round(ev.source_size[0] * ss); sc.height = HEIGHT;
  const q = qc.getContext("2d");
  const s = sc.getContext("2d");
  q.drawImage(images.query, 0, 0, qc.width, qc.height);
  s.drawImage(images.source, 0, 0, sc.width, sc.height);
  if (ev.matched && state.mix > 0) {  // source pixels -> query pixels -> canvas
    const [[a, b, c], [d, e, f]] = inverse(ev.transform);
    q.save();
    q.globalAlpha = state.mix;
    q.setTransform(qs * a, qs * d, qs * b, qs * e, qs * c, qs * f);
    q.drawImage(images.source, 0, 0, ev.source_size[0], ev.source_size[1]);
    q.restore();
  }
  if (state.heat) {
    heat(q, ev.query_points, qs);
    heat(s, ev.source_points, ss);
  }
  if (ev.matched) {
    box(q, ev.query_box, qs, COLOURS.box);
    box(s, ev.source_box, ss, COLOURS.box);
    s.strokeStyle = COLOURS.frame;
    s.lineWidth = 2;
    s.beginPath();
    ev.source_quad.forEach(([x, y], i) => (i ? s.lineTo(x * ss, y * ss) : s.moveTo(x * ss, y * ss)));
    s.closePath();
    s.stroke();
  }
  el.dataset.drawn = String(ev.source_id);
}

function caption(ev, source) {
  const found = ev.matched
    ? `${ev.inliers} matched points${ev.mirrored ? ", mirrored" : ""}; scale ${num(ev.scale, 2)}, rotation ${num(ev.rotation, 1)}°`
    : `only ${ev.inliers} matched points: no region is claimed`;
  return `Source #${ev.source_id} ${source.filename} · ${found}`;
}

async function show(state) {
  const source = state.sources[state.index];
  const head = state.el.querySelector(".cmp-caption");
  head.textContent = `Matching source #${source.id}…`;
  delete state.el.dataset.drawn;
  try {
    const [evidence, query, image] = await Promise.all([
      api(`/cases/${state.kase.id}/evidence/${source.id}`), loadImage(state.kase.image_url), loadImage(source.image_url)]);
    if (current !== state || state.sources[state.index] !== source) return;  // moved on meanwhile
    Object.assign(state, { evidence, images: { query, source: image } });
    head.textContent = caption(evidence, source);
    state.el.querySelector(".cmp-position").textContent = `${state.index + 1} of ${state.sources.length}`;
    draw(state);
  } catch (err) {
    head.textContent = `Source #${source.id}: no evidence.`;
    showError(err, "matching regions");
  }
}

export function step(delta) {
  if (!current || !document.contains(current.el)) return false;
  current.index = (current.index + delta + current.sources.length) % current.sources.length;
  show(current);
  return true;
}

export function close() {
  if (current) current.el.remove();
  current = null;
}

// Opens (or moves) the compare view in `host` for sources[index].
export function openCompare(host, kase, sources, index) {
  close();
  const state = { kase, sources, index, heat: false, mix: 0 };
  const redraw = () => state.evidence && draw(state);
  const heatBox = h("input#cmp-heat", { type: "checkbox", onchange: (e) => { state.heat = e.target.checked; redraw(); } });
  const slider = h("input#cmp-mix", { type: "range", min: 0, max: 100, value: 0,
    oninput: (e) => { state.mix = Number(e.target.value) / 100; redraw(); } });
  state.el = h("section.compare", { "aria-label": "Compare the query with a source" },
    h("div.cmp-head", {},
      h("strong", {}, "Compare"), h("span.cmp-caption", {}), h("span.cmp-position.meta", {}),
      h("button.link", { type: "button", title: "Previous source (←)", onclick: () => step(-1) }, "‹ Previous"),
      h("button.link", { type: "button", title: "Next source (→)", onclick: () => step(1) }, "Next ›"),
      h("button.link.cmp-close", { type: "button", title: "Close (Esc)", onclick: close }, "Close")),
    h("div.cmp-pair", {},
      h("figure", {}, h("canvas.cmp-query", { role: "img", "aria-label": "the query, its matched region outlined" }),
        h("figcaption", {}, "Query (cyan: the matched region)")),
      h("figure", {}, h("canvas.cmp-source", { role: "img", "aria-label": "the source, its matched region outlined" }),
        h("figcaption", {}, "Source (cyan: the matched region; magenta: where the whole query lies)"))),
    h("div.cmp-controls", {},
      h("label", { for: "cmp-heat" }, heatBox, " Heat map of matched points"),
      h("label", { for: "cmp-mix" }, "Source laid over the query ", slider)));
  current = state;
  host.prepend(state.el);
  show(state);
  return state.el;
}

export const isOpen = () => Boolean(current && document.contains(current.el));
