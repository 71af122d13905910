// The view library: Preact with hooks, and htm's tagged templates bound to it (html`<p>…</p>`
// instead of JSX, so the page needs no build step).
import { h, render, Fragment } from "../vendor/preact.mjs";
import { useState, useEffect, useRef, useCallback, useMemo } from "../vendor/hooks.mjs";
import htm from "../vendor/htm.mjs";

export const html = htm.bind(h);
export { h, render, Fragment, useState, useEffect, useRef, useCallback, useMemo };
