"use strict";
// Renders an OpenAPI 3.0 document as HTML. Self-contained: no libraries, no network other
// than fetching the document. Every text from the document is inserted as text, never as HTML.
(function () {
  var spec = null;
  var schemas = {};

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function add(parent) {
    for (var i = 1; i < arguments.length; i++) {
      var c = arguments[i];
      if (c === null || c === undefined || c === false) continue;
      parent.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    }
    return parent;
  }

  // inline renders `code` and **bold** spans of one line of text.
  function inline(parent, text) {
    var re = /(`[^`]+`|\*\*[^*]+\*\*)/g, last = 0, m;
    while ((m = re.exec(text)) !== null) {
      add(parent, text.slice(last, m.index));
      if (m[0].charAt(0) === "`") add(parent, el("code", null, m[0].slice(1, -1)));
      else add(parent, el("strong", null, m[0].slice(2, -2)));
      last = m.index + m[0].length;
    }
    add(parent, text.slice(last));
    return parent;
  }

  // prose renders plain text: blank lines separate paragraphs, "* " / "- " lines are lists.
  function prose(text) {
    var d = el("div", "desc");
    if (!text) return d;
    String(text).split(/\n\s*\n/).forEach(function (block) {
      var lines = block.split("\n");
      if (lines.every(function (l) { return /^\s*[*-]\s+/.test(l) || /^\s{2,}\S/.test(l); }) && /^\s*[*-]\s+/.test(lines[0])) {
        var ul = el("ul"), li = null;
        lines.forEach(function (l) {
          if (/^\s*[*-]\s+/.test(l)) { li = el("li"); ul.appendChild(li); inline(li, l.replace(/^\s*[*-]\s+/, "")); }
          else inline(li, " " + l.trim());
        });
        d.appendChild(ul);
      } else {
        d.appendChild(inline(el("p"), lines.join(" ")));
      }
    });
    return d;
  }

  function refName(ref) {
    var p = "#/components/schemas/";
    return ref && ref.indexOf(p) === 0 ? decodeURIComponent(ref.slice(p.length)) : null;
  }

  // unwrap folds {allOf:[x], nullable, description...} into x plus annotations.
  function unwrap(s) {
    s = s || {};
    var ann = {};
    while (s.allOf && s.allOf.length === 1) {
      ["nullable", "description", "example", "default"].forEach(function (k) {
        if (s[k] !== undefined && ann[k] === undefined) ann[k] = s[k];
      });
      s = s.allOf[0] || {};
    }
    return { s: s, ann: ann };
  }

  function isComplex(s) {
    var u = unwrap(s).s;
    if (u.$ref) return true;
    if (u.properties || u.oneOf || u.anyOf || u.allOf) return true;
    if (u.type === "array") return isComplex(u.items);
    if (u.additionalProperties && typeof u.additionalProperties === "object") return isComplex(u.additionalProperties);
    return false;
  }

  function typeLabel(s) {
    var w = unwrap(s), u = w.s, span = el("span", "type mono");
    var nullable = w.ann.nullable || u.nullable;
    if (u.$ref) {
      var n = refName(u.$ref), a = el("a", null, n || u.$ref);
      a.href = "#schema-" + encodeURIComponent(n || "");
      span.appendChild(a);
    } else if (u.oneOf || u.anyOf) {
      (u.oneOf || u.anyOf).forEach(function (x, i) { if (i) add(span, " | "); span.appendChild(typeLabel(x)); });
    } else if (u.type === "array") {
      add(span, "array[", typeLabel(u.items), "]");
    } else if (u.type === "object" && !u.properties && u.additionalProperties !== undefined) {
      var ap = u.additionalProperties;
      add(span, "map[string]", ap === true || (typeof ap === "object" && !Object.keys(ap).length) ? "any" : typeLabel(ap));
    } else if (u.type) {
      add(span, u.type + (u.format ? " (" + u.format + ")" : ""));
    } else if (u.allOf) {
      add(span, "all of");
    } else {
      add(span, "any");
    }
    if (nullable) add(span, " | null");
    return span;
  }

  function constraints(s) {
    var w = unwrap(s), u = w.s, parts = [];
    var t = u.type === "array" && u.items ? unwrap(u.items).s : u;
    if (t.enum) parts.push("one of: " + t.enum.map(function (v) { return JSON.stringify(v); }).join(", "));
    if (t.pattern) parts.push("pattern: " + t.pattern);
    if (t.minimum !== undefined) parts.push("≥ " + t.minimum);
    if (t.maximum !== undefined) parts.push("≤ " + t.maximum);
    if (t.minLength !== undefined || t.maxLength !== undefined)
      parts.push("length " + (t.minLength !== undefined ? t.minLength : 0) + "–" + (t.maxLength !== undefined ? t.maxLength : "∞"));
    if (u.minItems !== undefined || u.maxItems !== undefined)
      parts.push("items " + (u.minItems !== undefined ? u.minItems : 0) + "–" + (u.maxItems !== undefined ? u.maxItems : "∞"));
    var def = w.ann.default !== undefined ? w.ann.default : u.default;
    if (def !== undefined) parts.push("default: " + JSON.stringify(def));
    var ex = w.ann.example !== undefined ? w.ann.example : u.example;
    if (ex !== undefined) parts.push("example: " + JSON.stringify(ex));
    if (!parts.length) return null;
    return el("div", "constraint mono", parts.join(" · "));
  }

  function descOf(s) {
    var w = unwrap(s);
    return w.ann.description !== undefined ? w.ann.description : w.s.description;
  }

  // schemaBody renders the inside of a schema: properties, items, alternatives. stack holds
  // the component names being expanded, to mark recursion.
  function schemaBody(s, stack) {
    var u = unwrap(s).s, box = el("div", "schema");
    if (u.$ref) {
      var n = refName(u.$ref);
      if (stack.indexOf(n) >= 0) { add(box, el("div", "muted", "↻ " + n + " (recursive, see above)")); return box; }
      var target = schemas[n];
      if (!target) { add(box, el("div", "error", "unresolved $ref " + u.$ref)); return box; }
      if (target.description) box.appendChild(prose(target.description));
      box.appendChild(schemaBody(target, stack.concat([n])));
      return box;
    }
    if (u.properties) {
      var req = u.required || [];
      Object.keys(u.properties).forEach(function (name) { box.appendChild(propRow(name, u.properties[name], req.indexOf(name) >= 0, stack)); });
      if (!Object.keys(u.properties).length) add(box, el("div", "muted", "empty object"));
    }
    var alts = u.oneOf || u.anyOf;
    if (alts) {
      add(box, el("div", "muted", u.oneOf ? "one of:" : "any of:"));
      alts.forEach(function (a, i) { box.appendChild(propRow("option " + (i + 1), a, false, stack, true)); });
    }
    if (u.allOf) {
      add(box, el("div", "muted", "all of:"));
      u.allOf.forEach(function (a, i) { box.appendChild(propRow("part " + (i + 1), a, false, stack, true)); });
    }
    // Arrays and maps of objects show the objects' fields directly; other complex items
    // (unions, nested arrays) get a row of their own.
    [["items", u.type === "array" ? u.items : null],
     ["values", typeof u.additionalProperties === "object" ? u.additionalProperties : null]].forEach(function (x) {
      if (!x[1] || !isComplex(x[1])) return;
      var inner = unwrap(x[1]).s;
      if (inner.$ref || inner.properties) box.appendChild(schemaBody(x[1], stack));
      else box.appendChild(propRow(x[0], x[1], false, stack, true));
    });
    return box;
  }

  // propRow renders one property: name, type, required, description, and an expandable
  // body (built when first opened, so recursive schemas cost nothing until asked for).
  function propRow(name, s, required, stack, synthetic) {
    var row = el("div", "prop");
    add(row, el("span", synthetic ? "muted" : "name mono", name), " ", typeLabel(s));
    if (required) add(row, el("span", "req", "required"));
    var d = descOf(s);
    if (d) row.appendChild(prose(d));
    var c = constraints(s);
    if (c) row.appendChild(c);
    if (isComplex(s)) row.appendChild(lazy(s, stack, "fields"));
    return row;
  }

  function lazy(s, stack, label) {
    var det = el("details", "sub"), sum = el("summary", null, label);
    det.appendChild(sum);
    det.addEventListener("toggle", function () {
      if (det.open && !det.dataset.done) { det.dataset.done = "1"; det.appendChild(schemaBody(s, stack)); }
    });
    return det;
  }

  // schemaBlock renders a top-level (body or response) schema, expanded one level.
  function schemaBlock(s) {
    var d = el("div");
    add(d, typeLabel(s));
    var c = constraints(s);
    if (c) d.appendChild(c);
    if (isComplex(s)) d.appendChild(schemaBody(s, []));
    return d;
  }

  function methodBadge(m) {
    var known = ["get", "post", "put", "delete", "patch"];
    return el("span", "m " + (known.indexOf(m) >= 0 ? m : "other"), m);
  }

  function operation(path, method, op) {
    var det = el("details", "op" + (op.deprecated ? " deprecated" : ""));
    det.id = "op-" + (op.operationId || method + path);
    det.dataset.search = (method + " " + path + " " + (op.summary || "") + " " + (op.tags || []).join(" ")).toLowerCase();
    var sum = el("summary");
    add(sum, methodBadge(method), el("span", "path mono", path), el("span", "sum", op.summary || ""));
    var auth = op["x-cts-auth"];
    if (auth) add(sum, el("span", "badge auth" + (auth === "none" ? " none" : ""), auth === "none" ? "no auth" : auth.split("|").join(" or ")));
    else if (op.security && op.security.length) add(sum, el("span", "badge auth", "token"));
    det.appendChild(sum);
    var body = el("div", "opbody");
    det.appendChild(body);
    var built = false;
    det.addEventListener("toggle", function () {
      if (!det.open || built) return;
      built = true;
      if (op.description) body.appendChild(prose(op.description));
      add(body, el("div", "muted mono", "operationId: " + (op.operationId || "")));
      if (op.parameters && op.parameters.length) {
        add(body, el("h4", null, "Parameters"));
        var t = el("table"), hr = el("tr");
        ["Name", "In", "Type", "Description"].forEach(function (h) { hr.appendChild(el("th", null, h)); });
        t.appendChild(hr);
        op.parameters.forEach(function (p) {
          var tr = el("tr"), n = el("td");
          add(n, el("span", "name mono", p.name));
          if (p.required) add(n, el("span", "req", "required"));
          add(tr, n, el("td", "muted", p.in), add(el("td"), typeLabel(p.schema || {})));
          var dd = el("td");
          if (p.description) dd.appendChild(prose(p.description));
          var c = constraints(p.schema || {});
          if (c) dd.appendChild(c);
          tr.appendChild(dd);
          t.appendChild(tr);
        });
        body.appendChild(t);
      }
      if (op.requestBody) {
        add(body, el("h4", null, "Request body" + (op.requestBody.required ? "" : " (optional)")));
        Object.keys(op.requestBody.content || {}).forEach(function (ct) {
          add(body, el("div", "muted mono", ct), schemaBlock(op.requestBody.content[ct].schema || {}));
        });
      }
      add(body, el("h4", null, "Responses"));
      Object.keys(op.responses || {}).forEach(function (code) {
        var r = op.responses[code], div = el("div", "prop");
        add(div, el("span", "status s" + code.charAt(0), code), " ", inline(el("span"), r.description || ""));
        if (r.headers) Object.keys(r.headers).forEach(function (h) {
          add(div, add(el("div", "constraint"), "header ", el("code", null, h), ": " + (r.headers[h].description || "")));
        });
        Object.keys(r.content || {}).forEach(function (ct) {
          var s = r.content[ct].schema || {};
          var box = add(el("div"), el("span", "muted mono", ct + " "), typeLabel(s));
          if (code.charAt(0) === "2" && isComplex(s)) box.appendChild(schemaBody(s, []));
          else if (isComplex(s)) box.appendChild(lazy(s, [], "fields"));
          div.appendChild(box);
        });
        body.appendChild(div);
      });
      body.appendChild(tryIt(path, method, op));
    });
    return det;
  }

  // The API's base URL: the folder of the document, so the page works behind a proxy that
  // serves the API under a prefix.
  function apiBase() {
    return new URL(".", new URL(document.body.dataset.specUrl, location.href)).href.replace(/\/$/, "");
  }

  // tryIt builds the form that sends a request to the operation with the token of the header
  // (kept in the page's memory only) and shows the answer. Values are sent as typed.
  function tryIt(path, method, op) {
    var box = el("div", "tryit");
    box.dataset.op = method + " " + path;
    add(box, el("h4", null, "Try it"));
    var inputs = [];
    (op.parameters || []).forEach(function (p) {
      if (p.in !== "path" && p.in !== "query") return;
      var s = unwrap(p.schema || {}).s, id = "try-" + (op.operationId || method + path) + "-" + p.in + "-" + p.name;
      var input;
      if (s.enum || s.type === "boolean") {
        input = el("select");
        add(input, el("option", null, ""));
        (s.enum || ["true", "false"]).forEach(function (v) { var o = el("option", null, String(v)); o.value = String(v); input.appendChild(o); });
      } else {
        input = el("input");
        input.type = "text";
        input.spellcheck = false;
        if (s.type) input.placeholder = s.type + (p.required ? " (required)" : "");
      }
      input.id = id;
      input.dataset.in = p.in;
      input.dataset.name = p.name;
      var label = el("label", "mono", p.name + (p.required ? " *" : ""));
      label.htmlFor = id;
      add(box, add(el("div", "field"), label, input));
      inputs.push(input);
    });
    var bodyInput = null;
    if (op.requestBody) {
      bodyInput = el("textarea", "mono");
      bodyInput.spellcheck = false;
      bodyInput.setAttribute("aria-label", "Request body (JSON)");
      bodyInput.placeholder = "Request body (JSON)";
      box.appendChild(bodyInput);
    }
    var send = el("button", "send", "Send");
    send.type = "button";
    var result = el("div", "result");
    result.setAttribute("aria-live", "polite");
    add(box, send, result);
    send.addEventListener("click", function () {
      var url = path, query = new URLSearchParams(), missing = [];
      inputs.forEach(function (i) {
        var v = i.value;
        if (i.dataset.in === "path") {
          if (v === "") missing.push(i.dataset.name);
          url = url.replace("{" + i.dataset.name + "}", v.split("/").map(encodeURIComponent).join("/"));
        } else if (v !== "") {
          query.append(i.dataset.name, v);
        }
      });
      result.textContent = "";
      delete result.dataset.status;
      if (missing.length) {
        add(result, el("div", "error", "Fill in " + missing.join(", ") + " first."));
        result.dataset.status = "incomplete";
        return;
      }
      var qs = query.toString();
      var full = apiBase() + url + (qs ? "?" + qs : "");
      var headers = { Accept: "application/json" };
      var token = document.getElementById("token").value.trim();
      if (token) headers.Authorization = "Bearer " + token;
      var init = { method: method.toUpperCase(), headers: headers, credentials: "omit", cache: "no-store" };
      if (bodyInput && bodyInput.value.trim() !== "") {
        headers["Content-Type"] = "application/json";
        init.body = bodyInput.value;
      }
      var curl = "curl -X " + init.method + (token ? " -H \"Authorization: Bearer $CTS_TOKEN\"" : "") +
        (init.body ? " -H \"Content-Type: application/json\" --data-binary @body.json" : "") + " '" + full.replace(/'/g, "'\\''") + "'";
      add(result, el("div", "muted mono", curl));
      send.disabled = true;
      var ctrl = new AbortController();
      fetch(full, Object.assign(init, { signal: ctrl.signal }))
        .then(function (r) {
          var ct = r.headers.get("Content-Type") || "";
          add(result, add(el("div"), el("span", "status s" + String(r.status).charAt(0), String(r.status)), " " + r.statusText + " ",
            el("span", "muted mono", ct)));
          result.dataset.status = String(r.status);
          return readSome(r, ctrl).then(function (text) {
            if (ct.indexOf("application/json") === 0) {
              try { text = JSON.stringify(JSON.parse(text), null, 2); } catch (e) { /* shown as it came */ }
            }
            add(result, el("pre", "mono", text === "" ? "(no body)" : text));
          });
        })
        .catch(function (e) {
          add(result, el("div", "error", "The request failed: " + e.message));
          result.dataset.status = "failed";
        })
        .then(function () { send.disabled = false; });
    });
    return box;
  }

  // readSome reads a response's body up to 256 KiB, and a stream (server-sent events) for up
  // to 5 seconds, then stops it: the page shows a sample, not an endless follow.
  function readSome(r, ctrl) {
    if (!r.body || !r.body.getReader) return r.text();
    var reader = r.body.getReader(), dec = new TextDecoder(), out = "", limit = 256 << 10;
    var stream = (r.headers.get("Content-Type") || "").indexOf("text/event-stream") === 0;
    var timer = stream ? setTimeout(function () { ctrl.abort(); }, 5000) : null;
    function pump() {
      return reader.read().then(function (x) {
        if (x.done) return out;
        out += dec.decode(x.value, { stream: true });
        if (out.length >= limit) { ctrl.abort(); return out.slice(0, limit) + "\n… (cut at 256 KiB)"; }
        return pump();
      }, function () { return out + (stream ? "\n… (stopped following after 5 seconds)" : ""); });
    }
    return pump().then(function (t) { if (timer) clearTimeout(timer); return t; });
  }

  function render() {
    var info = spec.info || {};
    document.title = (info.title || "API") + " – API docs";
    document.getElementById("title").textContent = info.title || "API";
    document.getElementById("ver").textContent = "v" + (info.version || "?") + " · OpenAPI " + (spec.openapi || "?");
    schemas = (spec.components && spec.components.schemas) || {};
    var main = document.getElementById("main"), nav = document.getElementById("navlist");
    main.textContent = "";
    if (info.description) main.appendChild(prose(info.description));
    if (spec.servers && spec.servers.length) add(main, add(el("div", "muted"), "Server: ", el("code", null, spec.servers[0].url)));

    // Group operations by their first tag, in document order.
    var groups = [], byTag = {};
    var methods = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];
    Object.keys(spec.paths || {}).forEach(function (path) {
      var item = spec.paths[path];
      Object.keys(item).forEach(function (m) {
        if (methods.indexOf(m) < 0) return;
        var op = item[m], tag = (op.tags && op.tags[0]) || "Other";
        if (!byTag[tag]) { byTag[tag] = []; groups.push(tag); }
        byTag[tag].push([path, m, op]);
      });
    });
    var order = (spec.tags || []).map(function (t) { return t.name; });
    groups.sort(function (a, b) {
      var ia = order.indexOf(a), ib = order.indexOf(b);
      return (ia < 0 ? 1e9 : ia) - (ib < 0 ? 1e9 : ib);
    });
    groups.forEach(function (tag) {
      var sec = el("section", "tag");
      add(sec, el("h2", null, tag));
      var tagInfo = (spec.tags || []).filter(function (t) { return t.name === tag; })[0];
      if (tagInfo && tagInfo.description) sec.appendChild(prose(tagInfo.description));
      add(nav, el("h3", null, tag));
      byTag[tag].forEach(function (x) {
        var op = operation(x[0], x[1], x[2]);
        sec.appendChild(op);
        var a = el("a");
        a.href = "#" + op.id;
        a.dataset.search = op.dataset.search;
        add(a, methodBadge(x[1]), el("span", "p mono", x[0]));
        a.title = x[2].summary || "";
        a.addEventListener("click", function () { op.open = true; });
        nav.appendChild(a);
      });
      main.appendChild(sec);
    });

    var names = Object.keys(schemas).sort();
    if (names.length) {
      var ss = el("section", "tag schemas");
      add(ss, el("h2", null, "Schemas"));
      add(nav, el("h3", null, "Schemas"));
      names.forEach(function (n) {
        var det = el("details", "comp");
        det.id = "schema-" + encodeURIComponent(n);
        add(det, add(el("summary"), n + " ", typeLabel(schemas[n])));
        var done = false;
        det.addEventListener("toggle", function () {
          if (!det.open || done) return;
          done = true;
          if (schemas[n].description) det.appendChild(prose(schemas[n].description));
          var c = constraints(schemas[n]);
          if (c) det.appendChild(c);
          det.appendChild(schemaBody(schemas[n], [n]));
        });
        ss.appendChild(det);
        var a = el("a");
        a.href = "#" + det.id;
        a.dataset.search = ("schema " + n).toLowerCase();
        add(a, el("span", "p mono", n));
        a.addEventListener("click", function () { det.open = true; });
        nav.appendChild(a);
      });
      main.appendChild(ss);
    }
    openHash();
  }

  function openHash() {
    if (!location.hash) return;
    var t = document.getElementById(decodeURIComponent(location.hash.slice(1)));
    if (!t) t = document.getElementById(location.hash.slice(1));
    if (t && t.tagName === "DETAILS") { t.open = true; t.scrollIntoView(); }
  }

  function setup() {
    var filter = document.getElementById("filter");
    filter.addEventListener("input", function () {
      var q = filter.value.trim().toLowerCase();
      document.querySelectorAll("[data-search]").forEach(function (e) {
        e.classList.toggle("hidden", q !== "" && e.dataset.search.indexOf(q) < 0);
      });
    });
    document.getElementById("expand").addEventListener("click", function () {
      document.querySelectorAll("details.op").forEach(function (d) { d.open = true; });
    });
    document.getElementById("collapse").addEventListener("click", function () {
      document.querySelectorAll("details.op,details.comp").forEach(function (d) { d.open = false; });
    });
    window.addEventListener("hashchange", openHash);
    var url = document.body.dataset.specUrl;
    document.getElementById("raw").href = url;
    fetch(url, { headers: { Accept: "application/json" } })
      .then(function (r) {
        if (!r.ok) throw new Error("GET " + url + ": HTTP " + r.status);
        return r.json();
      })
      .then(function (j) { spec = j; render(); document.body.dataset.rendered = "true"; })
      .catch(function (e) {
        var main = document.getElementById("main");
        main.textContent = "";
        add(main, el("div", "error", "Cannot load the API description: " + e.message));
        document.body.dataset.rendered = "error";
      });
  }

  setup();
})();
