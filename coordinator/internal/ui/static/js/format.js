// Formatting shared by the pages: times in the browser's zone with the UTC original in a
// tooltip, byte sizes in binary units, durations.

export const STATES = [
  "created",
  "download_submitted",
  "job_submitting",
  "job_submitted",
  "upload_submitting",
  "upload_submitted",
  "complete",
  "error_processing_submitting",
  "error_processing_submitted",
  "error",
  "canceling",
  "canceled",
];

export const TERMINAL = new Set(["complete", "error", "canceled"]);

export function isTerminal(state) {
  return TERMINAL.has(state);
}

// stateClass groups states for their badge colour.
export function stateClass(state) {
  if (state === "complete") return "ok";
  if (state === "error" || state.startsWith("error_")) return "bad";
  if (state === "canceled" || state === "canceling") return "off";
  return "run";
}

export function fmtTime(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (isNaN(d)) return iso;
  return d.toLocaleString(undefined, {
    year: "numeric",
    month: "short",
    day: "numeric",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
  });
}

export function fmtBytes(n) {
  if (n === undefined || n === null) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = Number(n);
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return (u === 0 ? String(v) : v.toFixed(1)) + " " + units[u];
}

// lastTime is a job's last transition time (its place in the job lists).
export function lastTime(job) {
  const t = job.transition_times || [];
  return t.length ? t[t.length - 1].time : "";
}

export function firstTime(job) {
  const t = job.transition_times || [];
  return t.length ? t[0].time : "";
}

// imageRef shows an image as name:tag, else name@digest (shortened).
export function imageRef(img) {
  if (!img) return "";
  if (img.tag) return `${img.name}:${img.tag}`;
  return `${img.name}@${(img.digest || "").slice(0, 19)}…`;
}

// shellWord quotes an argument for display when the shell would split or expand it.
export function shellWord(s) {
  if (s === "") return "''";
  if (/^[\w@%+=:,./-]+$/.test(s)) return s;
  return "'" + s.replaceAll("'", "'\\''") + "'";
}

// localInputValue turns an ISO time into a datetime-local field value, and back.
export function toLocalInput(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (isNaN(d)) return "";
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

export function fromLocalInput(v) {
  if (!v) return "";
  const d = new Date(v);
  return isNaN(d) ? "" : d.toISOString();
}
