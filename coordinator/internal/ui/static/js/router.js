// Hash routing: #/jobs?state=error is the jobs page with a filter. Hash routes need nothing from
// the server, and the fragment never leaves the browser.
import { useState, useEffect } from "./lib.js";

export function parseHash(hash) {
  const h = (hash || "").replace(/^#/, "") || "/jobs";
  const q = h.indexOf("?");
  const path = q < 0 ? h : h.slice(0, q);
  const query = new URLSearchParams(q < 0 ? "" : h.slice(q + 1));
  return { path, query, parts: path.split("/").filter(Boolean).map(decodeURIComponent) };
}

export function useRoute() {
  const [route, setRoute] = useState(() => parseHash(location.hash));
  useEffect(() => {
    const on = () => setRoute(parseHash(location.hash));
    addEventListener("hashchange", on);
    return () => removeEventListener("hashchange", on);
  }, []);
  return route;
}

export function go(path, query) {
  const qs = query ? new URLSearchParams(query).toString() : "";
  location.hash = "#" + path + (qs ? "?" + qs : "");
}

export function href(path, query) {
  const qs = query ? new URLSearchParams(query).toString() : "";
  return "#" + path + (qs ? "?" + qs : "");
}
