// The submit form: a site and a registered image, inputs chosen by browsing S3 (GET
// /s3/list), the output folder, resources and the job's parameters. "Check" sends the job to
// POST /jobs/preview, which validates it exactly as a submit would (the same messages) and
// shows each container's argument lines; the JSON to be sent is shown as it is edited.
import { html, useState, useEffect, useMemo } from "./lib.js";
import { api } from "./api.js";
import { go } from "./router.js";
import { ErrorBox, Loading, PageTitle } from "./components.js";
import { fmtBytes, shellWord } from "./format.js";

// parseArgs reads the arguments field: one argument a line; a line starting with "{" is a
// parameter object in JSON ({"type": "input_files", ...}), any other line a literal string.
export function parseArgs(text) {
  const out = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i];
    if (l.trim() === "") continue;
    if (l.trim().startsWith("{")) {
      try {
        out.push(JSON.parse(l));
      } catch (e) {
        throw new Error(`Argument line ${i + 1} starts with { but is not JSON: ${e.message}`);
      }
    } else {
      out.push(l);
    }
  }
  return out;
}

// parseEnv reads NAME=value lines (a value starting with "{" is a parameter object in JSON).
export function parseEnv(text) {
  const env = {};
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i];
    if (l.trim() === "") continue;
    const eq = l.indexOf("=");
    if (eq < 1) throw new Error(`Environment line ${i + 1} is not NAME=value`);
    const k = l.slice(0, eq).trim();
    const v = l.slice(eq + 1);
    if (v.trim().startsWith("{")) {
      try {
        env[k] = JSON.parse(v);
      } catch (e) {
        throw new Error(`Environment line ${i + 1}: the value starts with { but is not JSON: ${e.message}`);
      }
    } else {
      env[k] = v;
    }
  }
  return env;
}

// number returns a field as a number when it is one, else the text (the API words the error).
function number(v) {
  const t = String(v).trim();
  return t !== "" && !isNaN(Number(t)) ? Number(t) : t;
}

function buildJob(f) {
  const params = {};
  if (f.input_mount_point.trim()) params.input_mount_point = f.input_mount_point.trim();
  if (f.output_mount_point.trim()) params.output_mount_point = f.output_mount_point.trim();
  if (f.refdata_mount_point.trim()) params.refdata_mount_point = f.refdata_mount_point.trim();
  const args = parseArgs(f.args);
  if (args.length) params.args = args;
  const env = parseEnv(f.env);
  if (Object.keys(env).length) params.environment = env;
  if (f.declobber) params.declobber = true;
  const job = { cluster: f.cluster, image: f.image, params, input_files: f.inputs, output_dir: f.output_dir.trim() };
  for (const k of ["num_containers", "cpus", "memory", "runtime"]) {
    if (String(f[k]).trim() !== "") job[k] = number(f[k]);
  }
  return job;
}

const INITIAL = {
  cluster: "",
  image: "",
  inputs: [],
  output_dir: "",
  num_containers: "1",
  cpus: "1",
  memory: "100MB",
  runtime: "PT10M",
  input_mount_point: "",
  output_mount_point: "",
  refdata_mount_point: "",
  args: "",
  env: "",
  declobber: false,
};

export function SubmitPage({ me }) {
  const [sites, setSites] = useState(null);
  const [images, setImages] = useState(null);
  const [f, setF] = useState(INITIAL);
  const [loadError, setLoadError] = useState(null);
  const [error, setError] = useState(null);
  const [preview, setPreview] = useState(null);
  const [busy, setBusy] = useState("");

  useEffect(() => {
    Promise.all([api("GET", "/sites"), api("GET", "/images?limit=1000")])
      .then(([s, i]) => {
        const active = s.sites.filter((x) => x.active);
        setSites(s.sites);
        setImages(i.data || []);
        setF((old) => ({ ...old, cluster: old.cluster || (active[0] || s.sites[0] || {}).cluster || "" }));
      })
      .catch(setLoadError);
  }, []);

  const set = (k) => (e) => {
    const v = e.target.type === "checkbox" ? e.target.checked : e.target.value;
    setF((old) => ({ ...old, [k]: v }));
    setPreview(null);
  };

  let job = null;
  let buildError = null;
  try {
    job = buildJob(f);
  } catch (e) {
    buildError = e;
  }
  const json = job ? JSON.stringify(job, null, 2) : "";

  const check = async () => {
    setError(null);
    setPreview(null);
    if (buildError) return setError(buildError);
    setBusy("check");
    try {
      setPreview(await api("POST", "/jobs/preview", json));
    } catch (err) {
      setError(err);
    } finally {
      setBusy("");
    }
  };
  const submit = async (e) => {
    e.preventDefault();
    setError(null);
    if (buildError) return setError(buildError);
    setBusy("submit");
    try {
      const r = await api("POST", "/jobs", json);
      go("/jobs/" + encodeURIComponent(r.job_id));
    } catch (err) {
      setError(err);
    } finally {
      setBusy("");
    }
  };

  if (loadError) return html`<main id="main"><${PageTitle}>Submit a job<//><${ErrorBox} error=${loadError} /></main>`;
  if (!sites || !images) return html`<main id="main"><${PageTitle}>Submit a job<//><${Loading} what="sites and images" /></main>`;
  const img = images.find((i) => imageValue(i) === f.image);
  const site = sites.find((s) => s.cluster === f.cluster);

  return html`<main id="main" class="submit">
    <${PageTitle}>Submit a job<//>
    <form onSubmit=${submit} aria-describedby="submit-help">
      <p id="submit-help" class="muted">Fields follow the job JSON of the API (docs/users.md). "Check" validates the
        job as a submit would, without submitting it, and shows each container's command line.</p>
      <fieldset>
        <legend>Where and what</legend>
        <div class="field">
          <label for="s-site">Site</label>
          <select id="s-site" value=${f.cluster} onChange=${set("cluster")} required>
            ${sites.map((s) => html`<option value=${s.cluster} disabled=${!s.active}>${s.cluster}${s.active ? "" : " (inactive)"}</option>`)}
          </select>
          ${site && html`<span class="hint">at most ${site.cpus_per_node} CPUs, ${site.memory_per_node_gb} GB, ${site.max_runtime_min} minutes</span>`}
        </div>
        <div class="field">
          <label for="s-image">Image</label>
          <select id="s-image" value=${f.image} onChange=${set("image")} required>
            <option value="">choose a registered image</option>
            ${images.map((i) => html`<option value=${imageValue(i)}>${imageValue(i)}</option>`)}
          </select>
          ${img && img.usage_notes && html`<p class="hint notes">${img.usage_notes}</p>`}
        </div>
      </fieldset>
      <${InputPicker} me=${me} inputs=${f.inputs} setInputs=${(inputs) => {
        setF((old) => ({ ...old, inputs }));
        setPreview(null);
      }} />
      <fieldset>
        <legend>Outputs and resources</legend>
        <div class="field">
          <label for="s-out">Output folder (bucket/path)</label>
          <input id="s-out" value=${f.output_dir} onInput=${set("output_dir")} required placeholder="cts-data/me/results/" />
        </div>
        <div class="row">
          <div class="field"><label for="s-n">Containers</label><input id="s-n" inputmode="numeric" value=${f.num_containers} onInput=${set("num_containers")} size="4" /></div>
          <div class="field"><label for="s-cpus">CPUs each</label><input id="s-cpus" inputmode="numeric" value=${f.cpus} onInput=${set("cpus")} size="4" /></div>
          <div class="field"><label for="s-mem">Memory each</label><input id="s-mem" value=${f.memory} onInput=${set("memory")} size="8" aria-describedby="s-mem-h" /><span id="s-mem-h" class="hint">bytes or 10MB, 1.5GiB</span></div>
          <div class="field"><label for="s-rt">Runtime</label><input id="s-rt" value=${f.runtime} onInput=${set("runtime")} size="8" aria-describedby="s-rt-h" /><span id="s-rt-h" class="hint">seconds or PT30M</span></div>
        </div>
      </fieldset>
      <fieldset>
        <legend>Parameters</legend>
        <div class="row">
          <div class="field"><label for="s-imp">Input mount point</label><input id="s-imp" value=${f.input_mount_point} onInput=${set("input_mount_point")} placeholder="/input_files" /></div>
          <div class="field"><label for="s-omp">Output mount point</label><input id="s-omp" value=${f.output_mount_point} onInput=${set("output_mount_point")} placeholder="/output_files" /></div>
          <div class="field"><label for="s-rmp">Reference data mount point</label><input id="s-rmp" value=${f.refdata_mount_point} onInput=${set("refdata_mount_point")} /></div>
        </div>
        <div class="field">
          <label for="s-args">Arguments, one a line</label>
          <textarea id="s-args" rows="5" value=${f.args} onInput=${set("args")} aria-describedby="s-args-h" spellcheck="false"></textarea>
          <span id="s-args-h" class="hint">A plain line is one argument. A line starting with { is a parameter, e.g.
            <code>{"type": "input_files", "input_files_format": "space_separated_list"}</code> or <code>{"type": "container_number"}</code>.</span>
          <span class="inserts">
            <button type="button" onClick=${() => append(setF, setPreview, '{"type": "input_files", "input_files_format": "space_separated_list"}')}>Add input files</button>
            <button type="button" onClick=${() => append(setF, setPreview, '{"type": "container_number"}')}>Add container number</button>
          </span>
        </div>
        <div class="field">
          <label for="s-env">Environment, NAME=value a line</label>
          <textarea id="s-env" rows="2" value=${f.env} onInput=${set("env")} spellcheck="false"></textarea>
        </div>
        <div class="check">
          <input id="s-declobber" type="checkbox" checked=${f.declobber} onChange=${set("declobber")} />
          <label for="s-declobber">Declobber (each container writes to its own subfolder)</label>
        </div>
      </fieldset>
      <div class="actions">
        <button type="button" onClick=${check} disabled=${!!busy}>${busy === "check" ? "Checking…" : "Check"}</button>
        <button type="submit" class="primary" disabled=${!!busy}>${busy === "submit" ? "Submitting…" : "Submit job"}</button>
      </div>
      <${ErrorBox} error=${error || buildError} />
    </form>
    <section aria-labelledby="h-json">
      <h2 id="h-json">The JSON sent</h2>
      <pre class="json" tabindex="0" data-testid="job-json">${json}</pre>
    </section>
    ${preview &&
    html`<section aria-labelledby="h-preview" data-testid="preview">
      <h2 id="h-preview">What each container runs</h2>
      <p role="status">The service accepted this job (not submitted yet).</p>
      ${preview.containers.map(
        (c) => html`<div class="preview">
          <h3>Container ${c.container}</h3>
          <pre class="cmd">${c.command.map(shellWord).join(" ")}</pre>
          ${c.env.length ? html`<pre class="env">${c.env.join("\n")}</pre>` : null}
          <p class="hint">Inputs: ${c.input_files.join(", ")}</p>
        </div>`,
      )}
    </section>`}
  </main>`;
}

function append(setF, setPreview, line) {
  setF((old) => ({ ...old, args: (old.args && !old.args.endsWith("\n") ? old.args + "\n" : old.args) + line + "\n" }));
  setPreview(null);
}

function imageValue(i) {
  return i.tag ? `${i.name}:${i.tag}` : `${i.name}@${i.digest}`;
}

// InputPicker browses S3 below a prefix (GET /s3/list: only what the user may read) and adds
// files to the job's inputs.
function InputPicker({ me, inputs, setInputs }) {
  const start = (me.allowed_paths && me.allowed_paths[0] && me.allowed_paths[0].path) || "";
  const [prefix, setPrefix] = useState(start);
  const [listing, setListing] = useState(null);
  const [chosen, setChosen] = useState(new Set());
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);

  const list = async (p, next) => {
    setError(null);
    setBusy(true);
    try {
      const q = new URLSearchParams({ prefix: p, limit: "200" });
      if (next) q.set("next", next);
      const r = await api("GET", "/s3/list?" + q);
      setListing(next && listing ? { ...r, folders: listing.folders.concat(r.folders), files: listing.files.concat(r.files) } : r);
      if (!next) setChosen(new Set());
      setPrefix(p);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  const up = () => {
    const t = prefix.replace(/\/$/, "");
    const i = t.lastIndexOf("/");
    if (i >= 0) list(t.slice(0, i + 1));
  };
  const toggle = (file) => {
    const n = new Set(chosen);
    n.has(file) ? n.delete(file) : n.add(file);
    setChosen(n);
  };
  const add = (files) => {
    const have = new Set(inputs);
    setInputs(inputs.concat(files.filter((x) => !have.has(x))));
    setChosen(new Set());
  };
  return html`<fieldset class="picker">
    <legend>Input files (${inputs.length})</legend>
    <div class="row">
      <div class="field grow">
        <label for="s-prefix">S3 prefix</label>
        <input id="s-prefix" value=${prefix} onInput=${(e) => setPrefix(e.target.value)} placeholder="bucket/path/"
          onKeyDown=${(e) => {
            if (e.key === "Enter") {
              e.preventDefault();
              list(prefix);
            }
          }} />
      </div>
      <button type="button" onClick=${() => list(prefix)} disabled=${busy}>List</button>
      <button type="button" onClick=${up} disabled=${busy || !prefix.includes("/")}>Up</button>
    </div>
    <${ErrorBox} error=${error} />
    ${listing &&
    html`<div class="listing" aria-label=${"Contents of " + listing.prefix} role="group">
      ${listing.folders.length === 0 && listing.files.length === 0 && html`<p class="muted">Nothing here.</p>`}
      <ul class="folders">
        ${listing.folders.map((d) => html`<li><button type="button" class="link" onClick=${() => list(d)}><span aria-hidden="true">📁 </span>${d.slice(listing.prefix.lastIndexOf("/") + 1)}</button></li>`)}
      </ul>
      <ul class="files">
        ${listing.files.map(
          (o, i) => html`<li>
            <input type="checkbox" id=${"pick-" + i} checked=${chosen.has(o.file)} onChange=${() => toggle(o.file)} />
            <label for=${"pick-" + i} class="mono">${o.file.slice(listing.prefix.lastIndexOf("/") + 1)}</label>
            <span class="muted">${fmtBytes(o.size)}</span>
          </li>`,
        )}
      </ul>
      ${listing.next && html`<button type="button" onClick=${() => list(listing.prefix, listing.next)}>More…</button>`}
      <div class="actions">
        <button type="button" disabled=${chosen.size === 0} onClick=${() => add([...chosen])}>Add selected (${chosen.size})</button>
        <button type="button" disabled=${listing.files.length === 0} onClick=${() => add(listing.files.map((o) => o.file))}>Add all ${listing.files.length} files listed</button>
      </div>
    </div>`}
    ${inputs.length > 0 &&
    html`<ol class="chosen" aria-label="Chosen input files">
      ${inputs.map(
        (p) => html`<li><span class="mono">${p}</span>
          <button type="button" class="link" aria-label=${"Remove " + p} onClick=${() => setInputs(inputs.filter((x) => x !== p))}>remove</button></li>`,
      )}
    </ol>`}
  </fieldset>`;
}
