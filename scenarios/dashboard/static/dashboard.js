// sentry-sim live view: plain JavaScript, no build step, no external resource.
// The server sends one full "state" message when the stream opens, then "event" messages
// (a log entry and the ladder arrows it added) and "views" messages (fresh device lists).
// Every text from the lab goes into the page with textContent, never as HTML.
"use strict";

(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const LARGE_KEY = "sentry-sim-dashboard-large";
  const LOG_KEEP = 500;
  // The ladder is drawn at its real pixel size (text as large as the page's), lanes spread
  // over the box's width; a label longer than the box widens the drawing (it scrolls sideways).
  function geometry(box) {
    const large = document.body.classList.contains("large");
    const width = Math.max(760, box.clientWidth - 4);
    const margin = large ? 130 : 110;
    const gap = (width - 2 * margin) / 3;
    const x = {};
    ["device", "sentry", "uem", "exchange"].forEach((lane, i) => { x[lane] = margin + i * gap; });
    return { width, x, laneBox: Math.min(gap - 16, large ? 270 : 220), row: large ? 72 : 54, top: large ? 84 : 70 };
  }
  const OUTCOME_WORD = { ok: "", denied: "refused", failed: "failed", note: "" };
  const STATE_MARK = { allowed: "✔", blocked: "✖", wiped: "⌫", unknown: "?" };
  const GROUP_TITLES = {
    registered_allowed: "Registered · allowed",
    registered_blocked: "Registered · blocked",
    unregistered_allowed: "Unregistered · allowed",
    unregistered_blocked: "Unregistered · blocked",
    wiped: "Wiped",
  };

  const model = {
    lanes: [], steps: {}, devices: [], uem: {}, tls: null, status: {}, flows: {}, log: [],
    seq: 0, selected: "", shown: {}, reveal: [], revealing: false,
  };
  const $ = (id) => document.getElementById(id);
  let renderQueued = false;

  // --- helpers ---------------------------------------------------------------------------
  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    if (attrs) for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = String(text);
    return node;
  }
  function clockText(at) {
    if (!at) return "–";
    const d = new Date(at * 1000);
    return d.toISOString().slice(11, 19);
  }
  function say(text, bad) {
    const box = $("message");
    box.textContent = text;
    box.hidden = !text;
    box.classList.toggle("bad", !!bad);
  }
  function splitKey(key) {
    const at = key.indexOf("/");
    return [key.slice(0, at), key.slice(at + 1)];
  }
  function easId(key) {
    const row = model.devices.find((d) => d.key === key);
    if (row && row.eas_device_id) return row.eas_device_id;
    return splitKey(key)[1];
  }
  function devicePath(key) {
    const user = splitKey(key)[0];
    return "/api/devices/" + encodeURIComponent(user) + "/" + encodeURIComponent(easId(key));
  }
  function schedule() {
    if (renderQueued) return;
    renderQueued = true;
    requestAnimationFrame(() => { renderQueued = false; render(); });
  }

  async function api(method, path, body) {
    const response = await fetch(path, {
      method,
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-Sentry-Sim-Dashboard": "1" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let data = {};
    try { data = await response.json(); } catch (e) { data = {}; }
    if (!response.ok) {
      const hint = data.hint ? " (" + data.hint + ")" : "";
      say((data.error || ("HTTP " + response.status)) + hint, true);
      throw new Error(data.error || String(response.status));
    }
    return data;
  }

  // --- the stream --------------------------------------------------------------------------
  function connect() {
    const source = new EventSource("/api/events/stream");
    const stateBox = $("stream-state");
    source.onopen = () => { stateBox.textContent = "live"; stateBox.dataset.state = "live"; };
    source.onerror = () => {
      stateBox.textContent = "reconnecting…";
      stateBox.dataset.state = "down";
    };
    source.onmessage = (message) => {
      const data = JSON.parse(message.data);
      if (data.type === "state") takeState(data);
      else if (data.type === "event") takeEvent(data);
      else if (data.type === "views") takeViews(data);
      schedule();
    };
  }

  function takeState(data) {
    model.lanes = data.lanes;
    model.steps = data.steps;
    model.flows = data.flows || {};
    model.log = data.log || [];
    model.seq = (data.status && data.status.seq) || 0;
    model.shown = {};
    for (const [key, arrows] of Object.entries(model.flows)) model.shown[key] = arrows.length;
    takeViews(data);
    fillForms();
    if (!model.selected || !model.flows[model.selected]) {
      const keys = Object.keys(model.flows);
      if (keys.length) model.selected = keys[keys.length - 1];
    }
  }

  function takeEvent(data) {
    const entry = data.entry;
    if (entry.n <= model.seq) return; // already in the state this stream started with
    model.seq = Math.max(entry.n, ...data.arrows.map((a) => a.n));
    model.log.push(entry);
    if (model.log.length > LOG_KEEP) model.log.splice(0, model.log.length - LOG_KEEP);
    if (data.record && data.arrows.length) {
      const flow = model.flows[data.record] || (model.flows[data.record] = []);
      flow.push(...data.arrows);
      if (!model.selected) model.selected = data.record;
      pace(data.record);
    }
  }

  function takeViews(data) {
    if (data.devices) model.devices = data.devices;
    if (data.uem) model.uem = data.uem;
    if (data.outgoing_tls) model.tls = data.outgoing_tls;
    if (data.status) { model.status = data.status; model.statusAt = Date.now(); }
  }

  // Slow motion: reveal a device's new arrows one at a time so a room can follow them.
  function pace(key) {
    const slow = model.status.slow_motion_s || 0;
    if (slow <= 0) { model.shown[key] = model.flows[key].length; return; }
    if (model.shown[key] === undefined) model.shown[key] = 0;
    if (model.revealing) return;
    model.revealing = true;
    const step = () => {
      const behind = Object.keys(model.flows).find((k) => (model.shown[k] || 0) < model.flows[k].length);
      if (!behind) { model.revealing = false; return; }
      model.shown[behind] = (model.shown[behind] || 0) + 1;
      schedule();
      setTimeout(step, Math.min(900, Math.max(350, (model.status.slow_motion_s || 0) * 400)));
    };
    step();
  }

  // --- rendering ---------------------------------------------------------------------------
  function render() {
    renderStatus();
    renderSentry();
    renderUem();
    renderTls();
    renderFlowSelect();
    renderLadder();
    renderLog();
    renderSelected();
  }

  function renderStatus() {
    const s = model.status;
    $("clock").textContent = s.now ? new Date(s.now * 1000).toISOString().replace("T", " ").slice(0, 19) + " UTC" + (s.virtual_clock ? " (virtual)" : "") : "–";
    const uem = $("uem-state");
    uem.textContent = s.uem_listening ? "up" : "DOWN";
    uem.dataset.state = s.uem_listening ? "up" : "down";
    $("uem-toggle").firstChild.textContent = s.uem_listening ? "UEM down " : "UEM up ";
    const slow = s.slow_motion_s || 0;
    $("slow-state").textContent = slow > 0 ? "on, " + slow + " s" : "off";
    const toggle = $("slow-toggle");
    toggle.setAttribute("aria-pressed", slow > 0 ? "true" : "false");
    toggle.firstChild.textContent = slow > 0 ? "Slow motion off " : "Slow motion on ";
    $("advance").disabled = !s.virtual_clock;
    $("advance").title = s.virtual_clock ? "" : "the lab runs on the system clock";
  }

  function badge(state) {
    const text = (STATE_MARK[state] || "") + " " + String(state || "").toUpperCase();
    return el("span", { class: "badge state-" + state }, text.trim());
  }

  function renderSentry() {
    const body = $("sentry-table").tBodies[0];
    body.replaceChildren();
    for (const row of model.devices) {
      const tr = el("tr", { "data-key": row.key });
      if (row.key === model.selected) tr.classList.add("selected");
      const pick = el("button", { type: "button", class: "link", "aria-pressed": row.key === model.selected ? "true" : "false" }, row.key);
      pick.addEventListener("click", () => select(row.key));
      const first = el("th", { scope: "row" });
      first.append(pick);
      tr.append(first);
      const stateCell = el("td");
      stateCell.append(badge(row.state));
      if (row.fallback) stateCell.append(el("span", { class: "tag" }, "fallback"));
      tr.append(stateCell);
      tr.append(el("td", {}, (row.reason_names || []).join(", ") || "–"));
      tr.append(el("td", {}, clockText(row.last_seen)));
      tr.append(el("td", { class: "num" }, row.requests));
      tr.append(el("td", {}, (row.phone || "–") + (row.phone_busy ? " (busy)" : "")));
      body.append(tr);
    }
    $("sentry-empty").hidden = model.devices.length > 0;
  }

  function renderUem() {
    const box = $("uem-groups");
    box.replaceChildren();
    const view = model.uem || {};
    const error = $("uem-error");
    error.hidden = !view.error;
    error.textContent = view.error ? view.error + " (showing the last view read)" : "";
    const groups = view.groups || {};
    for (const [name, title] of Object.entries(GROUP_TITLES)) {
      const rows = groups[name] || [];
      const section = el("section", { class: "group group-" + name, "aria-label": title });
      section.append(el("h3", {}, title + " (" + rows.length + ")"));
      if (rows.length) {
        const list = el("ul");
        for (const r of rows) {
          const item = el("li");
          item.append(el("strong", {}, r.user + "/" + r.device_id));
          const reasons = (r.reason_names || []).join(", ");
          item.append(document.createTextNode(" " + r.state + (reasons ? " · " + reasons : "") + " · " + (r.device_type || "") + " EAS " + (r.protocol_version || "")));
          if (r.override) item.append(el("span", { class: "tag" }, "admin " + r.override.action));
          list.append(item);
        }
        section.append(list);
      } else {
        section.append(el("p", { class: "hint" }, "none"));
      }
      box.append(section);
    }
  }

  // --- the Outgoing TLS panel (UEM -> gatekeepers) ----------------------------------------
  const TLS_STATUS = {
    ok: "✔ TLS OK",
    failing: "✖ FAILING",
    unused: "– no call yet",
    plain: "⚠ plain HTTP, no TLS",
  };
  function dateText(at) {
    if (!at) return "–";
    return new Date(at * 1000).toISOString().replace("T", " ").slice(0, 16) + " UTC";
  }
  function durationText(seconds) {
    const s = Math.max(0, Math.round(seconds));
    const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
    if (d) return d + " d " + h + " h";
    if (h) return h + " h " + m + " min";
    if (m) return m + " min " + (s % 60) + " s";
    return s + " s";
  }
  // The lab clock now: a virtual clock moves only when advanced (the page then gets a fresh
  // status); a system clock runs on between two status messages.
  function labNow() {
    const s = model.status;
    if (!s.now) return 0;
    return s.virtual_clock ? s.now : s.now + (Date.now() - (model.statusAt || Date.now())) / 1000;
  }
  let tlsTimer = 0;
  // A suite name may break after each underscore (a <wbr>), so a narrow or large-text table
  // wraps TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 at its words, never mid-word.
  function suiteName(name) {
    const span = el("span", { class: "suite-name" });
    String(name || "–").split("_").forEach((part, i) => {
      if (i) span.append(document.createTextNode("_"), document.createElement("wbr"));
      span.append(document.createTextNode(part));
    });
    return span;
  }

  function renderTls() {
    const v = model.tls || {};
    const head = $("tls-headline");
    head.dataset.transport = v.transport || "unknown";
    head.textContent = v.headline || (v.error ? "The UEM's outgoing TLS has not been read yet." : "Reading the UEM's outgoing TLS…");
    const error = $("tls-error");
    error.hidden = !v.error;
    error.textContent = v.error ? v.error + (v.stale && v.headline ? " (showing the last view read)" : "") : "";
    const restart = $("tls-restart");
    const now = labNow();
    const wait = v.available_at ? (now ? v.available_at - now : v.unavailable_for_s) : 0;
    restart.hidden = !(wait > 0);
    restart.textContent = wait > 0 ? "The outgoing client is restarting to apply new settings: calls to gatekeepers resume in " + Math.ceil(wait * 10) / 10 + " s (lab clock); failed pushes are retried." : "";
    clearTimeout(tlsTimer);
    if (wait > 0 && !model.status.virtual_clock) tlsTimer = setTimeout(schedule, wait * 1000 + 50);
    if (v.is_default === undefined) {
      $("tls-policy").textContent = "–";
    } else {
      const applied = v.generation ? " · applied " + v.generation + " time" + (v.generation === 1 ? "" : "s") + " since start" : "";
      $("tls-policy").textContent = (v.is_default ? "the default" : "changed (not the default)") + applied;
    }
    const protocols = v.protocols || [];
    $("tls-protocols").textContent = protocols.length ? protocols.join(", ") + " only (never 1.0/1.1; 1.3 not offered)" : "–";
    $("tls-trust").textContent = v.trust || "–";
    if (v.clears_at) {
      const left = now ? v.clears_at - now : v.clears_in_s;
      $("tls-clears").textContent = dateText(v.clears_at) + " (in " + durationText(left) + ", lab clock)";
    } else {
      $("tls-clears").textContent = "–";
    }
    renderTlsEndpoints(v.endpoints || [], v.hidden_endpoints || 0);
    renderTlsSuites(v.suites || []);
  }

  function renderTlsEndpoints(rows, hidden) {
    const body = $("tls-endpoints").tBodies[0];
    const out = [];
    for (const r of rows) {
      const tr = el("tr", { class: "tls-" + r.status + (r.status === "failing" ? " failing" : ""), "data-endpoint": r.endpoint });
      const first = el("th", { scope: "row" });
      first.append(el("strong", {}, r.endpoint));
      if (r.gatekeepers && r.gatekeepers.length) {
        first.append(el("div", { class: "hint" }, "gatekeeper " + r.gatekeepers.join(", ")));
      }
      tr.append(first);
      const status = el("td");
      status.append(el("span", { class: "badge status-" + r.status }, TLS_STATUS[r.status] || r.status));
      tr.append(status);
      const called = r.status === "ok" || r.status === "failing";
      tr.append(el("td", {}, !called ? "–" : r.sni || "none (IP address)"));
      tr.append(el("td", {}, r.speaks_only ? "speaks only " + r.speaks_only : r.protocol || "–"));
      const cipher = el("td", { class: "cipher" });
      cipher.append(suiteName(r.cipher));
      tr.append(cipher);
      tr.append(el("td", { class: "num" }, r.calls + (r.failures ? " (" + r.failures + " failed)" : "")));
      const last = el("td", {}, clockText(r.last_used_at));
      if (r.last_failure_at) last.append(el("div", { class: "hint" }, "failed " + clockText(r.last_failure_at)));
      tr.append(last);
      out.push(tr);
      if (r.status === "failing") {
        const detail = el("tr", { class: "failing-detail", "data-endpoint": r.endpoint });
        const cell = el("td", { colspan: "7" });
        cell.append(el("div", {}, "Error: " + (r.last_error || "the TLS handshake failed")));
        if (r.needs_disabled && r.needs_disabled.length) {
          const needs = el("div", { class: "needs" }, "Would need the disabled suite(s): ");
          r.needs_disabled.forEach((name, i) => {
            if (i) needs.append(document.createTextNode(", "));
            needs.append(suiteName(name), el("strong", { class: "marker" }, " *"));
          });
          cell.append(needs);
        }
        if (r.speaks_only) {
          cell.append(el("div", { class: "needs" }, "It speaks only " + r.speaks_only + ", which the UEM never uses for outgoing calls (TLS 1.2 only)."));
        }
        detail.append(cell);
        out.push(detail);
      }
    }
    body.replaceChildren(...out);
    const empty = $("tls-endpoints-empty");
    empty.hidden = rows.length > 0 && !hidden;
    empty.textContent = hidden ? hidden + " more endpoint(s) not shown (the failing ones come first)." : "No endpoint yet: the UEM has not called out this week.";
  }

  function renderTlsSuites(suites) {
    const selected = [], disabled = [];
    for (const s of suites) {
      const item = el("li", { "data-suite": s.name, class: s.marker ? "marked" : "" });
      if (s.status === "disabled") {
        item.append(el("span", { class: "marker", "aria-hidden": s.marker ? "false" : "true" }, s.marker || ""));
      }
      item.append(suiteName(s.name));
      if (s.used_by && s.used_by.length) {
        item.append(el("span", { class: "in-use" }, " ✔ negotiated with " + s.used_by.join(", ")));
      }
      if (s.marker && s.needed_by && s.needed_by.length) {
        item.append(document.createTextNode(" needed by " + s.needed_by.join(", ")));
      }
      if (s.default_status && s.default_status !== s.status) {
        item.append(el("span", { class: "tag" }, s.default_status === "selected" ? "selected by default" : "disabled by default"));
      }
      (s.status === "selected" ? selected : disabled).push(item);
    }
    $("tls-selected").replaceChildren(...selected);
    $("tls-disabled").replaceChildren(...disabled);
  }

  function renderFlowSelect() {
    const select = $("flow-select");
    const keys = Object.keys(model.flows);
    const current = Array.from(select.options).map((o) => o.value).join("|");
    if (current !== keys.join("|")) {
      select.replaceChildren(...keys.map((k) => el("option", { value: k }, k)));
    }
    select.value = model.selected;
    const logDevice = $("log-device");
    const known = Array.from(logDevice.options).slice(2).map((o) => o.value).join("|");
    if (known !== keys.join("|")) {
      const chosen = logDevice.value;
      logDevice.replaceChildren(
        el("option", { value: "" }, "all devices"),
        el("option", { value: "@selected" }, "the selected device"),
        ...keys.map((k) => el("option", { value: k }, k)),
      );
      logDevice.value = chosen;
    }
  }

  const measurer = document.createElement("canvas").getContext("2d");
  // Break ``text`` into lines no wider than ``room`` pixels in ``font`` (a long word stays whole).
  function wrap(text, room, font) {
    measurer.font = font;
    const lines = [];
    let line = "";
    for (const word of text.split(" ")) {
      const next = line ? line + " " + word : word;
      if (line && measurer.measureText(next).width > room) {
        lines.push(line);
        line = word;
      } else {
        line = next;
      }
    }
    lines.push(line);
    return lines;
  }

  function renderLadder() {
    const box = $("ladder");
    const key = model.selected;
    $("ladder-name").textContent = key || "no device yet";
    const all = model.flows[key] || [];
    const count = model.shown[key] === undefined ? all.length : Math.min(model.shown[key], all.length);
    const arrows = all.slice(0, count);
    const previous = Number(box.dataset.count || 0);
    const kept = box.scrollTop;
    const sameKey = box.dataset.key === key;
    const geo = geometry(box);
    const LANE_X = geo.x;
    const large = document.body.classList.contains("large");
    const size = large ? 22 : 15;
    const lineH = Math.round(size * 1.3);
    const family = getComputedStyle(document.documentElement).fontFamily;
    // Lay the rows out first: every label wraps to the room right of where it starts.
    const rows = [];
    let cursor = 12;
    for (const a of arrows) {
      const x1 = LANE_X[a.source], x2 = LANE_X[a.target];
      const self = x1 === x2;
      const left = self ? x1 + 46 : Math.min(x1, x2) + 34;
      let label = a.label;
      const word = OUTCOME_WORD[a.outcome];
      const low = label.toLowerCase();
      if (word && !low.includes(word) && !low.includes("block") && !low.includes("wipe")) {
        label += " [" + word + "]";
      }
      const bold = a.outcome === "denied" ? "bold " : "";
      const lines = wrap(label, geo.width - left - 12, bold + size + "px " + family);
      const reasons = a.decision && a.reasons && a.reasons.length ? "reasons: " + a.reasons.join(", ") : "";
      const y = cursor + lines.length * lineH + 8;
      rows.push({ a, x1, x2, self, left, lines, reasons, top: cursor, y });
      cursor = y + (reasons ? lineH : 0) + Math.round(lineH * 0.8);
    }
    const height = Math.max(cursor, 3 * geo.row) + 10;
    const head = $("ladder-head");
    const headSvg = svg("svg", { viewBox: "0 0 " + geo.width + " " + (geo.top - 20), width: geo.width, height: geo.top - 20, class: "ladder-svg" });
    const root = svg("svg", { viewBox: "0 0 " + geo.width + " " + height, width: geo.width, height, class: "ladder-svg" });
    const defs = svg("defs");
    for (const kind of ["ok", "denied", "failed", "note"]) {
      const marker = svg("marker", { id: "head-" + kind, viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" });
      marker.append(svg("path", { d: "M0,0 L10,5 L0,10 z", class: "head-" + kind }));
      defs.append(marker);
    }
    root.append(defs);
    for (const lane of model.lanes) {
      const x = LANE_X[lane.id];
      root.append(svg("line", { x1: x, y1: 0, x2: x, y2: height, class: "lane-line" }));
      headSvg.append(svg("rect", { x: x - geo.laneBox / 2, y: 4, width: geo.laneBox, height: geo.top - 28, rx: 6, class: "lane-box lane-" + lane.id }));
      headSvg.append(svg("text", { x, y: 4 + (geo.top - 28) / 2, "dominant-baseline": "central", class: "lane-title" }, lane.title));
    }
    const text = $("ladder-text");
    text.replaceChildren();
    rows.forEach((row, i) => {
      const a = row.a, y = row.y, x1 = row.x1, x2 = row.x2;
      const g = svg("g", { class: "arrow outcome-" + a.outcome + (sameKey && i >= previous ? " new" : "") });
      if (row.self) {
        g.append(svg("path", { d: "M" + x1 + "," + (y - 10) + " h36 v18 h-32", class: "line", "marker-end": "url(#head-" + a.outcome + ")" }));
      } else {
        g.append(svg("line", { x1, y1: y, x2: x2 + (x2 > x1 ? -4 : 4), y2: y, class: "line", "marker-end": "url(#head-" + a.outcome + ")" }));
      }
      const label = svg("text", { x: row.left, y: row.top, class: "label" });
      row.lines.forEach((line, k) => {
        label.append(svg("tspan", { x: row.left, y: row.top + (k + 1) * lineH - 4 }, line));
      });
      g.append(label);
      if (a.step) {
        const cx = row.self ? x1 - 24 : Math.min(x1, x2) + 16;
        const r = large ? 17 : 13;
        const cy = row.top + lineH / 2 + 1;
        g.append(svg("circle", { cx, cy, r, class: "step-dot" }));
        g.append(svg("text", { x: cx, y: cy, "dominant-baseline": "central", class: "step-num" }, a.step));
      }
      if (row.reasons) {
        g.append(svg("text", { x: row.left, y: y + lineH - 2, class: "reasons" }, row.reasons));
      }
      const title = svg("title", {}, (a.step ? "step " + a.step + " (" + (model.steps[a.step] || "") + "): " : "") + a.label + " at " + clockText(a.at));
      g.append(title);
      root.append(g);
      text.append(el("li", {}, (a.step ? "Step " + a.step + ": " : "") + a.label));
    });
    head.replaceChildren(headSvg);
    box.replaceChildren(root);
    box.dataset.count = String(arrows.length);
    box.dataset.key = key;
    // Follow the newest arrow; otherwise stay where the trainer scrolled to.
    box.scrollTop = !sameKey || arrows.length > previous ? box.scrollHeight : kept;
    const legend = $("step-legend");
    if (!legend.childElementCount) {
      for (const [n, title] of Object.entries(model.steps)) {
        const item = el("li");
        item.append(el("span", { class: "legend-num" }, n), document.createTextNode(" " + title));
        legend.append(item);
      }
    }
    for (const link of [["export-mermaid", "mermaid"], ["export-jaeger", "jaeger"]]) {
      const a = $(link[0]);
      if (key) {
        a.href = devicePath(key) + "/" + link[1];
        a.setAttribute("download", key.replace("/", "_") + (link[1] === "mermaid" ? ".mmd" : ".jaeger.json"));
        a.removeAttribute("aria-disabled");
      } else {
        a.removeAttribute("href");
        a.setAttribute("aria-disabled", "true");
      }
    }
  }

  function renderLog() {
    const form = $("log-filters");
    const sources = new Set(Array.from(form.querySelectorAll("input[name=source]:checked")).map((i) => i.value));
    let device = $("log-device").value;
    if (device === "@selected") device = model.selected;
    const needle = $("log-text").value.trim().toLowerCase();
    const body = $("log-table").tBodies[0];
    const rows = [];
    for (let i = model.log.length - 1; i >= 0 && rows.length < 200; i--) {
      const e = model.log[i];
      if (!sources.has(e.source)) continue;
      if (device && e.record !== device) continue;
      if (needle && !(e.summary + " " + e.kind + " " + e.record + " " + JSON.stringify(e.fields)).toLowerCase().includes(needle)) continue;
      const tr = el("tr", { class: "src-" + e.source });
      tr.append(el("td", {}, clockText(e.at)));
      tr.append(el("td", {}, { sentry: "gatekeeper", uem: "UEM", device: "phone", dashboard: "trainer" }[e.source] || e.source));
      tr.append(el("td", {}, e.record || "–"));
      tr.append(el("td", {}, e.kind));
      tr.append(el("td", {}, e.summary));
      rows.push(tr);
    }
    body.replaceChildren(...rows);
  }

  function renderSelected() {
    $("selected-name").textContent = model.selected || "none (pick one in the device list)";
    for (const b of document.querySelectorAll("#device-controls button")) b.disabled = !model.selected;
  }

  function fillForms() {
    const users = $("add-user");
    if (!users.options.length) {
      for (const u of model.status.users || []) users.append(el("option", { value: u }, u));
    }
    const versions = $("add-version");
    if (!versions.options.length) {
      for (const v of model.status.versions || []) versions.append(el("option", { value: v }, v));
      versions.value = "16.1";
    }
    const known = $("known-devices");
    known.replaceChildren(...(model.status.registered_devices || []).map((d) => el("option", { value: d.device_id }, d.user + " · " + d.platform)));
  }

  // --- actions -----------------------------------------------------------------------------
  function select(key) {
    if (!key) return;
    model.selected = key;
    if (model.shown[key] === undefined && model.flows[key]) model.shown[key] = model.flows[key].length;
    schedule();
  }

  function cycle(delta) {
    const keys = Object.keys(model.flows);
    if (!keys.length) return;
    const at = keys.indexOf(model.selected);
    select(keys[(at + delta + keys.length) % keys.length]);
  }

  async function run(what, promise) {
    try {
      await promise;
      say(what);
    } catch (e) { /* the message is already shown */ }
  }

  function deviceAction(action) {
    if (!model.selected) return;
    run(action + " " + model.selected + " sent to the UEM", api("POST", devicePath(model.selected) + "/action", { action }));
  }

  function syncSelected() {
    if (!model.selected) return;
    run(model.selected + ": the phone syncs", api("POST", devicePath(model.selected) + "/sync"));
  }

  function posture(change) {
    if (!model.selected) return;
    run("posture of " + model.selected + " changed at the UEM", api("POST", devicePath(model.selected) + "/posture", change));
  }

  function toggleUem() {
    const up = !model.status.uem_listening;
    run("UEM " + (up ? "up" : "down"), api("POST", "/api/uem", { state: up ? "up" : "down" }).then((r) => {
      model.status.uem_listening = r.uem_listening; schedule();
    }));
  }

  function advanceClock() {
    const seconds = Number($("advance").value);
    run("clock advanced " + seconds + " s", api("POST", "/api/clock", { advance_s: seconds }));
  }

  function toggleSlow() {
    const on = !(model.status.slow_motion_s > 0);
    const pause = on ? Number($("slow").value) || 1.5 : 0;
    run(on ? "slow motion on" : "slow motion off", api("POST", "/api/slow-motion", { pause_s: pause }).then((r) => {
      model.status.slow_motion_s = r.slow_motion_s; schedule();
    }));
  }

  function resetTls() {
    run("the UEM's outgoing TLS is back to the default; its outgoing client restarts", api("POST", "/api/outgoing-tls/reset"));
  }

  function toggleLarge(force) {
    const on = force === undefined ? !document.body.classList.contains("large") : force;
    document.body.classList.toggle("large", on);
    $("large-toggle").setAttribute("aria-pressed", on ? "true" : "false");
    try { localStorage.setItem(LARGE_KEY, on ? "1" : "0"); } catch (e) { /* private mode */ }
  }

  function wire() {
    const registered = $("add-registered");
    const postureFields = ["add-platform", "add-os", "add-compromised", "add-protection"];
    registered.addEventListener("change", () => {
      for (const id of postureFields) $(id).disabled = !registered.checked;
    });
    $("add-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const body = {
        user: $("add-user").value,
        device_id: $("add-device").value.trim(),
        version: $("add-version").value,
        registered: registered.checked,
      };
      if (registered.checked) {
        body.platform = $("add-platform").value;
        body.os_version = $("add-os").value.trim();
        body.compromised = $("add-compromised").checked;
        body.data_protection = $("add-protection").checked;
      }
      run(body.user + "/" + body.device_id + " connects", api("POST", "/api/devices", body).then((r) => {
        model.selected = r.record;
        schedule();
      }));
    });
    for (const b of document.querySelectorAll("[data-action]")) {
      b.addEventListener("click", () => deviceAction(b.dataset.action));
    }
    document.querySelector("[data-do=sync]").addEventListener("click", syncSelected);
    document.querySelector("[data-posture=compromised-on]").addEventListener("click", () => posture({ compromised: true }));
    document.querySelector("[data-posture=compromised-off]").addEventListener("click", () => posture({ compromised: false }));
    $("os-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      posture({ os_version: $("os-version").value.trim() });
    });
    $("uem-toggle").addEventListener("click", toggleUem);
    $("clock-form").addEventListener("submit", (ev) => { ev.preventDefault(); advanceClock(); });
    $("slow-form").addEventListener("submit", (ev) => { ev.preventDefault(); toggleSlow(); });
    $("large-toggle").addEventListener("click", () => toggleLarge());
    $("tls-reset").addEventListener("click", resetTls);
    $("flow-select").addEventListener("change", (ev) => select(ev.target.value));
    $("log-filters").addEventListener("input", schedule);
    window.addEventListener("resize", schedule);
    $("log-filters").addEventListener("submit", (ev) => ev.preventDefault());
    document.addEventListener("keydown", (ev) => {
      if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
      const t = ev.target;
      if (t && (t.tagName === "INPUT" || t.tagName === "SELECT" || t.tagName === "TEXTAREA")) return;
      const keys = {
        n: () => $("add-device").focus(),
        j: () => cycle(1),
        k: () => cycle(-1),
        s: syncSelected,
        a: () => deviceAction("allow"),
        b: () => deviceAction("block"),
        w: () => deviceAction("wipe"),
        r: () => deviceAction("remove"),
        c: () => posture({ compromised: true }),
        u: toggleUem,
        t: advanceClock,
        m: toggleSlow,
        l: () => toggleLarge(),
        "?": () => { const d = $("shortcuts"); d.open = true; d.querySelector("summary").focus(); },
      };
      const action = keys[ev.key.toLowerCase()] || keys[ev.key];
      if (action) { ev.preventDefault(); action(); }
    });
    let large = false;
    try { large = localStorage.getItem(LARGE_KEY) === "1"; } catch (e) { large = false; }
    toggleLarge(large);
  }

  wire();
  connect();
})();
