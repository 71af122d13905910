// The dashboard: sign-in, then the pages below, chosen by the URL fragment.
import { html, render, useState, useEffect, useCallback } from "./lib.js";
import { getToken, setToken, signOut, whoami, setUnauthorizedHandler } from "./api.js";
import { useRoute, href, go } from "./router.js";
import { ErrorBox, PageTitle } from "./components.js";
import { JobsPage } from "./jobs.js";
import { JobPage } from "./job.js";
import { SubmitPage } from "./submit.js";
import { ImagesPage, SitesPage, RefdataPage, AdminJobPage } from "./admin.js";

function SignIn({ onSignedIn, reason }) {
  const [token, setTok] = useState("");
  const [error, setError] = useState(reason || null);
  const [busy, setBusy] = useState(false);
  const submit = async (e) => {
    e.preventDefault();
    const t = token.trim();
    if (!t) {
      setError(new Error("Paste your KBase token first."));
      return;
    }
    setBusy(true);
    setError(null);
    try {
      const me = await whoami(t);
      setToken(t);
      setTok("");
      onSignedIn(me);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return html`<main id="main" class="signin">
    <${PageTitle}>Sign in to the CDM Task Service<//>
    <p>Paste a KBase token. It is kept in this browser tab only (session storage) and sent to this
      service's API in the Authorization header; closing the tab or signing out forgets it.</p>
    <form onSubmit=${submit}>
      <label for="token">KBase token</label>
      <input id="token" name="token" type="password" autocomplete="off" spellcheck="false" required
        value=${token} onInput=${(e) => setTok(e.target.value)} />
      <button type="submit" disabled=${busy}>${busy ? "Checking…" : "Sign in"}</button>
    </form>
    <${ErrorBox} error=${error} />
  </main>`;
}

function NotFound() {
  return html`<main id="main"><${PageTitle}>Page not found<//><p><a href="#/jobs">Your jobs</a></p></main>`;
}

function AdminOnly() {
  return html`<main id="main"><${PageTitle}>Administrators only<//>
    <p class="error" role="alert">This page is for service administrators; your account is not one.</p>
    <p><a href="#/jobs">Your jobs</a></p></main>`;
}

function Nav({ me, route, onSignOut }) {
  const admin = me.roles.includes("full_admin");
  const cur = route.parts[0] === "admin" ? "admin/" + (route.parts[1] || "") : route.parts[0] || "jobs";
  const link = (to, key, text) =>
    html`<li><a href=${to} aria-current=${cur === key ? "page" : undefined}>${text}</a></li>`;
  return html`<header class="top">
    <a class="skip" href="#main" onClick=${(e) => {
      e.preventDefault();
      const m = document.getElementById("main");
      if (m) {
        m.setAttribute("tabindex", "-1");
        m.focus();
      }
    }}>Skip to content</a>
    <span class="brand">CTS</span>
    <nav aria-label="Main">
      <ul>
        ${link("#/jobs", "jobs", "Jobs")}
        ${link("#/submit", "submit", "Submit")}
        ${admin && link("#/admin/images", "admin/images", "Images")}
        ${admin && link("#/admin/sites", "admin/sites", "Sites")}
        ${admin && link("#/admin/refdata", "admin/refdata", "Reference data")}
      </ul>
    </nav>
    <span class="who">Signed in as <strong data-testid="user">${me.user}</strong>${admin ? " (admin)" : ""}</span>
    <button type="button" onClick=${onSignOut}>Sign out</button>
  </header>`;
}

function Page({ route, me }) {
  const admin = me.roles.includes("full_admin");
  const [a, b, c] = route.parts;
  if (a === "jobs" && !b) return html`<${JobsPage} me=${me} query=${route.query} />`;
  if (a === "jobs" && b) return html`<${JobPage} me=${me} id=${b} />`;
  if (a === "submit") return html`<${SubmitPage} me=${me} />`;
  if (a === "admin") {
    if (!admin) return html`<${AdminOnly} />`;
    if (b === "images") return html`<${ImagesPage} />`;
    if (b === "sites") return html`<${SitesPage} />`;
    if (b === "refdata") return html`<${RefdataPage} />`;
    if (b === "jobs" && c) return html`<${AdminJobPage} id=${c} />`;
  }
  return html`<${NotFound} />`;
}

function App() {
  const route = useRoute();
  const [me, setMe] = useState(null);
  const [checking, setChecking] = useState(!!getToken());
  const [reason, setReason] = useState(null);

  const doSignOut = useCallback((why) => {
    signOut();
    setMe(null);
    setReason(why || null);
  }, []);

  useEffect(() => {
    setUnauthorizedHandler((err) => doSignOut(new Error("The service refused your token (" + err.message + "). Sign in again.")));
    const t = getToken();
    if (!t) return;
    whoami(t)
      .then(setMe)
      .catch((err) => doSignOut(err))
      .finally(() => setChecking(false));
  }, []);

  if (checking && !me) return html`<p class="boot" role="status">Checking your session…</p>`;
  if (!me) {
    return html`<${SignIn} reason=${reason} onSignedIn=${(m) => {
      setReason(null);
      setMe(m);
      if (!location.hash || location.hash === "#/signin") go("/jobs");
    }} />`;
  }
  return html`<${Nav} me=${me} route=${route} onSignOut=${() => {
      doSignOut(null);
      go("/jobs");
    }} />
    <${Page} key=${route.path} route=${route} me=${me} />`;
}

const root = document.getElementById("app");
root.textContent = "";
render(html`<${App} />`, root);
export { href };
