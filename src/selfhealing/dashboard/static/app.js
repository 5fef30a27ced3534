/* selfhealing dashboard: plain JavaScript, no framework, no build step.
 *
 * Reads GET /api/status and GET /api/events, then follows
 * GET /api/events/stream (Server-Sent Events) for live updates.
 * Every string from the daemon is rendered with textContent: logs, reasons
 * and messages are untrusted. No innerHTML, no inline handlers, no eval.
 */
"use strict";

(function () {
  const TOKEN_KEY = "selfheal.adminToken";
  const MAX_EVENTS = 50;
  const MAX_HISTORY = 120;
  const SVG_NS = "http://www.w3.org/2000/svg";

  const state = {
    status: null,
    events: [],
    history: [],
    source: null,
    connectedOnce: false,
    retryDelay: 1000,
  };

  // ------------------------------------------------------------ helpers

  function $(id) {
    return document.getElementById(id);
  }

  /** An element with attributes and children (strings become text). */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "text") node.textContent = String(value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  function setText(id, value) {
    const node = $(id);
    const text = value === null || value === undefined || value === "" ? "–" : String(value);
    if (node.textContent !== text) node.textContent = text;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  function badge(text, kind) {
    return el("span", { class: "badge", "data-kind": kind || String(text).toLowerCase(), text });
  }

  function plural(n, word) {
    return n + " " + word + (n === 1 ? "" : "s");
  }

  /** Milliseconds as a human duration: 5 s, 5 min 20 s, 1 h 2 min. */
  function humanMs(ms) {
    if (ms === null || ms === undefined || !isFinite(ms)) return "–";
    if (ms < 1000) return Math.round(ms) + " ms";
    let s = Math.round(ms / 1000);
    const d = Math.floor(s / 86400);
    s -= d * 86400;
    const h = Math.floor(s / 3600);
    s -= h * 3600;
    const m = Math.floor(s / 60);
    s -= m * 60;
    const parts = [];
    if (d) parts.push(d + " d");
    if (h) parts.push(h + " h");
    if (m) parts.push(m + " min");
    if (s && !d) parts.push(s + " s");
    return parts.slice(0, 2).join(" ") || "0 s";
  }

  function parseTime(iso) {
    if (!iso) return null;
    const t = Date.parse(iso);
    return isNaN(t) ? null : t;
  }

  function clockTime(iso) {
    const t = parseTime(iso);
    if (t === null) return "–";
    return new Date(t).toLocaleTimeString([], { hour12: false });
  }

  function ago(iso) {
    const t = parseTime(iso);
    if (t === null) return "";
    const delta = Date.now() - t;
    if (delta < -1000) return "in " + humanMs(-delta);
    if (delta < 1000) return "just now";
    return humanMs(delta) + " ago";
  }

  /** A <time> that shows "12:03:04 (5 s ago)" and keeps the "ago" fresh. */
  function timeEl(iso, withAgo) {
    const node = el("time", { datetime: iso || null, title: iso || null });
    fillTime(node, iso, withAgo !== false);
    return node;
  }

  function fillTime(node, iso, withAgo) {
    if (!iso) {
      node.textContent = "–";
      node.removeAttribute("data-ago");
      return;
    }
    node.setAttribute("datetime", iso);
    node.setAttribute("title", iso);
    if (withAgo) node.setAttribute("data-ago", iso);
    else node.removeAttribute("data-ago");
    node.textContent = withAgo ? clockTime(iso) + " (" + ago(iso) + ")" : clockTime(iso);
  }

  function refreshAgo() {
    for (const node of document.querySelectorAll("time[data-ago]")) {
      const iso = node.getAttribute("data-ago");
      node.textContent = clockTime(iso) + " (" + ago(iso) + ")";
    }
  }

  /** Keep one node per key in *list*, in *items* order; update in place. */
  function keyed(list, items, key, create, update) {
    const existing = new Map();
    for (const child of Array.from(list.children)) existing.set(child.dataset.key, child);
    let previous = null;
    for (const item of items) {
      const k = String(key(item));
      let node = existing.get(k);
      if (node) existing.delete(k);
      else {
        node = create(item);
        node.dataset.key = k;
      }
      update(node, item);
      const wanted = previous ? previous.nextSibling : list.firstChild;
      if (wanted !== node) list.insertBefore(node, wanted);
      previous = node;
    }
    for (const node of existing.values()) node.remove();
  }

  function emptyNote(list, items, text) {
    let note = list.parentNode.querySelector(":scope > .empty-note[data-for='" + list.id + "']");
    if (!items.length) {
      if (!note) {
        note = el("p", { class: "empty-note muted", "data-for": list.id, text });
        list.after(note);
      }
    } else if (note) note.remove();
  }

  // ------------------------------------------------------------ the API

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function api(method, path, body) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token && method !== "GET") headers.Authorization = "Bearer " + token;
    let response;
    try {
      response = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store",
        credentials: "same-origin",
      });
    } catch (err) {
      throw new ApiError(0, "network", "cannot reach the daemon (" + err.message + ")");
    }
    let data = null;
    try {
      data = await response.json();
    } catch (err) {
      data = null;
    }
    if (!response.ok) {
      const error = data && data.error ? data.error : {};
      throw new ApiError(
        response.status,
        error.code || "http_" + response.status,
        error.message || response.statusText || "request failed",
      );
    }
    return data;
  }

  function showMessage(node, text, kind) {
    node.textContent = text || "";
    node.dataset.kind = kind || "";
    node.setAttribute("role", kind === "error" ? "alert" : "status");
  }

  /** Run an operator action: busy button, visible result or error. */
  async function act(button, msg, run, success) {
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
    showMessage(msg, "working…", "busy");
    try {
      const result = await run();
      showMessage(msg, success(result), "ok");
      refreshStatus();
      return result;
    } catch (err) {
      const status = err.status ? "HTTP " + err.status + ": " : "";
      showMessage(msg, status + err.message, "error");
      if (err.status === 401) showTokenPanel(true);
      return null;
    } finally {
      button.removeAttribute("aria-busy");
      button.disabled = false;
      updateResumeButton();
      for (const form of document.querySelectorAll(".reset-form")) updateResetButton(form);
    }
  }

  // ------------------------------------------------------------ token

  function showTokenPanel(needed) {
    const panel = $("token-panel");
    panel.hidden = false;
    const saved = sessionStorage.getItem(TOKEN_KEY);
    if (needed) {
      showMessage(
        $("token-msg"),
        saved ? "The daemon refused the saved token: check it and try again." : "Enter the token, then retry the action.",
        saved ? "error" : "",
      );
      $("token-input").focus();
    }
  }

  function setupToken() {
    if (sessionStorage.getItem(TOKEN_KEY)) {
      $("token-panel").hidden = false;
      showMessage($("token-msg"), "A token is saved for this tab.", "ok");
    }
    $("token-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const value = $("token-input").value.trim();
      if (!value) return;
      sessionStorage.setItem(TOKEN_KEY, value);
      $("token-input").value = "";
      showMessage($("token-msg"), "Token saved for this tab: retry the action.", "ok");
    });
    $("token-forget").addEventListener("click", () => {
      sessionStorage.removeItem(TOKEN_KEY);
      $("token-input").value = "";
      showMessage($("token-msg"), "Token forgotten.", "");
    });
  }

  // ------------------------------------------------------------ status

  function renderStatus(doc) {
    if (!doc || typeof doc !== "object") return;
    const shown = state.status && state.status.timestamp;
    if (shown && doc.timestamp && doc.timestamp < shown) return; // a stale answer
    state.status = doc;
    renderOverall(doc);
    renderEngine(doc.selfHealing || {});
    renderBreakers(doc.circuitBreakers || []);
    renderTargets(doc.targets || []);
    renderProcesses(doc.processes || []);
    renderTasks(doc.backgroundTasks || {});
    renderFlags(doc.featureFlags || {});
    renderKeys(((doc.llm || {}).keyManagement) || {});
    fillTime($("updated"), doc.timestamp, false);
  }

  function renderOverall(doc) {
    const status = String(doc.status || "unknown");
    const section = $("overall");
    section.dataset.status = status;
    setText("overall-status", status.toUpperCase());
    document.title = status.toUpperCase() + " · selfhealing";
    renderFindings($("issues"), doc.issues || [], "No issues.");
    renderFindings($("recommendations"), doc.recommendations || [], "Nothing to do.");
  }

  function renderFindings(list, items, none) {
    clear(list);
    if (!items.length) {
      list.append(el("li", { class: "muted", text: none }));
      return;
    }
    for (const item of items) {
      const text = String(item);
      const level = text.startsWith("CRITICAL") ? "critical" : text.startsWith("WARNING") ? "warning" : "";
      list.append(el("li", { "data-level": level || null, text }));
    }
  }

  function renderEngine(engine) {
    const dormant = Boolean(engine.isDormant);
    const mode = $("engine-mode");
    mode.textContent = dormant ? "DORMANT" : String(engine.mode || "active").toUpperCase();
    mode.dataset.kind = dormant ? "critical" : "healthy";
    setText("engine-enabled", engine.enabled === false
      ? "auto-healing OFF (FEATURE_AUTO_HEALING_ENABLED=false)"
      : "auto-healing on");
    $("engine-enabled").dataset.off = engine.enabled === false ? "true" : "false";

    $("dormant-box").hidden = !dormant;
    setText("dormant-reason", engine.dormantReason);
    fillTime($("dormant-since"), engine.dormantSince, true);

    const max = Number(engine.maxConsecutiveFailures) || 10;
    const failures = Number(engine.consecutiveFailures) || 0;
    setText("engine-failures", failures + " / " + max);
    const meter = $("engine-meter");
    meter.max = max;
    meter.low = Math.ceil(max / 2);
    meter.high = Math.max(meter.low, max - 2);
    meter.value = Math.min(failures, max);
    pushHistory(failures, max);

    setText("engine-backoff", humanMs(engine.backoffDelay) + " (" + engine.backoffDelay + " ms)");
    const next = $("engine-next");
    if (engine.nextAttemptAt) {
      clear(next);
      next.append(timeEl(engine.nextAttemptAt));
    } else setText("engine-next", dormant ? "none while dormant" : "now, if needed");
    setText("engine-attempts", engine.totalAttempts);
    setText("engine-successes", engine.successfulHealings);
    setText("engine-failed", engine.failedHealings);
    setText("engine-relapses", engine.relapses);
    const progress = engine.inProgress || [];
    setText("engine-progress", progress.length ? progress.join(", ") : "nothing");
    const resume = engine.lastResume;
    const resumeNode = $("engine-resume");
    clear(resumeNode);
    if (resume) {
      resumeNode.append(timeEl(resume.at), " by " + (resume.actor || "unknown") + ": " + (resume.reason || ""));
    } else resumeNode.textContent = "never";
  }

  function pushHistory(value, max) {
    state.history.push(value);
    if (state.history.length > MAX_HISTORY) state.history.shift();
    drawSparkline(state.history, max);
  }

  function drawSparkline(values, max) {
    const svg = $("sparkline");
    const title = $("sparkline-title");
    for (const child of Array.from(svg.childNodes)) if (child !== title) child.remove();
    const width = 240;
    const height = 48;
    const pad = 3;
    const top = Math.max(max, ...values, 1);
    const y = (v) => (height - pad - (v / top) * (height - 2 * pad)).toFixed(1);
    const threshold = document.createElementNS(SVG_NS, "line");
    threshold.setAttribute("x1", "0");
    threshold.setAttribute("x2", String(width));
    threshold.setAttribute("y1", y(max));
    threshold.setAttribute("y2", y(max));
    threshold.setAttribute("class", "spark-limit");
    const warn = threshold.cloneNode();
    warn.setAttribute("y1", y(Math.ceil(max / 2)));
    warn.setAttribute("y2", y(Math.ceil(max / 2)));
    warn.setAttribute("class", "spark-warn");
    svg.append(threshold, warn);
    const n = values.length;
    const step = n > 1 ? width / (n - 1) : 0;
    const points = values.map((v, i) => (n > 1 ? (i * step).toFixed(1) : String(width / 2)) + "," + y(v));
    if (n === 1) points.unshift("0," + y(values[0]));
    const line = document.createElementNS(SVG_NS, "polyline");
    line.setAttribute("points", points.join(" "));
    line.setAttribute("class", "spark-line");
    svg.append(line);
    const last = document.createElementNS(SVG_NS, "circle");
    last.setAttribute("cx", n > 1 ? String(width) : String(width / 2));
    last.setAttribute("cy", y(values[n - 1]));
    last.setAttribute("r", "2.5");
    last.setAttribute("class", "spark-dot");
    svg.append(last);
    $("spark-caption").textContent = "since this page opened: now " + values[n - 1] + ", peak " + Math.max(...values) + " (dashed: warning at " + Math.ceil(max / 2) + ", dormant at " + max + ")";
    const recent = values.slice(-12).join(", ");
    title.textContent = "Consecutive failures since this page opened (latest last): " + recent;
  }

  // breakers ----------------------------------------------------------

  function renderBreakers(breakers) {
    const order = { PERMANENT_OPEN: 0, OPEN: 1, HALF_OPEN: 2, CLOSED: 3 };
    const sorted = breakers.slice().sort((a, b) =>
      (order[a.state] ?? 4) - (order[b.state] ?? 4) || String(a.name).localeCompare(String(b.name)));
    keyed($("breaker-list"), sorted, (b) => b.name, createBreaker, updateBreaker);
    emptyNote($("breaker-list"), sorted, "No circuit breakers.");
  }

  let resetCounter = 0;

  function createBreaker(breaker) {
    const id = "reset-" + ++resetCounter;
    const row = el("li", { class: "row breaker" });
    const head = el("div", { class: "row-head" },
      el("span", { class: "name", "data-field": "name" }),
      el("span", { class: "badge", "data-field": "state" }));
    const details = el("p", { class: "row-detail", "data-field": "details" });
    const reason = el("p", { class: "row-detail permanent-reason", "data-field": "reason" });
    const input = el("input", { id, type: "text", maxlength: "500", autocomplete: "off", placeholder: "Root cause fixed: …" });
    const button = el("button", { type: "submit", disabled: true, class: "danger" });
    const msg = el("p", { class: "msg", role: "status" });
    const form = el("form", { class: "reset-form stack-form" },
      el("label", { for: id, text: "Reason for the reset (required)" }),
      input,
      el("div", { class: "form-row" }, button, msg));
    form.dataset.name = breaker.name;
    input.addEventListener("input", () => updateResetButton(form));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      resetBreaker(form);
    });
    row.append(head, details, reason, form);
    return row;
  }

  function updateBreaker(row, b) {
    const field = (name) => row.querySelector("[data-field='" + name + "']");
    row.dataset.state = b.state;
    field("name").textContent = b.name;
    const state = field("state");
    state.textContent = b.state;
    state.dataset.kind = String(b.state).toLowerCase();
    const settings = b.settings || {};
    const parts = ["failures " + b.failureCount + (settings.failureThreshold ? " / " + settings.failureThreshold : "")];
    if (b.tripCount !== undefined) {
      parts.push("trips " + b.tripCount + (settings.permanentAfterTrips ? " / " + settings.permanentAfterTrips : ""));
    }
    if (b.nextAttemptAt) parts.push("half-open at " + clockTime(b.nextAttemptAt));
    field("details").textContent = parts.join(" · ");
    const reason = field("reason");
    reason.textContent = b.permanentOpenReason ? "Permanently open: " + b.permanentOpenReason + ". Fix the root cause before a forced reset." : "";
    reason.hidden = !b.permanentOpenReason;
    const form = row.querySelector("form");
    form.hidden = b.state === "CLOSED" && !form.querySelector(".msg").textContent;
    form.dataset.state = b.state;
    updateResetButton(form);
  }

  function updateResetButton(form) {
    const button = form.querySelector("button");
    if (button.getAttribute("aria-busy")) return;
    const permanent = form.dataset.state === "PERMANENT_OPEN";
    button.textContent = permanent ? "Force reset…" : "Reset to CLOSED";
    button.disabled = !form.querySelector("input").value.trim();
  }

  async function resetBreaker(form) {
    const name = form.dataset.name;
    const reason = form.querySelector("input").value.trim();
    if (!reason) return;
    const force = form.dataset.state === "PERMANENT_OPEN";
    if (force && !window.confirm(
      "Force-reset circuit breaker " + name + " from PERMANENT_OPEN?\n\n" +
      "Fix the root cause first: otherwise it trips again and the engine may go dormant.")) {
      return;
    }
    const result = await act(
      form.querySelector("button"),
      form.querySelector(".msg"),
      () => api("POST", "/api/circuit-breakers/" + encodeURIComponent(name) + "/reset", { force, reason }),
      (r) => name + ": " + r.previousState + " → " + r.state + (r.note ? ". " + r.note : ""),
    );
    if (result) form.querySelector("input").value = "";
  }

  // targets and processes ---------------------------------------------

  function renderTargets(targets) {
    keyed($("target-list"), targets, (t) => t.name, createTarget, updateTarget);
    emptyNote($("target-list"), targets, "No targets configured.");
  }

  function createTarget() {
    return el("li", { class: "row target" },
      el("div", { class: "row-head" },
        el("span", { class: "name", "data-field": "name" }),
        el("span", { class: "badge", "data-field": "health" })),
      el("p", { class: "row-detail", "data-field": "detail" }),
      el("p", { class: "row-detail", "data-field": "check" }),
      el("p", { class: "row-detail", "data-field": "healing" }));
  }

  function updateTarget(row, t) {
    const field = (name) => row.querySelector("[data-field='" + name + "']");
    row.dataset.health = t.health;
    field("name").textContent = t.name;
    const health = field("health");
    health.textContent = String(t.health || "unknown");
    health.dataset.kind = t.health === "unhealthy" ? "critical" : t.health === "healthy" ? "healthy" : "unknown";
    const last = t.lastCheck;
    const detail = field("detail");
    const showDetail = t.detail && !(last && last.detail === t.detail);
    detail.textContent = showDetail ? String(t.detail) : "";
    detail.hidden = !showDetail;
    const check = field("check");
    if (last) {
      const parts = ["last check " + (last.ok ? "ok" : "FAILED")];
      if (t.latencyMs !== null && t.latencyMs !== undefined) parts.push(Number(t.latencyMs).toFixed(1) + " ms");
      if (last.detail) parts.push(String(last.detail));
      parts.push(ago(last.at));
      if (t.consecutiveFailures) parts.push(plural(t.consecutiveFailures, "failure") + " in a row");
      if (t.detection === "paused") parts.push("detection paused");
      check.textContent = parts.join(" · ");
    } else check.textContent = "not checked yet";
    const healing = field("healing");
    const lh = t.lastHealing;
    const parts = [];
    if (t.healing) parts.push("healing now");
    if (lh) {
      let text = "last healing " + lh.outcome + " " + ago(lh.at);
      if (lh.actions && lh.actions.length) text += " (" + lh.actions.map((a) => a.action + (a.ok ? " ok" : " failed")).join(", ") + ")";
      if (lh.error) text += ": " + lh.error;
      parts.push(text);
    } else parts.push("never healed");
    if (t.breaker && t.breaker !== "CLOSED") parts.push("breaker " + t.breaker);
    if (t.nextAttemptAt) parts.push("next attempt " + clockTime(t.nextAttemptAt));
    healing.textContent = parts.join(" · ");
    healing.dataset.outcome = lh ? String(lh.outcome) : "";
  }

  function renderProcesses(processes) {
    keyed($("process-list"), processes, (p) => p.name, createProcess, updateProcess);
    emptyNote($("process-list"), processes, "No supervised processes.");
  }

  function createProcess() {
    return el("li", { class: "row process" },
      el("div", { class: "row-head" },
        el("span", { class: "name", "data-field": "name" }),
        el("span", { class: "badge", "data-field": "state" })),
      el("p", { class: "row-detail", "data-field": "detail" }));
  }

  function updateProcess(row, p) {
    const field = (name) => row.querySelector("[data-field='" + name + "']");
    field("name").textContent = p.name;
    row.dataset.state = p.state;
    const stateBadge = field("state");
    stateBadge.textContent = String(p.state);
    stateBadge.dataset.kind = p.state === "running" ? "healthy" : p.state === "exited" ? "critical" : "unknown";
    const parts = [];
    if (p.pid) parts.push("pid " + p.pid);
    if (p.uptime !== null && p.uptime !== undefined && p.state === "running") parts.push("up " + humanMs(p.uptime * 1000));
    parts.push(plural(p.restarts || 0, "restart"));
    if (p.lastExitCode !== null && p.lastExitCode !== undefined) {
      const code = Number(p.lastExitCode);
      parts.push("last exit " + (code < 0 ? "signal " + -code : "code " + code) + " (" + ago(p.lastExitAt) + ")");
    }
    field("detail").textContent = parts.join(" · ");
  }

  // tasks ----------------------------------------------------------------

  function renderTasks(tasks) {
    const total = Number(tasks.totalTasks) || 0;
    const active = Number(tasks.activeTasks) || 0;
    const list = tasks.tasks || [];
    // The daemon's own tasks (probes, the resource sampler) are expected:
    // the guide's thresholds are about the tasks beyond them.
    const own = list.filter((t) => (t.kind || "task") !== "task").length;
    setText("task-counts", total + " total · " + active + " active" + (own ? " · " + own + " the daemon's own" : ""));
    const level = $("task-level");
    const mine = total - own;
    const [text, kind] = mine > 10 ? ["overload", "critical"] : mine >= 6 ? ["caution", "warning"] : ["normal", "healthy"];
    level.textContent = text;
    level.dataset.kind = kind;
    keyed($("task-list"), list, (t) => t.id, createTask, updateTask);
    emptyNote($("task-list"), list, "No background tasks.");
  }

  function createTask() {
    return el("li", { class: "row task" },
      el("div", { class: "row-head" },
        el("span", { class: "name mono", "data-field": "id" }),
        el("span", { class: "badge", "data-field": "state" })),
      el("p", { class: "row-detail", "data-field": "detail" }));
  }

  function updateTask(row, t) {
    const field = (name) => row.querySelector("[data-field='" + name + "']");
    field("id").textContent = t.id;
    const s = field("state");
    s.textContent = String(t.state);
    s.dataset.kind = t.state === "paused" ? "warning" : "healthy";
    const parts = ["every " + humanMs(Number(t.interval) * 1000), plural(t.runs || 0, "run")];
    if (t.failures) parts.push(plural(t.failures, "failure"));
    if (t.skipped) parts.push(t.skipped + " skipped");
    if (t.lastError) parts.push("last error: " + t.lastError);
    field("detail").textContent = parts.join(" · ");
  }

  function setupTasks() {
    $("pause-all").addEventListener("click", (event) => act(event.currentTarget, $("tasks-msg"),
      () => api("POST", "/api/tasks/pause-all", { reason: "paused from the dashboard" }),
      (r) => "Paused " + plural(r.changed, "task") + "."));
    $("resume-all").addEventListener("click", (event) => act(event.currentTarget, $("tasks-msg"),
      () => api("POST", "/api/tasks/resume-all", { reason: "resumed from the dashboard" }),
      (r) => "Resumed " + plural(r.changed, "task") + "."));
  }

  // flags and keys ---------------------------------------------------

  function renderFlags(flags) {
    const items = Object.entries(flags).map(([name, value]) => ({ name, ...value }));
    keyed($("flag-list"), items, (f) => f.name, createFlag, updateFlag);
    emptyNote($("flag-list"), items, "No feature flags.");
  }

  function createFlag() {
    return el("li", { class: "row flag" },
      el("div", { class: "row-head" },
        el("span", { class: "name mono", "data-field": "name" }),
        el("span", { class: "badge", "data-field": "value" })),
      el("p", { class: "row-detail", "data-field": "source" }));
  }

  function updateFlag(row, f) {
    const field = (name) => row.querySelector("[data-field='" + name + "']");
    field("name").textContent = f.name;
    const value = field("value");
    value.textContent = f.enabled ? "on" : "off";
    value.dataset.kind = f.enabled ? "healthy" : "warning";
    let source = "from " + f.source;
    if (f.file) source += " (" + f.file + (f.line ? ":" + f.line : "") + ")";
    if (f.reason) source += ": " + f.reason;
    field("source").textContent = source;
  }

  function renderKeys(km) {
    const total = Number(km.totalKeys) || 0;
    setText("key-counts", total
      ? total + " total · " + (km.activeKeys || 0) + " active · " + (km.rateLimitedKeys || 0) + " rate-limited · " + (km.failedKeys || 0) + " failed"
      : "No API keys: the daemon heals with its rule-based ladders.");
    const keys = km.keys || [];
    keyed($("key-list"), keys, (k) => k.id, createKey, updateKey);
  }

  function createKey() {
    return el("li", { class: "row key" },
      el("div", { class: "row-head" },
        el("span", { class: "name mono", "data-field": "id" }),
        el("span", { class: "badge", "data-field": "state" })),
      el("p", { class: "row-detail", "data-field": "detail" }));
  }

  function updateKey(row, k) {
    const field = (name) => row.querySelector("[data-field='" + name + "']");
    field("id").textContent = k.id;
    const s = field("state");
    s.textContent = String(k.state);
    s.dataset.kind = k.state === "active" ? "healthy" : k.state === "failed" ? "critical" : "warning";
    const parts = ["from " + k.source];
    if (k.group) parts.push("group " + k.group);
    parts.push(plural(k.requests || 0, "request"));
    if (k.failures) parts.push(plural(k.failures, "failure"));
    if (k.cooldownRemainingS) parts.push("cooling down " + humanMs(k.cooldownRemainingS * 1000));
    if (k.lastError) parts.push("last error: " + k.lastError);
    field("detail").textContent = parts.join(" · ");
  }

  // resume -------------------------------------------------------------

  function updateResumeButton() {
    const button = $("resume-button");
    if (button.getAttribute("aria-busy")) return;
    button.disabled = !$("resume-reason").value.trim();
  }

  function setupResume() {
    $("resume-reason").addEventListener("input", updateResumeButton);
    $("resume-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const reason = $("resume-reason").value.trim();
      if (!reason) return;
      const result = await act($("resume-button"), $("resume-msg"),
        () => api("POST", "/api/system/heal/resume", { reason }),
        (r) => r.message || (r.resumed ? "Resumed." : "Not dormant."));
      if (result) {
        $("resume-reason").value = "";
        updateResumeButton();
      }
    });
    updateResumeButton();
  }

  // ------------------------------------------------------------ events

  function eventKey(e) {
    return e.kind + "|" + e.atEpoch + "|" + e.message;
  }

  function mergeEvents(records) {
    const seen = new Set(state.events.map(eventKey));
    let added = false;
    for (const record of records) {
      if (!record || typeof record !== "object") continue;
      const key = eventKey(record);
      if (seen.has(key)) continue;
      seen.add(key);
      state.events.push(record);
      added = true;
    }
    if (!added) return;
    state.events.sort((a, b) => (b.atEpoch || 0) - (a.atEpoch || 0));
    state.events.length = Math.min(state.events.length, MAX_EVENTS);
    renderEvents();
  }

  function kindTone(kind) {
    if (/failed|dormant_entered|exited|unhealthy|error|relapsed/.test(kind)) return "critical";
    if (/skipped|paused|escalated|key_state|transition/.test(kind)) return "warning";
    if (/succeeded|recovered|dormant_exited|resumed|reset/.test(kind)) return "healthy";
    return "info";
  }

  function renderEvents() {
    const list = $("event-list");
    clear(list);
    if (!state.events.length) {
      list.append(el("li", { class: "muted", text: "No events yet." }));
      return;
    }
    for (const e of state.events) {
      const who = [];
      if (e.target) who.push("target " + e.target);
      if (e.actor) who.push("by " + e.actor);
      if (e.reason) who.push("reason: " + e.reason);
      list.append(el("li", { class: "event", "data-tone": kindTone(String(e.kind)) },
        el("div", { class: "event-head" },
          timeEl(e.at, false),
          el("span", { class: "event-kind", text: e.kind }),
          el("span", { class: "event-component muted", text: e.component })),
        el("p", { class: "event-message", text: e.message }),
        who.length ? el("p", { class: "event-meta muted", text: who.join(" · ") }) : null));
    }
  }

  async function loadEvents() {
    try {
      const data = await api("GET", "/api/events?limit=" + MAX_EVENTS);
      mergeEvents(data.events || []);
      if (!state.events.length) renderEvents();
      $("timeline-note").textContent = "The last 50, newest first.";
    } catch (err) {
      $("timeline-note").textContent = "Could not load the audit trail: " + err.message;
    }
  }

  async function refreshStatus() {
    try {
      renderStatus(await api("GET", "/api/status"));
    } catch (err) {
      /* the stream will bring the next one */
    }
  }

  // ------------------------------------------------------------ stream

  function setConnection(kind, text) {
    $("conn").dataset.state = kind;
    $("conn-text").textContent = text;
  }

  function connect() {
    if (state.source) state.source.close();
    const source = new EventSource("/api/events/stream");
    state.source = source;
    source.addEventListener("open", () => {
      setConnection("live", "live");
      state.retryDelay = 1000;
      if (state.connectedOnce) loadEvents(); // catch up on what was missed
      state.connectedOnce = true;
    });
    source.addEventListener("status", (event) => renderStatus(parse(event.data)));
    source.addEventListener("audit", (event) => mergeEvents([parse(event.data)]));
    source.addEventListener("gap", () => loadEvents());
    source.addEventListener("error", () => {
      setConnection("reconnecting", "reconnecting…");
      if (source.readyState === EventSource.CLOSED) {
        // The browser gave up (e.g. an HTTP error): retry ourselves.
        source.close();
        setTimeout(connect, state.retryDelay);
        state.retryDelay = Math.min(state.retryDelay * 2, 30000);
      }
    });
  }

  function parse(text) {
    try {
      return JSON.parse(text);
    } catch (err) {
      return null;
    }
  }

  // ------------------------------------------------------------ start

  function start() {
    setupToken();
    setupResume();
    setupTasks();
    refreshStatus();
    loadEvents();
    connect();
    setInterval(refreshAgo, 1000);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
