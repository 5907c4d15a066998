// The API client: the key (kept for this browser session), requests, and errors put into words.

const KEY = "attrib.key";

export const key = {
  get: () => sessionStorage.getItem(KEY) || "",
  set: (value) => sessionStorage.setItem(KEY, value),
  clear: () => sessionStorage.removeItem(KEY),
};

export class ApiError extends Error {
  constructor(status, code, message, retryAfter) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

// One request; resolves to the parsed JSON (or text with {text: true}), rejects with an ApiError.
export async function api(path, { method = "GET", json, form, text = false, blob = false } = {}) {
  const headers = {};
  const k = key.get();
  if (k) headers["X-API-Key"] = k;
  let body;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (form) {
    body = form;
  }
  let response;
  try {
    response = await fetch(path, { method, headers, body, credentials: "omit", cache: "no-cache" });
  } catch (err) {
    throw new ApiError(0, "network_error", "the server could not be reached; is attrib serve running?");
  }
  if (!response.ok) {
    const err = await errorOf(response);
    if (err.status === 401 && k) window.dispatchEvent(new CustomEvent("attrib:unauthorized"));
    throw err;
  }
  if (blob) return response.blob();
  if (text) return response.text();
  return response.status === 204 ? null : response.json();
}

async function errorOf(response) {
  let code = `http_${response.status}`;
  let message = response.statusText || "the request failed";
  try {
    const body = await response.json();
    if (body && body.error) ({ code, message } = body.error);
  } catch (err) {
    /* not JSON: keep the status line */
  }
  return new ApiError(response.status, code, message, response.headers.get("Retry-After"));
}

// What to tell the reviewer about an error: a headline for the case, then the code and message.
export function describe(err, doing = "") {
  const what = doing ? ` while ${doing}` : "";
  if (!(err instanceof ApiError)) return { title: `Cannot go on${what}: ${err.message || err}.`, detail: "" };
  const s = err.status;
  let title;
  if (s === 401) title = "Your API key is missing or not valid. Enter a reviewer key above.";
  else if (s === 403 && err.code === "no_role") title = "This key has no role yet, so it can do nothing here. Ask an admin to give it the reviewer role.";
  else if (s === 403) title = "This key's role is not allowed to do that. Ask for a key with the reviewer role.";
  else if (s === 429) {
    const wait = err.retryAfter ? ` Try again in ${err.retryAfter} s.` : " Try again shortly.";
    title = `Too many requests from this key or address.${wait}`;
  } else if (s === 413) title = "That file is too large for the server.";
  else if (s === 415) title = "That file is not an image the server accepts (JPEG, PNG, WebP, GIF, BMP or TIFF).";
  else if (s === 400 && /image|file/.test(err.code)) title = "That image could not be read.";
  else if (s === 422) title = "The server refused the request as it was filled in.";
  else if (s === 503) title = "The service is not ready yet (encoder, index or database). Try again in a minute.";
  else if (s === 404) title = "Not found.";
  else if (s === 409) title = "The server cannot do that right now.";
  else if (s === 0) title = "No connection to the server.";
  else title = `The request failed (HTTP ${s}).`;
  return { title: title + what, detail: `${err.code}: ${err.message}` };
}

// Images that may need the key: fetched with the header and shown through a blob: URL (cached).
const blobs = new Map();

export function imageUrl(path) {
  if (!blobs.has(path)) {
    const pending = api(path, { blob: true }).then((b) => URL.createObjectURL(b));
    pending.catch(() => blobs.delete(path));
    blobs.set(path, pending);
  }
  return blobs.get(path);
}

export function forgetImages() {
  for (const pending of blobs.values()) pending.then(URL.revokeObjectURL, () => {});
  blobs.clear();
}
