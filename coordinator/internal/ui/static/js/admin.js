// The administrators' pages: images (register, usage notes, delete), sites (limits, active
// flag), reference data (state per site, recover) and a job's admin view (launcher details,
// runner status, admin errors, metadata). The API refuses all of these to other users; the
// app only hides the links.
import { html, useState, useEffect } from "./lib.js";
import { api } from "./api.js";
import { href } from "./router.js";
import { ErrorBox, Loading, PageTitle, StateBadge, ConfirmButton, Notice } from "./components.js";
import { fmtTime } from "./format.js";

// useLoad runs load on mount and whenever reload is called; it returns [data, error, reload].
function useLoad(load, deps = []) {
  const [data, setData] = useState(null);
  const [error, setError] = useState(null);
  const [n, setN] = useState(0);
  useEffect(() => {
    let live = true;
    setError(null);
    load()
      .then((d) => live && setData(d))
      .catch((e) => live && setError(e));
    return () => {
      live = false;
    };
  }, [n, ...deps]);
  return [data, error, () => setN((x) => x + 1)];
}

function imageRef(i) {
  return i.tag ? `${i.name}:${i.tag}` : `${i.name}@${i.digest}`;
}

export function ImagesPage() {
  const [data, error, reload] = useLoad(() => api("GET", "/images?limit=1000"));
  const [ref, setRef] = useState("");
  const [notes, setNotes] = useState("");
  const [urls, setUrls] = useState("");
  const [refdataID, setRefdataID] = useState("");
  const [mount, setMount] = useState("");
  const [formError, setFormError] = useState(null);
  const [notice, setNotice] = useState("");
  const [busy, setBusy] = useState(false);

  const register = async (e) => {
    e.preventDefault();
    setFormError(null);
    setNotice("");
    setBusy(true);
    try {
      const q = new URLSearchParams();
      if (refdataID.trim()) q.set("refdata_id", refdataID.trim());
      if (mount.trim()) q.set("default_refdata_mount_point", mount.trim());
      const body = {};
      if (notes.trim()) body.usage_notes = notes;
      const u = urls.split("\n").map((x) => x.trim()).filter(Boolean);
      if (u.length) body.urls = u;
      const img = await api("POST", "/admin/images/" + ref.trim() + (q.toString() ? "?" + q : ""), body);
      setNotice(`Registered ${img.name}@${img.digest}.`);
      setRef("");
      setNotes("");
      setUrls("");
      reload();
    } catch (err) {
      setFormError(err);
    } finally {
      setBusy(false);
    }
  };
  const del = async (i) => {
    setFormError(null);
    try {
      await api("DELETE", "/admin/images/" + i.name + "@" + i.digest);
      setNotice(`Deleted ${imageRef(i)}.`);
      reload();
    } catch (err) {
      setFormError(err);
    }
  };
  return html`<main id="main">
    <${PageTitle}>Images<//>
    <form onSubmit=${register} class="register" aria-labelledby="h-register">
      <h2 id="h-register">Register an image</h2>
      <div class="field"><label for="i-ref">Image (name:tag or name@sha256:…)</label>
        <input id="i-ref" value=${ref} onInput=${(e) => setRef(e.target.value)} required spellcheck="false" /></div>
      <div class="field"><label for="i-notes">Usage notes</label>
        <textarea id="i-notes" rows="3" value=${notes} onInput=${(e) => setNotes(e.target.value)}></textarea></div>
      <div class="field"><label for="i-urls">Information URLs, one a line</label>
        <textarea id="i-urls" rows="2" value=${urls} onInput=${(e) => setUrls(e.target.value)}></textarea></div>
      <div class="row">
        <div class="field"><label for="i-refdata">Reference data ID</label><input id="i-refdata" value=${refdataID} onInput=${(e) => setRefdataID(e.target.value)} /></div>
        <div class="field"><label for="i-mount">Default reference data mount point</label><input id="i-mount" value=${mount} onInput=${(e) => setMount(e.target.value)} /></div>
      </div>
      <button type="submit" class="primary" disabled=${busy}>${busy ? "Registering…" : "Register"}</button>
      <${Notice} text=${notice} />
      <${ErrorBox} error=${formError} />
    </form>
    <h2>Registered images</h2>
    <${ErrorBox} error=${error} />
    ${!data && !error && html`<${Loading} what="images" />`}
    ${data &&
    html`<table class="images">
      <thead><tr><th scope="col">Image</th><th scope="col">Digest</th><th scope="col">Entrypoint</th><th scope="col">Reference data</th>
        <th scope="col">Registered</th><th scope="col">Usage notes</th><th scope="col"><span class="sr-only">Actions</span></th></tr></thead>
      <tbody>
        ${data.data.map(
          (i) => html`<tr data-image=${imageRef(i)}>
            <td class="mono">${i.name}${i.tag ? ":" + i.tag : ""}</td>
            <td class="mono digest">${i.digest}</td>
            <td class="mono">${(i.entrypoint || []).join(" ")}</td>
            <td>${i.refdata_id || ""}${i.default_refdata_mount_point ? " at " + i.default_refdata_mount_point : ""}</td>
            <td>${i.registered_by}, <time datetime=${i.registered_on}>${fmtTime(i.registered_on)}</time></td>
            <td class="notes">${i.usage_notes || ""}${(i.urls || []).map((u) => html`<br /><a href=${u} rel="noopener noreferrer">${u}</a>`)}</td>
            <td><${ConfirmButton} label="Delete" confirm=${"Delete " + imageRef(i) + "?"} onConfirm=${() => del(i)} /></td>
          </tr>`,
        )}
      </tbody>
    </table>`}
  </main>`;
}

export function SitesPage() {
  const [data, error, reload] = useLoad(() => api("GET", "/sites"));
  const [actionError, setActionError] = useState(null);
  const [notice, setNotice] = useState("");
  const setActive = async (site, active) => {
    setActionError(null);
    try {
      await api(active ? "PUT" : "DELETE", `/admin/sites/${encodeURIComponent(site)}/active`);
      setNotice(`Site ${site} is now ${active ? "active" : "inactive"}.`);
      reload();
    } catch (err) {
      setActionError(err);
    }
  };
  return html`<main id="main">
    <${PageTitle}>Sites<//>
    <p class="muted">An inactive site refuses new jobs; running jobs go on.</p>
    <${Notice} text=${notice} />
    <${ErrorBox} error=${actionError || error} />
    ${!data && !error && html`<${Loading} what="sites" />`}
    ${data &&
    html`<table class="sites">
      <thead><tr><th scope="col">Site</th><th scope="col">Nodes</th><th scope="col">CPUs per node</th><th scope="col">Memory per node</th>
        <th scope="col">Longest runtime</th><th scope="col">Active</th><th scope="col">Notes</th><th scope="col"><span class="sr-only">Actions</span></th></tr></thead>
      <tbody>
        ${data.sites.map(
          (s) => html`<tr data-site=${s.cluster}>
            <th scope="row">${s.cluster}</th>
            <td>${s.nodes ?? "—"}</td>
            <td>${s.cpus_per_node}</td>
            <td>${s.memory_per_node_gb} GB</td>
            <td>${s.max_runtime_min} min</td>
            <td>${s.active ? "yes" : "no"}</td>
            <td>${(s.notes || []).join(" ")}</td>
            <td>${s.active
              ? html`<${ConfirmButton} label="Deactivate" confirm=${"Deactivate " + s.cluster + "? New jobs are refused."} onConfirm=${() => setActive(s.cluster, false)} />`
              : html`<button type="button" onClick=${() => setActive(s.cluster, true)}>Activate</button>`}</td>
          </tr>`,
        )}
      </tbody>
    </table>`}
  </main>`;
}

export function RefdataPage() {
  const [data, error, reload] = useLoad(() => api("GET", "/refdata"));
  const [details, setDetails] = useState({});
  const [actionError, setActionError] = useState(null);
  const [notice, setNotice] = useState("");
  const recover = async (id, site) => {
    setActionError(null);
    try {
      await api("PUT", `/admin/refdata/${encodeURIComponent(id)}/${encodeURIComponent(site)}/recover`);
      setNotice(`Staging ${id} again at ${site}.`);
      reload();
    } catch (err) {
      setActionError(err);
    }
  };
  const show = async (id) => {
    try {
      const d = await api("GET", "/admin/refdata/" + encodeURIComponent(id));
      setDetails((old) => ({ ...old, [id]: d }));
    } catch (err) {
      setActionError(err);
    }
  };
  return html`<main id="main">
    <${PageTitle}>Reference data<//>
    <p class="muted">Register reference data with <code>cts refdata register</code>; each active site stages it.</p>
    <${Notice} text=${notice} />
    <${ErrorBox} error=${actionError || error} />
    ${!data && !error && html`<${Loading} what="reference data" />`}
    ${data && data.data.length === 0 && html`<p>No reference data is registered.</p>`}
    ${data &&
    data.data.map((r) => {
      const d = details[r.id];
      const statuses = d ? d.statuses : r.statuses;
      return html`<section class="refdata" aria-labelledby=${"rd-" + r.id} data-refdata=${r.id}>
        <h2 id=${"rd-" + r.id} class="mono">${r.id}</h2>
        <dl class="facts">
          <dt>File</dt><dd class="mono">${r.file}</dd>
          <dt>CRC64/NVME</dt><dd class="mono">${r.crc64nvme}</dd>
          <dt>Unpack</dt><dd>${r.unpack ? "yes" : "no"}</dd>
          <dt>Registered</dt><dd>${r.registered_by}, ${fmtTime(r.registered_on)}</dd>
        </dl>
        <table>
          <thead><tr><th scope="col">Site</th><th scope="col">State</th><th scope="col">Since</th><th scope="col">Error</th><th scope="col"><span class="sr-only">Actions</span></th></tr></thead>
          <tbody>
            ${statuses.map((s) => {
              const t = s.transition_times || [];
              return html`<tr>
                <th scope="row">${s.cluster}</th>
                <td><${StateBadge} state=${s.state} /></td>
                <td>${t.length ? fmtTime(t[t.length - 1].time) : ""}</td>
                <td>${s.error || ""}${s.admin_error ? html`<br /><span class="mono">${s.admin_error}</span>` : ""}</td>
                <td><${ConfirmButton} className="plain" label="Recover" confirm=${"Stage " + r.id + " again at " + s.cluster + "?"} onConfirm=${() => recover(r.id, s.cluster)} /></td>
              </tr>`;
            })}
          </tbody>
        </table>
        ${!d && html`<button type="button" onClick=${() => show(r.id)}>Show admin errors</button>`}
      </section>`;
    })}
  </main>`;
}

export function AdminJobPage({ id }) {
  const base = "/admin/jobs/" + encodeURIComponent(id);
  const [data, error, reload] = useLoad(async () => {
    const [job, subs] = await Promise.all([api("GET", base), api("GET", base + "/container")]);
    return { job, subs: subs.subjobs || [] };
  }, [id]);
  const [runner, setRunner] = useState({});
  const [actionError, setActionError] = useState(null);
  const [notice, setNotice] = useState("");
  const [metaKey, setMetaKey] = useState("");
  const [metaValue, setMetaValue] = useState("");

  const loadRunner = async (n) => {
    try {
      const r = await api("GET", `${base}/runner_status?container_number=${n}`);
      setRunner((old) => ({ ...old, [n]: r }));
    } catch (err) {
      setActionError(err);
    }
  };
  const act = async (f, msg) => {
    setActionError(null);
    setNotice("");
    try {
      await f();
      setNotice(msg);
      reload();
    } catch (err) {
      setActionError(err);
    }
  };
  if (!data) {
    return html`<main id="main"><${PageTitle}>Admin view of job ${id}<//>
      ${error ? html`<${ErrorBox} error=${error} />` : html`<${Loading} what="the job" />`}</main>`;
  }
  const { job, subs } = data;
  const meta = job.admin_meta || {};
  return html`<main id="main" class="job">
    <${PageTitle}>Admin view of job <span class="mono">${job.id}</span><//>
    <p class="state-line">State: <${StateBadge} state=${job.state} />
      <a href=${href("/jobs/" + encodeURIComponent(job.id))}>User view (logs, outputs)</a>
      ${!["complete", "error", "canceled", "canceling"].includes(job.state) &&
      html`<${ConfirmButton} label="Cancel job" confirm="Cancel this user's job?" onConfirm=${() =>
        act(() => api("PUT", base + "/cancel"), "Cancel requested.")} />`}
    </p>
    <${Notice} text=${notice} />
    <${ErrorBox} error=${actionError} />
    ${job.error && html`<div class="error" role="alert"><strong>User error</strong><pre class="msg">${job.error}</pre></div>`}
    ${job.admin_error && html`<div class="error" role="alert"><strong>Admin error</strong><pre class="msg">${job.admin_error}</pre></div>`}
    ${job.traceback && html`<details><summary>Traceback</summary><pre>${job.traceback}</pre></details>`}
    <section aria-labelledby="h-launch">
      <h2 id="h-launch">Launcher</h2>
      ${job.launch
        ? html`<dl class="facts">
            <dt>Site</dt><dd>${job.launch.site}</dd>
            <dt>Handle</dt><dd class="mono">${job.launch.handle}</dd>
            <dt>Attempt</dt><dd>${job.launch.attempt}</dd>
            ${job.launch.launched_at && html`<dt>Launched</dt><dd>${fmtTime(job.launch.launched_at)}</dd>`}
            ${(job.launch.retries || []).length > 0 && html`<dt>Earlier attempts</dt><dd><ul>${job.launch.retries.map((r) => html`<li>${r}</li>`)}</ul></dd>`}
          </dl>`
        : html`<p class="muted">Not launched yet.</p>`}
      <dl class="facts"><dt>User</dt><dd>${job.user}</dd><dt>Cleaned</dt><dd>${job.cleaned ? "yes" : "no"}</dd></dl>
    </section>
    <section aria-labelledby="h-trans">
      <h2 id="h-trans">Transitions</h2>
      <table><thead><tr><th scope="col">State</th><th scope="col">Time</th><th scope="col">Transition ID</th><th scope="col">Notification sent</th></tr></thead>
        <tbody>${(job.transition_times || []).map(
          (t) => html`<tr><td><${StateBadge} state=${t.state} /></td><td>${fmtTime(t.time)}</td><td class="mono">${t.trans_id}</td><td>${t.notif_sent ? "yes" : "no"}</td></tr>`,
        )}</tbody></table>
    </section>
    <section aria-labelledby="h-subs">
      <h2 id="h-subs">Containers</h2>
      <table><thead><tr><th scope="col">Container</th><th scope="col">State</th><th scope="col">Exit code</th><th scope="col">Admin error</th><th scope="col">Runner status</th></tr></thead>
        <tbody>${subs.map(
          (s) => html`<tr>
            <th scope="row">${s.sub_id}</th>
            <td><${StateBadge} state=${s.state} /></td>
            <td>${s.exit_code ?? "—"}</td>
            <td class="mono">${s.admin_error || ""}</td>
            <td>${runner[s.sub_id]
              ? html`<pre class="json">${JSON.stringify(runner[s.sub_id], null, 2)}</pre>`
              : html`<button type="button" onClick=${() => loadRunner(s.sub_id)}>Show runner status</button>`}</td>
          </tr>`,
        )}</tbody></table>
    </section>
    <section aria-labelledby="h-meta">
      <h2 id="h-meta">Admin metadata</h2>
      ${Object.keys(meta).length === 0 && html`<p class="muted">None.</p>`}
      <dl class="facts">${Object.entries(meta).map(
        ([k, v]) => html`<dt class="mono">${k}</dt><dd>${String(v)}
          <button type="button" class="link" aria-label=${"Remove metadata key " + k}
            onClick=${() => act(() => api("PUT", base + "/meta", { unset_keys: [k] }), `Removed ${k}.`)}>remove</button></dd>`,
      )}</dl>
      <form class="row" onSubmit=${(e) => {
        e.preventDefault();
        const num = metaValue.trim() !== "" && !isNaN(Number(metaValue)) ? Number(metaValue) : metaValue;
        act(() => api("PUT", base + "/meta", { set_fields: { [metaKey]: num } }), `Set ${metaKey}.`);
      }}>
        <div class="field"><label for="m-key">Key</label><input id="m-key" value=${metaKey} onInput=${(e) => setMetaKey(e.target.value)} required /></div>
        <div class="field"><label for="m-value">Value</label><input id="m-value" value=${metaValue} onInput=${(e) => setMetaValue(e.target.value)} /></div>
        <button type="submit">Set</button>
      </form>
    </section>
  </main>`;
}
