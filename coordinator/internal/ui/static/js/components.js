// Small shared components.
import { html, useState, useEffect, useRef } from "./lib.js";
import { stateClass } from "./format.js";

export function ErrorBox({ error }) {
  if (!error) return null;
  return html`<div class="error" role="alert">
    <strong>Error</strong>
    <pre class="msg">${String(error.message || error)}</pre>
  </div>`;
}

export function Notice({ text }) {
  return html`<p class="notice" role="status" aria-live="polite">${text || ""}</p>`;
}

export function Loading({ what }) {
  return html`<p class="loading" role="status">Loading ${what || ""}…</p>`;
}

export function StateBadge({ state }) {
  if (!state) return null;
  return html`<span class=${"badge " + stateClass(state)} data-state=${state}>${state.replaceAll("_", " ")}</span>`;
}

// PageTitle is the page's h1; it takes the focus when the page changes, so that a screen
// reader announces the new page and keyboard users start from it.
export function PageTitle({ children }) {
  const ref = useRef(null);
  useEffect(() => {
    if (ref.current) ref.current.focus({ preventScroll: true });
  }, []);
  return html`<h1 tabindex="-1" ref=${ref}>${children}</h1>`;
}

// CopyLine shows a command with a button that copies it.
export function CopyLine({ text, label }) {
  const [copied, setCopied] = useState("");
  const ref = useRef(null);
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(text);
      setCopied("Copied");
    } catch {
      // No clipboard (an insecure origin): select it for the user to copy.
      ref.current.select();
      setCopied("Selected: press Ctrl+C");
    }
  };
  return html`<span class="copyline">
    <input ref=${ref} readonly value=${text} aria-label=${label} size=${Math.min(Math.max(text.length, 20), 90)} />
    <button type="button" onClick=${copy} aria-label=${"Copy " + label}>Copy</button>
    <span class="copied" role="status" aria-live="polite">${copied}</span>
  </span>`;
}

// ConfirmButton asks again in place (no browser dialog) before running a destructive action.
export function ConfirmButton({ label, confirm, onConfirm, disabled, className }) {
  const [asking, setAsking] = useState(false);
  const [busy, setBusy] = useState(false);
  const yes = useRef(null);
  useEffect(() => {
    if (asking && yes.current) yes.current.focus();
  }, [asking]);
  if (!asking) {
    return html`<button type="button" class=${className || "danger"} disabled=${disabled || busy}
      onClick=${() => setAsking(true)}>${label}</button>`;
  }
  return html`<span class="confirm" role="group" aria-label=${confirm}>
    <span>${confirm}</span>
    <button type="button" class="danger" ref=${yes} disabled=${busy} onClick=${async () => {
      setBusy(true);
      try {
        await onConfirm();
      } finally {
        setBusy(false);
        setAsking(false);
      }
    }}>Yes, ${label.toLowerCase()}</button>
    <button type="button" onClick=${() => setAsking(false)}>No</button>
  </span>`;
}
