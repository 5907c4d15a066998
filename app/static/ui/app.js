// The reviewer page: the key, hash routing (#/upload, #/cases, #/cases/{id}, #/cases/{id}/report).

import { api, ApiError, forgetImages, key } from "/ui/api.js";
import { renderCase } from "/ui/case.js";
import { clearMessages, h, replace, showError } from "/ui/dom.js";
import { queueView } from "/ui/queue.js";
import { reportView } from "/ui/report.js";
import { uploadView } from "/ui/upload.js";

const view = document.getElementById("view");
const keyForm = document.getElementById("key-form");
const keyInput = document.getElementById("key-input");
const who = document.getElementById("who");
const whoText = document.getElementById("who-text");

function showWho(text) {
  whoText.textContent = text;
  who.hidden = false;
  keyForm.hidden = true;
}

function askForKey() {
  who.hidden = true;
  keyForm.hidden = false;
  keyInput.value = "";
}

// Checks a key once (GET /whoami) and keeps it for this browser session if the server takes it.
async function useKey(value) {
  key.set(value);
  forgetImages();
  try {
    const me = await api("/whoami");
    key.set(value);
    sessionStorage.setItem("attrib.who", JSON.stringify(me));
    showWho(`Signed in as ${me.name} (${me.role})`);
    return true;
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) {  // a server without /whoami: keep the key unchecked
      showWho("Key kept for this session (this server cannot check it)");
      return true;
    }
    key.clear();
    sessionStorage.removeItem("attrib.who");
    askForKey();
    showError(err, "checking the key");
    return false;
  }
}

keyForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const value = keyInput.value.trim();
  if (!value) {
    keyInput.focus();
    return;
  }
  clearMessages();
  if (await useKey(value)) route();
});

document.getElementById("key-forget").addEventListener("click", () => {
  key.clear();
  sessionStorage.removeItem("attrib.who");
  forgetImages();
  askForKey();
  keyInput.focus();
});

// A key refused later on (revoked, or the server's keys changed): ask for one again.
window.addEventListener("attrib:unauthorized", () => {
  key.clear();
  sessionStorage.removeItem("attrib.who");
  askForKey();
});

async function caseView(root, id) {
  replace(root, h("p.meta", {}, `Loading case #${id}…`));
  try {
    const kase = await api(`/cases/${id}`);
    replace(root, renderCase(kase, { full: true, onChange: () => caseView(root, id) }));
  } catch (err) {
    replace(root, h("p.meta", {}, `Case #${id} could not be loaded.`));
    showError(err, `loading case #${id}`);
  }
}

function route() {
  const hash = location.hash || "#/upload";
  const [path, query = ""] = hash.slice(1).split("?");
  const parts = path.split("/").filter(Boolean);
  const params = new URLSearchParams(query);
  for (const link of document.querySelectorAll("[data-nav]")) {
    const current = link.dataset.nav === (parts[0] === "cases" ? "cases" : "upload");
    if (current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  clearMessages();
  if (!key.get()) {
    replace(view, h("section.welcome", {}, h("h2", {}, "Enter your key"),
      h("p", {}, "Paste the reviewer key you were given (", h("code", {}, "attrib keys create NAME --role reviewer"),
        ") in the box at the top. It is kept in this browser tab's session only.")));
    keyInput.focus();
    return;
  }
  if (parts[0] === "cases" && parts[1] && parts[2] === "report") reportView(view, parts[1]);
  else if (parts[0] === "cases" && parts[1]) caseView(view, parts[1]);
  else if (parts[0] === "cases") queueView(view, params);
  else uploadView(view);
  document.title = `attrib · ${parts[0] === "cases" ? (parts[1] ? `case #${parts[1]}` : "queue") : "upload"}`;
}

window.addEventListener("hashchange", route);

const saved = key.get();
const savedWho = sessionStorage.getItem("attrib.who");
if (saved && savedWho) {
  const me = JSON.parse(savedWho);
  showWho(`Signed in as ${me.name} (${me.role})`);
} else if (saved) {
  showWho("Key kept for this session");
}
route();
