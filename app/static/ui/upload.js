// Upload: drop (or pick) an image; the new case's candidates appear beside it, ready for a decision.

import { api } from "/ui/api.js";
import { renderCase } from "/ui/case.js";
import { clearMessages, h, replace, showError } from "/ui/dom.js";

const ACCEPT = "image/jpeg,image/png,image/webp,image/gif,image/bmp,image/tiff";

export function uploadView(root) {
  const input = h("input#file.visually-hidden", { type: "file", name: "file", accept: ACCEPT, tabindex: -1 });
  const k = h("input#k", { type: "number", min: 1, max: 100, value: 5, inputmode: "numeric" });
  const status = h("p.status", { "aria-live": "polite" });
  const results = h("div.upload-results");
  const zone = h("label.drop", { for: "file" },
    h("strong", {}, "Drop an image here"),
    h("span", {}, "or press Enter / click to pick a file (JPEG, PNG, WebP, GIF, BMP, TIFF)"));

  async function send(file) {
    if (!file) return;
    clearMessages();
    const form = new FormData();
    form.append("file", file, file.name);
    status.textContent = `Attributing ${file.name}…`;
    zone.classList.add("busy");
    replace(results);
    try {
      // with matched regions: the reviewer sees them, and decided cases teach the verdict their strength
      const kase = await api(`/cases?k=${encodeURIComponent(k.value || 5)}&space=all&evidence=regions`, { method: "POST", form });
      status.textContent = `Case #${kase.id} opened for ${kase.filename}.`;
      replace(results, renderCase(kase, { onChange: () => { location.hash = `#/cases/${kase.id}`; } }));
    } catch (err) {
      status.textContent = "";
      showError(err, `uploading ${file.name}`);
    } finally {
      zone.classList.remove("busy");
      input.value = "";
    }
  }

  input.addEventListener("change", () => send(input.files[0]));
  zone.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      input.click();
    }
  });
  for (const name of ["dragenter", "dragover"]) {
    zone.addEventListener(name, (event) => { event.preventDefault(); zone.classList.add("over"); });
  }
  for (const name of ["dragleave", "drop"]) {
    zone.addEventListener(name, () => zone.classList.remove("over"));
  }
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    send(event.dataTransfer.files[0]);
  });
  zone.tabIndex = 0;

  replace(root,
    h("section.upload", { "aria-labelledby": "upload-title" },
      h("h2#upload-title", {}, "Upload a synthetic image"),
      input, zone,
      h("div.options", {}, h("label", { for: "k" }, "Concepts per space"), k),
      status),
    results);
}
