// The jobs list: filters (state, image, time range; for admins any user), newest first, paged
// through the API with limit and before (a keyset: fast however many jobs there are).
import { html, useState, useEffect } from "./lib.js";
import { api } from "./api.js";
import { go, href } from "./router.js";
import { ErrorBox, Loading, PageTitle, StateBadge } from "./components.js";
import { STATES, fmtTime, lastTime, imageRef, toLocalInput, fromLocalInput } from "./format.js";

export const PAGE_SIZE = 50;

// MAX_LIMIT is the API's largest page (limit).
const MAX_LIMIT = 1000;

// pageQuery builds the list query of one page. A page starts at cursor: jobs whose last
// transition is at or before cursor.time, minus cursor.seen (the jobs earlier pages showed
// that share that millisecond). It asks for those too, and one more job than a page, to know
// whether another page follows.
function pageQuery(filters, cursor, admin) {
  const q = new URLSearchParams();
  for (const k of ["state", "image", "after", "before"]) if (filters[k]) q.set(k, filters[k]);
  if (admin && filters.user) q.set("user", filters.user);
  let extra = 0;
  if (cursor) {
    q.set("before", new Date(Date.parse(cursor.time) + 1).toISOString());
    extra = cursor.seen.length;
  }
  q.set("limit", String(PAGE_SIZE + extra + 1));
  return q;
}

// nextCursor is where the page after jobs starts, jobs being the page that started at cursor.
// When that page ends in the cursor's own millisecond, the jobs earlier pages showed in it
// stay in seen: a millisecond shared by more than a page of jobs spans several pages.
function nextCursor(cursor, jobs) {
  const t = lastTime(jobs[jobs.length - 1]);
  const ms = Date.parse(t);
  const seen = jobs.filter((j) => Date.parse(lastTime(j)) === ms).map((j) => j.id);
  if (cursor && Date.parse(cursor.time) === ms) seen.push(...cursor.seen);
  return { time: t, seen };
}

export function JobsPage({ me, query }) {
  const admin = me.roles.includes("full_admin");
  const allUsers = admin && query.get("all") === "1";
  const filters = {
    state: query.get("state") || "",
    image: query.get("image") || "",
    after: query.get("after") || "",
    before: query.get("before") || "",
    user: query.get("user") || "",
  };
  const key = query.toString();
  // cursors[i] is where page i starts (page 0: no cursor).
  const [cursors, setCursors] = useState([null]);
  const [page, setPage] = useState(0);
  const [data, setData] = useState(null);
  const [error, setError] = useState(null);
  const [images, setImages] = useState([]);

  useEffect(() => {
    setCursors([null]);
    setPage(0);
  }, [key]);

  useEffect(() => {
    api("GET", "/images?limit=1000")
      .then((r) => setImages([...new Set((r.data || []).map((i) => i.name))]))
      .catch(() => {});
  }, []);

  useEffect(() => {
    const ctl = new AbortController();
    const cursor = cursors[page];
    setError(null);
    setData(null);
    const path = allUsers ? "/admin/jobs" : "/jobs";
    const q = pageQuery(filters, cursor, allUsers);
    if (Number(q.get("limit")) > MAX_LIMIT) {
      // The API cannot skip that many jobs of one millisecond: say so rather than skip them.
      setError(new Error(`More than ${MAX_LIMIT - PAGE_SIZE - 1} jobs changed at ${cursor.time}, the same millisecond: the list cannot page past them. Narrow the filters (state, image, time range) to see the older jobs.`));
      return () => ctl.abort();
    }
    api("GET", path + "?" + q, undefined, { signal: ctl.signal })
      .then((r) => {
        const seen = new Set(cursor ? cursor.seen : []);
        const jobs = r.jobs.filter((j) => !seen.has(j.id));
        setData({ jobs: jobs.slice(0, PAGE_SIZE), more: jobs.length > PAGE_SIZE });
      })
      .catch((err) => {
        if (err.name !== "AbortError") setError(err);
      });
    return () => ctl.abort();
  }, [key, page, cursors]);

  const apply = (e) => {
    e.preventDefault();
    const f = new FormData(e.target);
    const q = {};
    for (const k of ["state", "image", "user"]) {
      const v = (f.get(k) || "").trim();
      if (v) q[k] = v;
    }
    for (const k of ["after", "before"]) {
      const v = fromLocalInput(f.get(k));
      if (v) q[k] = v;
    }
    if (f.get("all")) q.all = "1";
    go("/jobs", q);
  };

  const older = () => {
    const c = nextCursor(cursors[page], data.jobs);
    const next = cursors.slice(0, page + 1);
    next.push(c);
    setCursors(next);
    setPage(page + 1);
  };

  return html`<main id="main">
    <${PageTitle}>${allUsers ? "All jobs" : "Your jobs"}<//>
    <form class="filters" onSubmit=${apply} aria-label="Filter jobs">
      <div>
        <label for="f-state">State</label>
        <select id="f-state" name="state" value=${filters.state}>
          <option value="">any</option>
          ${STATES.map((s) => html`<option value=${s}>${s}</option>`)}
        </select>
      </div>
      <div>
        <label for="f-image">Image</label>
        <input id="f-image" name="image" list="f-images" value=${filters.image} placeholder="name, name:tag or name@sha256:…" />
        <datalist id="f-images">${images.map((n) => html`<option value=${n} />`)}</datalist>
      </div>
      <div>
        <label for="f-after">Changed after</label>
        <input id="f-after" name="after" type="datetime-local" value=${toLocalInput(filters.after)} />
      </div>
      <div>
        <label for="f-before">Changed before</label>
        <input id="f-before" name="before" type="datetime-local" value=${toLocalInput(filters.before)} />
      </div>
      ${admin &&
      html`<div class="check">
          <input id="f-all" name="all" type="checkbox" checked=${allUsers} />
          <label for="f-all">All users</label>
        </div>
        <div>
          <label for="f-user">User (all users)</label>
          <input id="f-user" name="user" value=${filters.user} />
        </div>`}
      <div class="actions">
        <button type="submit">Apply filters</button>
        <a href="#/jobs">Clear</a>
      </div>
    </form>
    <${ErrorBox} error=${error} />
    ${!data && !error && html`<${Loading} what="jobs" />`}
    ${data &&
    html`<table class="jobs">
        <caption>
          ${data.jobs.length ? `Jobs ${page * PAGE_SIZE + 1}–${page * PAGE_SIZE + data.jobs.length}, most recently changed first` : "No jobs match."}
        </caption>
        <thead>
          <tr><th scope="col">Job</th>${allUsers && html`<th scope="col">User</th>`}<th scope="col">State</th><th scope="col">Image</th>
            <th scope="col">Site</th><th scope="col">Containers</th><th scope="col">Last change</th></tr>
        </thead>
        <tbody>
          ${data.jobs.map(
            (j) => html`<tr data-job=${j.id}>
              <td><a href=${href("/jobs/" + encodeURIComponent(j.id))} class="mono">${j.id}</a></td>
              ${allUsers && html`<td>${j.user}</td>`}
              <td><${StateBadge} state=${j.state} /></td>
              <td class="mono">${imageRef(j.image)}</td>
              <td>${j.job_input.cluster}</td>
              <td>${j.job_input.num_containers}</td>
              <td><time datetime=${lastTime(j)} title=${lastTime(j)}>${fmtTime(lastTime(j))}</time></td>
            </tr>`,
          )}
        </tbody>
      </table>
      <nav class="pager" aria-label="Pages">
        <button type="button" disabled=${page === 0} onClick=${() => setPage(page - 1)}>← Newer</button>
        <span>Page ${page + 1}</span>
        <button type="button" disabled=${!data.more} onClick=${older}>Older →</button>
      </nav>`}
  </main>`;
}
