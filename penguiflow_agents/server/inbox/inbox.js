// The approval inbox: sign in with a key, see what waits for you, decide it.
// Every value from the server is untrusted (tool arguments come from a model): it is only
// ever put in the page with textContent / value, never as markup.
"use strict";

(() => {
  const KEY_STORAGE = "penguiflow.inbox.key";
  const FOLD_CHARS = 160;        // longer values are folded (shown on demand)
  const FOLD_LINES = 4;          // so are values with more lines than this
  const RECONNECT_MAX_MS = 15000;
  const TICK_MS = 30000;         // ages and expiries are refreshed this often
  const SIGN_INS_MS = 5000;      // runs waiting for my sign-in are polled this often

  const $ = (id) => document.getElementById(id);
  const cards = new Map();       // approval id -> {doc, li}
  let stream = null;             // AbortController of the live stream
  let me = null;

  // -- key and requests ---------------------------------------------------------------------

  const key = () => sessionStorage.getItem(KEY_STORAGE);

  async function api(path, options = {}) {
    const headers = { Authorization: "Bearer " + key(), Accept: "application/json" };
    if (options.body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, {
      method: options.method || "GET",
      headers,
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
      signal: options.signal,
      cache: "no-store",
      credentials: "omit",
      referrerPolicy: "no-referrer",
    });
    let data = null;
    try { data = await response.json(); } catch (_) { data = null; }
    if (response.status === 401) {
      signOut(errorMessage(data, "The key was not accepted."));
      throw new Error("unauthorized");
    }
    if (!response.ok) {
      const err = new Error(errorMessage(data, `The server answered ${response.status}.`));
      err.status = response.status;
      throw err;
    }
    return data;
  }

  function errorMessage(data, fallback) {
    if (data && data.error && typeof data.error.message === "string") return data.error.message;
    return fallback;
  }

  // -- signing in and out -----------------------------------------------------------------

  async function signIn(event) {
    event.preventDefault();
    const input = $("key");
    const value = input.value.trim();
    input.value = "";
    $("sign-in-error").textContent = "";
    if (!value) {
      $("sign-in-error").textContent = "Enter a key.";
      input.focus();
      return;
    }
    sessionStorage.setItem(KEY_STORAGE, value);
    await start();
  }

  function signOut(message) {
    sessionStorage.removeItem(KEY_STORAGE);
    if (stream) stream.abort();
    stream = null;
    me = null;
    cards.clear();
    $("pending").replaceChildren();
    $("decided").replaceChildren();
    $("sign-in-list").replaceChildren();
    $("sign-ins").hidden = true;
    $("who").textContent = "";
    $("sign-out").hidden = true;
    $("inbox").hidden = true;
    $("sign-in").hidden = false;
    $("sign-in-error").textContent = message || "";
    $("key").focus();
  }

  async function start() {
    try {
      me = await api("/v1/me");
    } catch (err) {
      if (err.message !== "unauthorized") {
        $("sign-in-error").textContent = err.message;
        sessionStorage.removeItem(KEY_STORAGE);
      }
      return;
    }
    const roles = me.roles.length ? " · roles: " + me.roles.join(", ") : "";
    $("who").textContent = `Signed in as ${me.principal} (tenant ${me.tenant})${roles}`;
    $("sign-out").hidden = false;
    $("sign-in").hidden = true;
    $("inbox").hidden = false;
    $("pending-title").focus({ preventScroll: true });
    follow();
  }

  // -- the live list ------------------------------------------------------------------------

  // Runs of mine paused until I sign in to a source (an authorization wait): a link each.
  async function refreshSignIns() {
    const data = await api("/v1/auth/waiting");
    const items = (data && Array.isArray(data.waiting)) ? data.waiting : [];
    const list = $("sign-in-list");
    const rows = [];
    for (const w of items) {
      const li = document.createElement("li");
      li.className = "card";
      const source = String(w.source || "?");
      let href = null;
      try {
        const url = new URL(String(w.url || ""));
        if (url.protocol === "https:" || url.protocol === "http:") href = url.href;
      } catch (_) { href = null; }
      if (href) {
        const a = document.createElement("a");
        a.href = href;
        a.rel = "noopener noreferrer";
        a.textContent = "Sign in to " + source;
        li.append(a);
      } else {
        const strong = document.createElement("strong");
        strong.textContent = "Sign in to " + source + " with: penguiflow-agents auth login " + source;
        li.append(strong);
      }
      const meta = document.createElement("p");
      meta.className = "meta";
      meta.textContent = "Run " + String(w.run_id) + (w.reason ? " · " + String(w.reason) : "");
      li.append(meta);
      rows.push(li);
    }
    list.replaceChildren(...rows);
    $("sign-ins").hidden = rows.length === 0;
  }

  async function refresh() {
    refreshSignIns().catch(() => { /* the approvals still show */ });
    const docs = await api("/v1/approvals?status=pending");
    const now = new Set(docs.map((d) => d.id));
    for (const doc of docs) upsert(doc);
    for (const [id, card] of cards) {  // decided or expired while we were not listening
      if (card.doc.status === "pending" && !now.has(id)) {
        try { upsert(await api("/v1/approvals/" + encodeURIComponent(id))); } catch (_) { /* gone */ }
      }
    }
    render();
  }

  async function follow() {
    let delay = 500;
    while (key()) {
      const controller = new AbortController();
      stream = controller;
      try {
        await refresh();
        $("live").textContent = "Live: new requests and decisions appear here as they happen.";
        await readStream(controller.signal, () => { delay = 500; });
      } catch (err) {
        if (controller.signal.aborted || !key()) return;
        $("live").textContent = "Connection lost; reconnecting…";
      }
      if (controller.signal.aborted || !key()) return;
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, RECONNECT_MAX_MS);
    }
  }

  // Server-Sent Events over fetch (EventSource cannot send an Authorization header).
  async function readStream(signal, onOpen) {
    const response = await fetch("/v1/approvals/events", {
      headers: { Authorization: "Bearer " + key(), Accept: "text/event-stream" },
      signal,
      cache: "no-store",
      credentials: "omit",
    });
    if (response.status === 401) { signOut("The key was not accepted."); return; }
    if (!response.ok || !response.body) throw new Error("stream refused: " + response.status);
    onOpen();
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) throw new Error("stream ended");
      buffer += value.replace(/\r\n?/g, "\n");
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        handleEvent(block);
      }
    }
  }

  function handleEvent(block) {
    let kind = "message";
    const data = [];
    for (const line of block.split("\n")) {
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "event") kind = value;
      else if (field === "data") data.push(value);
    }
    if (!data.length || !kind.startsWith("approval_")) return;
    let doc;
    try { doc = JSON.parse(data.join("\n")); } catch (_) { return; }
    if (doc && typeof doc.id === "string") {
      upsert(doc);
      render();
    }
  }

  function upsert(doc) {
    const known = cards.get(doc.id);
    if (known) {
      const wasPending = known.doc.status === "pending";
      known.doc = doc;
      if (wasPending && doc.status !== "pending") showOutcome(known);
      else if (doc.status === "pending" && !known.busy) fillCard(known);
      return;
    }
    const card = { doc, li: null, busy: false };
    if (doc.status !== "pending" || !doc.can_decide) { cards.set(doc.id, card); return; }
    card.li = buildCard(card);
    cards.set(doc.id, card);
  }

  function render() {
    const pending = [...cards.values()].filter((c) => c.doc.status === "pending");
    const mine = pending.filter((c) => c.doc.can_decide && c.li);
    mine.sort((a, b) => a.doc.created_at.localeCompare(b.doc.created_at));
    const list = $("pending");
    for (const card of mine) {
      if (card.li.parentElement !== list) list.appendChild(card.li);
    }
    $("count").textContent = mine.length ? `(${mine.length})` : "";
    $("empty").hidden = mine.length > 0;
    const others = pending.length - mine.length;
    $("others").hidden = others === 0;
    $("others").textContent = others === 1
      ? "1 more request is pending that you may not decide."
      : `${others} more requests are pending that you may not decide.`;
  }

  // -- one card -----------------------------------------------------------------------------

  function part(li, cls) { return li.querySelector("." + cls); }

  function buildCard(card) {
    const li = $("card-template").content.firstElementChild.cloneNode(true);
    const id = card.doc.id;
    li.dataset.approvalId = id;
    const slug = "a-" + id.replace(/[^A-Za-z0-9_-]/g, "_");
    part(li, "tool").id = slug + "-tool";
    li.querySelector("article").setAttribute("aria-labelledby", slug + "-tool");
    part(li, "reject-reason").id = slug + "-reason";
    part(li, "reject-label").htmlFor = slug + "-reason";
    part(li, "approve").addEventListener("click", () => decide(card, { decision: "approve" }));
    part(li, "reject-open").addEventListener("click", () => openForm(card, "reject-form"));
    part(li, "edit-open").addEventListener("click", () => openForm(card, "edit-form"));
    for (const form of [part(li, "reject-form"), part(li, "edit-form")]) {
      part(form, "cancel").addEventListener("click", () => closeForms(card, true));
      form.addEventListener("keydown", (e) => { if (e.key === "Escape") closeForms(card, true); });
    }
    part(li, "reject-form").addEventListener("submit", (e) => { e.preventDefault(); reject(card); });
    part(li, "edit-form").addEventListener("submit", (e) => { e.preventDefault(); edit(card); });
    card.li = li;
    fillCard(card);
    return li;
  }

  function fillCard(card) {
    const { doc, li } = card;
    part(li, "tool").textContent = doc.tool;
    part(li, "requester").textContent = doc.requested_by;
    part(li, "reason").textContent = doc.reason ? "Why approval is needed: " + doc.reason : "";
    const args = part(li, "arguments");
    args.replaceChildren();
    for (const [name, value] of Object.entries(doc.arguments || {})) {
      const dt = document.createElement("dt");
      dt.textContent = name;
      const dd = document.createElement("dd");
      dd.appendChild(valueNode(value));
      args.append(dt, dd);
    }
    if (!args.children.length) {
      const dd = document.createElement("dd");
      dd.textContent = "(no arguments)";
      args.appendChild(dd);
    }
    tickCard(card);
  }

  function pretty(value) {
    return typeof value === "string" ? value : JSON.stringify(value, null, 2);
  }

  function valueNode(value) {
    const text = pretty(value);
    const pre = document.createElement("pre");
    pre.textContent = text;
    if (text.length <= FOLD_CHARS && text.split("\n").length <= FOLD_LINES) return pre;
    const details = document.createElement("details");
    const summary = document.createElement("summary");
    const head = text.split("\n")[0].slice(0, 60);
    summary.textContent = `${head}… (${text.length} characters; show all)`;
    details.append(summary, pre);
    return details;
  }

  function ago(ms) {
    const s = Math.round(Math.abs(ms) / 1000);
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.round(s / 60)} min`;
    if (s < 86400) return `${Math.round(s / 3600)} h`;
    return `${Math.round(s / 86400)} d`;
  }

  function tickCard(card) {
    const { doc, li } = card;
    const now = Date.now();
    const created = Date.parse(doc.created_at);
    const expires = Date.parse(doc.expires_at);
    const age = part(li, "age");
    age.textContent = Number.isNaN(created) ? "" : ago(now - created) + " ago";
    age.title = doc.created_at;
    const expiry = part(li, "expiry");
    if (Number.isNaN(expires)) expiry.textContent = "";
    else if (expires <= now) expiry.textContent = "expired";
    else expiry.textContent = "expires in " + ago(expires - now);
    expiry.title = doc.expires_at;
  }

  function openForm(card, which) {
    closeForms(card, false);
    const form = part(card.li, which);
    if (which === "edit-form") fillEditFields(card);
    form.hidden = false;
    part(card.li, "actions").hidden = true;
    const first = form.querySelector("textarea, input");
    if (first) first.focus();
  }

  function closeForms(card, focusBack) {
    for (const which of ["reject-form", "edit-form"]) part(card.li, which).hidden = true;
    part(card.li, "actions").hidden = false;
    clearErrors(card);
    if (focusBack) part(card.li, "approve").focus();
  }

  function clearErrors(card) {
    for (const el of card.li.querySelectorAll(".error")) el.textContent = "";
    for (const el of card.li.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
  }

  function fillEditFields(card) {
    const box = part(card.li, "edit-fields");
    box.replaceChildren();
    const base = card.li.dataset.approvalId.replace(/[^A-Za-z0-9_-]/g, "_");
    let n = 0;
    for (const [name, value] of Object.entries(card.doc.arguments || {})) {
      const id = `e-${base}-${n++}`;
      const wrap = document.createElement("div");
      wrap.className = "edit-field";
      wrap.dataset.name = name;
      const label = document.createElement("label");
      label.htmlFor = id;
      label.textContent = typeof value === "string" ? name : `${name} (JSON)`;
      const input = document.createElement("textarea");
      input.id = id;
      input.name = name;
      input.dataset.json = typeof value === "string" ? "" : "1";
      input.rows = Math.min(8, Math.max(1, pretty(value).split("\n").length));
      input.value = pretty(value);
      input.setAttribute("aria-describedby", id + "-error");
      const error = document.createElement("p");
      error.className = "error field-error";
      error.id = id + "-error";
      error.setAttribute("role", "alert");
      wrap.append(label, input, error);
      box.appendChild(wrap);
    }
  }

  function fieldError(card, name, message) {
    for (const wrap of part(card.li, "edit-fields").children) {
      if (wrap.dataset.name === name) {
        const input = wrap.querySelector("textarea");
        const error = wrap.querySelector(".error");
        error.textContent = error.textContent ? error.textContent + " " + message : message;
        input.setAttribute("aria-invalid", "true");
        return input;
      }
    }
    return null;
  }

  async function reject(card) {
    clearErrors(card);
    const box = part(card.li, "reject-reason");
    const reason = box.value.trim();
    if (!reason) {
      part(card.li, "reject-error").textContent = "Say why: the model sees this reason.";
      box.setAttribute("aria-invalid", "true");
      box.focus();
      return;
    }
    await decide(card, { decision: "reject", reason }, (message) => {
      part(card.li, "reject-error").textContent = message;
      box.focus();
    });
  }

  async function edit(card) {
    clearErrors(card);
    const args = {};
    let firstBad = null;
    for (const wrap of part(card.li, "edit-fields").children) {
      const input = wrap.querySelector("textarea");
      if (input.dataset.json) {
        try {
          args[wrap.dataset.name] = JSON.parse(input.value);
        } catch (_) {
          firstBad = firstBad || fieldError(card, wrap.dataset.name, "This is not valid JSON.");
        }
      } else {
        args[wrap.dataset.name] = input.value;
      }
    }
    if (firstBad) { firstBad.focus(); return; }
    await decide(card, { decision: "edit", arguments: args }, (message) => showEditErrors(card, message));
  }

  // The server lists schema problems as "$.name: what is wrong; $.other[0]: ...".
  function showEditErrors(card, message) {
    let firstBad = null;
    let placed = false;
    const names = Object.keys(card.doc.arguments || {});
    for (const piece of message.split(/;\s+(?=\$)/)) {
      const match = /\$\.([^.\[:\s]+)[^:]*:\s*([\s\S]*)/.exec(piece);
      if (match && names.includes(match[1])) {
        const input = fieldError(card, match[1], match[2].replace(/\.\s*Fix them.*$/, "."));
        firstBad = firstBad || input;
        placed = true;
      }
    }
    if (!placed) part(card.li, "form-error").textContent = message;
    if (firstBad) firstBad.focus();
  }

  async function decide(card, body, onError) {
    const buttons = card.li.querySelectorAll("button");
    buttons.forEach((b) => { b.disabled = true; });
    card.busy = true;
    try {
      const doc = await api("/v1/approvals/" + encodeURIComponent(card.doc.id) + "/decision", {
        method: "POST",
        body,
      });
      card.doc = doc;
      showOutcome(card);
      render();
    } catch (err) {
      if (err.message === "unauthorized") return;
      if (err.status === 409 || err.status === 404) {  // decided by someone else, or gone
        try { card.doc = await api("/v1/approvals/" + encodeURIComponent(card.doc.id)); } catch (_) { /* gone */ }
        showOutcome(card, err.message);
        render();
        return;
      }
      if (onError) onError(err.message);
      else part(card.li, "outcome").textContent = err.message;
    } finally {
      card.busy = false;
      buttons.forEach((b) => { b.disabled = false; });
    }
  }

  function showOutcome(card, note) {
    const { doc, li } = card;
    if (!li) return;
    closeForms(card, false);
    part(li, "actions").hidden = true;
    const outcome = part(li, "outcome");
    const decision = doc.decision;
    let text;
    if (doc.status === "expired") text = "Expired without a decision.";
    else if (decision) {
      const by = me && decision.decided_by === me.principal ? "you" : decision.decided_by;
      const verb = decision.decision === "reject" ? "Rejected" : decision.decision === "edit" ? "Approved with edited arguments" : "Approved";
      text = `${verb} by ${by}`;
      if (decision.decision === "reject" && decision.reason) text += `: ${decision.reason}`;
    } else text = note || "No longer pending.";
    outcome.textContent = text;
    outcome.className = "outcome " + doc.status;
    const when = decision ? Date.parse(decision.decided_at) : NaN;
    part(li, "expiry").textContent = Number.isNaN(when) ? "" : "decided " + ago(Date.now() - when) + " ago";
    const decided = $("decided");
    decided.insertBefore(li, decided.firstChild);
    outcome.setAttribute("tabindex", "-1");
  }

  // -- start ----------------------------------------------------------------------------------

  document.addEventListener("DOMContentLoaded", () => {
    $("sign-in-form").addEventListener("submit", signIn);
    $("sign-out").addEventListener("click", () => signOut(""));
    $("pending-title").setAttribute("tabindex", "-1");
    setInterval(() => {
      for (const card of cards.values()) if (card.li && card.doc.status === "pending") tickCard(card);
    }, TICK_MS);
    setInterval(() => {
      if (key() && me) refreshSignIns().catch(() => { /* next time */ });
    }, SIGN_INS_MS);
    if (key()) start(); else $("key").focus();
  });
})();
