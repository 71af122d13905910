// The REST API client of the dashboard. The token lives in this tab's sessionStorage only:
// never in a URL, a cookie or localStorage; signOut removes it. Every call is a same-origin
// fetch with the Authorization header, so the API applies its usual roles.

const TOKEN_KEY = "cts-token";

export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
}

export function signOut() {
  sessionStorage.removeItem(TOKEN_KEY);
}

// ApiError is a failed API call: the CTS error's message (or its validation details, one
// per line, as the API words them), the HTTP status and the app code.
export class ApiError extends Error {
  constructor(status, body, fallback) {
    const e = (body && body.error) || {};
    let msg = e.message || "";
    const details = e.request_validation_detail || [];
    if (!msg && details.length) {
      msg = details.map((d) => `${(d.loc || []).filter((l) => l !== "body").join(" → ")}: ${d.msg}`).join("\n");
    }
    if (!msg) msg = e.httpstatus ? `${e.httpcode} ${e.httpstatus}` : fallback || `HTTP ${status}`;
    super(msg);
    this.status = status;
    this.appcode = e.appcode;
    this.details = details;
  }
}

async function errorFrom(resp) {
  let body = null;
  try {
    body = await resp.json();
  } catch {
    // not JSON: a proxy's page
  }
  return new ApiError(resp.status, body, `${resp.status} ${resp.statusText}`);
}

function headers(extra) {
  const h = new Headers(extra || {});
  const t = getToken();
  if (t) h.set("Authorization", "Bearer " + t);
  return h;
}

// onUnauthorized is called when the API refuses the token (401): the app signs out.
let onUnauthorized = () => {};
export function setUnauthorizedHandler(f) {
  onUnauthorized = f;
}

// api calls a JSON route; it resolves to the decoded answer (null for 204) or rejects with an
// ApiError.
export async function api(method, path, body, opts = {}) {
  const init = { method, headers: headers(), cache: "no-store", signal: opts.signal, credentials: "omit" };
  if (body !== undefined) {
    init.headers.set("Content-Type", "application/json");
    init.body = typeof body === "string" ? body : JSON.stringify(body);
  }
  const resp = await fetch(path, init);
  if (!resp.ok) {
    const err = await errorFrom(resp);
    if (resp.status === 401 && opts.signIn !== true) onUnauthorized(err);
    throw err;
  }
  if (resp.status === 204) return null;
  const ct = resp.headers.get("Content-Type") || "";
  return ct.startsWith("application/json") ? resp.json() : resp.text();
}

// whoami checks a token without storing it.
export async function whoami(token) {
  const resp = await fetch("/whoami", {
    headers: { Authorization: "Bearer " + token },
    cache: "no-store",
    credentials: "omit",
  });
  if (!resp.ok) throw await errorFrom(resp);
  return resp.json();
}

// fetchBlob reads a route as a Blob (a stored log, for download).
export async function fetchBlob(path, signal) {
  const resp = await fetch(path, { headers: headers(), cache: "no-store", credentials: "omit", signal });
  if (!resp.ok) throw await errorFrom(resp);
  return resp.blob();
}

// follow reads a server-sent event stream with fetch (EventSource cannot send the
// Authorization header, and the token must not go into the URL). It calls onLine for each data
// event and onEnd with the end event's data; it resolves when the stream closes and rejects
// with an ApiError when the route refuses. Abort with signal to stop.
export async function follow(path, { onLine, onEnd, signal }) {
  const resp = await fetch(path, {
    headers: headers({ Accept: "text/event-stream" }),
    cache: "no-store",
    credentials: "omit",
    signal,
  });
  if (!resp.ok) throw await errorFrom(resp);
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += value;
    let i;
    while ((i = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      let event = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith(":")) continue; // a heartbeat comment
        const c = line.indexOf(":");
        const field = c < 0 ? line : line.slice(0, c);
        let v = c < 0 ? "" : line.slice(c + 1);
        if (v.startsWith(" ")) v = v.slice(1);
        if (field === "event") event = v;
        else if (field === "data") data.push(v);
      }
      if (!data.length && event === "message") continue;
      if (event === "end") {
        let end = {};
        try {
          end = JSON.parse(data.join("\n"));
        } catch {
          // keep {}
        }
        onEnd && onEnd(end);
      } else {
        onLine(data.join("\n"));
      }
    }
  }
}
