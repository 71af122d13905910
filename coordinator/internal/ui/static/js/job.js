// A job's page: its state and times, each container's state, exit code and transfer
// progress, the outputs with their CRC64/NVME and a `cts cp` line each, live logs per
// container, and cancel. It polls while the job runs and stops when the job has ended.
import { html, useState, useEffect, useRef } from "./lib.js";
import { api, follow, fetchBlob } from "./api.js";
import { href } from "./router.js";
import { ErrorBox, Loading, PageTitle, StateBadge, CopyLine, ConfirmButton } from "./components.js";
import { fmtTime, fmtBytes, isTerminal, firstTime, lastTime } from "./format.js";

const POLL_MS = 2000;
const MAX_LINES = 5000;

export function JobPage({ me, id }) {
  const admin = me.roles.includes("full_admin");
  const [job, setJob] = useState(null);
  const [subjobs, setSubjobs] = useState([]);
  const [progress, setProgress] = useState({});
  const [error, setError] = useState(null);
  const [actionError, setActionError] = useState(null);
  const [tick, setTick] = useState(0);
  const base = "/jobs/" + encodeURIComponent(id);

  useEffect(() => {
    let stop = false;
    let timer = null;
    const ctl = new AbortController();
    const load = async () => {
      try {
        const j = await api("GET", base, undefined, { signal: ctl.signal });
        if (stop) return;
        setJob(j);
        setError(null);
        const [c, p] = await Promise.all([
          api("GET", base + "/containers", undefined, { signal: ctl.signal }).catch(() => null),
          isTerminal(j.state) ? null : api("GET", base + "/progress", undefined, { signal: ctl.signal }).catch(() => null),
        ]);
        if (stop) return;
        if (c) setSubjobs(c.subjobs || []);
        const byNum = {};
        for (const cp of (p && p.containers) || []) byNum[cp.container] = cp;
        setProgress(byNum);
        if (!isTerminal(j.state)) timer = setTimeout(load, POLL_MS);
      } catch (err) {
        if (stop || err.name === "AbortError") return;
        setError(err);
        // A job that exists but could not be read now is tried again; a refusal is final.
        if (!err.status || err.status >= 500) timer = setTimeout(load, POLL_MS * 2);
      }
    };
    load();
    return () => {
      stop = true;
      clearTimeout(timer);
      ctl.abort();
    };
  }, [id, tick]);

  if (!job) {
    return html`<main id="main"><${PageTitle}>Job ${id}<//>
      ${error ? html`<${ErrorBox} error=${error} />` : html`<${Loading} what="the job" />`}</main>`;
  }
  const input = job.job_input;
  const cancel = async () => {
    setActionError(null);
    try {
      await api("PUT", base + "/cancel");
      setTick(tick + 1);
    } catch (err) {
      setActionError(err);
    }
  };
  return html`<main id="main" class="job">
    <${PageTitle}>Job <span class="mono">${job.id}</span><//>
    <p class="state-line">
      <span>State: <${StateBadge} state=${job.state} /></span>
      ${!isTerminal(job.state) && job.state !== "canceling" &&
      html`<${ConfirmButton} label="Cancel job" confirm="Cancel this job? Its containers are stopped." onConfirm=${cancel} />`}
      ${admin && html`<a href=${href("/admin/jobs/" + encodeURIComponent(job.id))}>Admin view</a>`}
    </p>
    <${ErrorBox} error=${actionError} />
    <${ErrorBox} error=${error} />
    ${job.error &&
    html`<div class="error joberror" role="alert"><strong>The job failed</strong><pre class="msg">${job.error}</pre></div>`}
    <section aria-labelledby="h-summary">
      <h2 id="h-summary">Summary</h2>
      <dl class="facts">
        <dt>User</dt><dd>${job.user}</dd>
        <dt>Image</dt><dd class="mono">${job.image.name}${job.image.tag ? ":" + job.image.tag : ""}<br />${job.image.digest}</dd>
        <dt>Site</dt><dd>${input.cluster}</dd>
        <dt>Containers</dt><dd>${input.num_containers} × ${input.cpus} CPU, ${fmtBytes(input.memory)}, at most ${input.runtime}</dd>
        <dt>Inputs</dt><dd>${job.input_file_count} file${job.input_file_count === 1 ? "" : "s"}</dd>
        <dt>Output folder</dt><dd class="mono">${input.output_dir}</dd>
        <dt>Submitted</dt><dd><time datetime=${firstTime(job)}>${fmtTime(firstTime(job))}</time></dd>
        <dt>Last change</dt><dd><time datetime=${lastTime(job)}>${fmtTime(lastTime(job))}</time></dd>
      </dl>
    </section>
    <section aria-labelledby="h-states">
      <h2 id="h-states">States</h2>
      <ol class="transitions">
        ${(job.transition_times || []).map(
          (t) => html`<li><${StateBadge} state=${t.state} /> <time datetime=${t.time}>${fmtTime(t.time)}</time></li>`,
        )}
      </ol>
    </section>
    <${Containers} job=${job} subjobs=${subjobs} progress=${progress} />
    <${Outputs} job=${job} />
    <${Logs} job=${job} />
  </main>`;
}

function ProgressCell({ p }) {
  if (!p) return html`<span class="muted">—</span>`;
  const phase = p.phase === "download" ? "Downloading inputs" : "Uploading outputs";
  const label = `${phase}: ${fmtBytes(p.bytes_done)} of ${fmtBytes(p.bytes_total)}, ${p.files_done} of ${p.files_total} files`;
  return html`<span class="progress">
    <progress max=${Math.max(p.bytes_total, 1)} value=${p.bytes_done} aria-label=${label}></progress>
    <span>${label}</span>
  </span>`;
}

function Containers({ job, subjobs, progress }) {
  const rows = [];
  for (let n = 0; n < job.job_input.num_containers; n++) {
    const sj = subjobs.find((s) => s.sub_id === n) || {};
    rows.push(html`<tr data-container=${n}>
      <th scope="row">${n}</th>
      <td><${StateBadge} state=${sj.state} /></td>
      <td class="exit">${sj.exit_code === null || sj.exit_code === undefined ? "—" : sj.exit_code}</td>
      <td>${isTerminal(job.state) ? html`<span class="muted">—</span>` : html`<${ProgressCell} p=${progress[n]} />`}</td>
    </tr>`);
  }
  return html`<section aria-labelledby="h-containers">
    <h2 id="h-containers">Containers</h2>
    <table class="containers">
      <thead><tr><th scope="col">Container</th><th scope="col">State</th><th scope="col">Exit code</th><th scope="col">Transfer</th></tr></thead>
      <tbody>${rows}</tbody>
    </table>
  </section>`;
}

function Outputs({ job }) {
  const outs = job.outputs || [];
  if (!outs.length) {
    return html`<section aria-labelledby="h-outputs"><h2 id="h-outputs">Outputs</h2>
      <p class="muted">${job.state === "complete" ? "This job wrote no output files." : "Outputs appear when the job completes."}</p></section>`;
  }
  return html`<section aria-labelledby="h-outputs">
    <h2 id="h-outputs">Outputs (${outs.length})</h2>
    <table class="outputs">
      <thead><tr><th scope="col">File</th><th scope="col">CRC64/NVME</th><th scope="col">Copy it here</th></tr></thead>
      <tbody>
        ${outs.map((o) => {
          const name = o.file.slice(o.file.lastIndexOf("/") + 1);
          return html`<tr data-output=${o.file}>
            <td class="mono">${o.file}</td>
            <td class="mono crc">${o.crc64nvme}</td>
            <td><${CopyLine} text=${`cts cp ${o.file} ./${name}`} label=${"cts cp command for " + name} /></td>
          </tr>`;
        })}
      </tbody>
    </table>
  </section>`;
}

// Logs shows one container's stdout or stderr: live (server-sent events read with fetch) while
// the job runs, the stored log once it has ended. Pause freezes the view; the lines that
// arrive meanwhile are kept and shown on resume.
function Logs({ job }) {
  const [container, setContainer] = useState(0);
  const [stream, setStream] = useState("stdout");
  const [lines, setLines] = useState([]);
  const [paused, setPaused] = useState(false);
  const [status, setStatus] = useState("");
  const [error, setError] = useState(null);
  const pending = useRef([]);
  const pausedRef = useRef(false);
  const box = useRef(null);
  const ended = isTerminal(job.state);
  const base = `/jobs/${encodeURIComponent(job.id)}/log/${container}/${stream}`;

  const push = (l) => {
    pending.current.push(l);
    if (!pausedRef.current) flush();
  };
  const flush = () => {
    const add = pending.current;
    pending.current = [];
    if (add.length) setLines((old) => old.concat(add).slice(-MAX_LINES));
  };

  const loadStored = async (signal) => {
    setStatus("Loading the stored log…");
    try {
      const text = await fetchStoredText(base, signal);
      const all = text.split("\n");
      if (all[all.length - 1] === "") all.pop();
      setLines(all.slice(-MAX_LINES));
      setStatus(all.length > MAX_LINES ? `Stored log: the last ${MAX_LINES} of ${all.length} lines (download it for all)` : "Stored log");
    } catch (err) {
      if (err.name !== "AbortError") setError(err);
      setStatus("");
    }
  };

  useEffect(() => {
    const ctl = new AbortController();
    setLines([]);
    setError(null);
    pending.current = [];
    if (ended) {
      loadStored(ctl.signal);
      return () => ctl.abort();
    }
    setStatus("Following live…");
    follow(base + "/live", {
      signal: ctl.signal,
      onLine: push,
      onEnd: (e) => {
        setStatus(`The job ended (${e.state || "ended"}).`);
      },
    })
      .then(() => {
        if (!ctl.signal.aborted) setStatus((s) => (s.startsWith("The job ended") ? s : "The live stream closed; reload the page to follow again."));
      })
      .catch((err) => {
        if (err.name !== "AbortError") {
          setError(err);
          setStatus("");
        }
      });
    return () => ctl.abort();
  }, [base, ended]);

  useEffect(() => {
    if (!paused && box.current) box.current.scrollTop = box.current.scrollHeight;
  }, [lines, paused]);

  const togglePause = () => {
    pausedRef.current = !paused;
    setPaused(!paused);
    if (paused) flush();
  };

  const download = async () => {
    try {
      const blob = await fetchBlob(base);
      const url = URL.createObjectURL(blob);
      const a = document.createElement("a");
      a.href = url;
      a.download = `${job.id}-container-${container}-${stream}.txt`;
      document.body.appendChild(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
    } catch (err) {
      setError(err);
    }
  };

  const options = [];
  for (let n = 0; n < job.job_input.num_containers; n++) options.push(html`<option value=${n}>${n}</option>`);
  return html`<section aria-labelledby="h-logs" class="logs">
    <h2 id="h-logs">Logs</h2>
    <div class="logbar">
      <label for="log-container">Container</label>
      <select id="log-container" value=${container} onChange=${(e) => setContainer(Number(e.target.value))}>${options}</select>
      <label for="log-stream">Stream</label>
      <select id="log-stream" value=${stream} onChange=${(e) => setStream(e.target.value)}>
        <option value="stdout">stdout</option>
        <option value="stderr">stderr</option>
      </select>
      ${!ended && html`<button type="button" aria-pressed=${paused ? "true" : "false"} onClick=${togglePause}>${paused ? "Resume" : "Pause"}</button>`}
      <button type="button" onClick=${download} disabled=${!ended}
        title=${ended ? "" : "The complete log is stored when the job ends"}>Download</button>
      <span class="muted" role="status" aria-live="polite" data-testid="log-status">${status}${paused && pending.current.length ? ` (${pending.current.length} new lines held)` : ""}</span>
    </div>
    <${ErrorBox} error=${error} />
    <pre class="log" ref=${box} tabindex="0" aria-label=${`Container ${container} ${stream}`} data-testid="log">${lines.join("\n")}</pre>
  </section>`;
}

async function fetchStoredText(path, signal) {
  const blob = await fetchBlob(path, signal);
  return blob.text();
}
