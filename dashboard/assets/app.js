// Lifeboat dashboard: renders the snapshots /ui/events pushes. No
// framework, no build step; every value goes into the page as text.
"use strict";

const $ = (s) => document.querySelector(s);
let me = null;        // {name, role, csrf}
let es = null;        // the EventSource
let last = null;      // the last snapshot rendered
let runKey = "";      // run id + status: history reloads when it changes

// el builds an element: el("div", {class: "x"}, "text", child…).
function el(tag, attrs, ...kids) {
  const svg = ["svg", "polyline", "line", "text", "rect", "g"].includes(tag);
  const e = svg ? document.createElementNS("http://www.w3.org/2000/svg", tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "onclick") e.addEventListener("click", v);
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const k of kids.flat()) {
    if (k === undefined || k === null || k === false) continue;
    e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  }
  return e;
}

function ago(t) {
  if (!t || t.startsWith("0001")) return "-";
  const s = Math.max(0, (Date.now() - Date.parse(t)) / 1000);
  if (s < 60) return s.toFixed(0) + "s ago";
  if (s < 3600) return (s / 60).toFixed(0) + "m ago";
  if (s < 86400) return (s / 3600).toFixed(1) + "h ago";
  return (s / 86400).toFixed(1) + "d ago";
}

function dur(a, b) {
  if (!a || a.startsWith("0001")) return "";
  const end = b && !b.startsWith("0001") ? Date.parse(b) : Date.now();
  const s = (end - Date.parse(a)) / 1000;
  return s < 10 ? s.toFixed(2) + "s" : s.toFixed(0) + "s";
}

const isOperator = () => me && (me.role === "operator" || me.role === "admin");

async function start() {
  const r = await fetch("/ui/session", { credentials: "same-origin" });
  if (r.status === 401) return showLogin();
  me = await r.json();
  showMain();
}

function showLogin(msg) {
  if (es) { es.close(); es = null; }
  $("#main").hidden = true;
  $("#login").hidden = false;
  $("#logout").hidden = true;
  $("#user").textContent = "";
  $("#login-error").textContent = msg || "";
  setLive(false, "not logged in");
}

function showMain() {
  $("#login").hidden = true;
  $("#main").hidden = false;
  $("#logout").hidden = false;
  $("#user").textContent = me.name + " (" + me.role + ")";
  document.body.dataset.role = me.role;
  connect();
  loadHistory();
}

$("#login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const body = new URLSearchParams({ token: $("#token").value });
  const r = await fetch("/ui/login", { method: "POST", body, credentials: "same-origin" });
  $("#token").value = "";
  if (!r.ok) {
    let m = "login refused (" + r.status + ")";
    try { const e = await r.json(); m = e.error + (e.hint ? " — " + e.hint : ""); } catch (_) {}
    return showLogin(m);
  }
  me = await r.json();
  showMain();
});

$("#logout").addEventListener("click", async () => {
  await fetch("/ui/logout", { method: "POST", headers: { "X-Lifeboat-CSRF": me ? me.csrf : "" }, credentials: "same-origin" });
  me = null;
  showLogin("logged out");
});

function setLive(on, text) {
  const l = $("#live");
  l.className = "live " + (on ? "on" : "off");
  l.textContent = text;
}

function connect() {
  if (es) es.close();
  es = new EventSource("/ui/events");
  es.addEventListener("open", () => setLive(true, "live"));
  es.addEventListener("snapshot", (e) => {
    setLive(true, "live");
    render(JSON.parse(e.data));
  });
  es.addEventListener("error", async () => {
    setLive(false, "reconnecting…");
    // EventSource hides the status: ask whether the session is gone.
    try {
      const r = await fetch("/ui/session", { credentials: "same-origin" });
      if (r.status === 401) showLogin("session ended: log in again");
    } catch (_) {}
  });
}

function render(s) {
  const prev = last;
  last = s;
  window.lbLast = s; // for the browser test and the curious
  document.body.dataset.active = s.active;
  document.body.dataset.epoch = s.epoch;
  document.body.classList.toggle("away", !!s.away);
  document.body.classList.toggle("moving", !!(s.run && s.run.in_progress));
  if (!prev || prev.active !== s.active) {
    // For the browser test: when the page first showed this region.
    window.lbActiveShown = { region: s.active, at: performance.timeOrigin + performance.now() };
  }
  $("#service").textContent = s.service;
  $("#active").textContent = s.active || "?";
  $("#epoch").textContent = s.epoch;
  $("#since").textContent = "active since " + (s.since ? new Date(s.since).toLocaleString() : "-") + " (" + ago(s.since) + ")";
  $("#away").textContent = s.away ? "away from home (" + s.home + ")" : "";
  const mv = $("#moving");
  const r = s.run;
  if (r && r.in_progress) {
    mv.className = r.status === "waiting" ? "waiting" : r.status === "failed" || r.interrupted ? "failed" : "";
    mv.textContent = r.intent.toUpperCase() + " " + r.from + " → " + r.to + ": " + r.status.toUpperCase() + " (" + r.done + "/" + r.total + " steps)" +
      (r.status === "waiting" ? " — waits for approval" : r.interrupted ? " — no lifeboat process runs it: resume or cancel it" : "");
  } else mv.textContent = "";
  const errs = $("#errors");
  errs.hidden = !(s.errors && s.errors.length);
  errs.textContent = (s.errors || []).join(" · ");
  renderRegions(s);
  renderQuadrants(s);
  renderTraffic(s);
  renderRun(s);
  renderLag(s);
  renderReadiness(s);
  const k = s.run ? s.run.id + "/" + s.run.status : "";
  if (k !== runKey) {
    runKey = k;
    // For the browser test: when the page first showed this run status.
    if (s.run) window.lbRunShown = { run: s.run.id, status: s.run.status, at: performance.timeOrigin + performance.now() };
    loadHistory();
  }
}

function renderRegions(s) {
  const box = $("#regions");
  box.replaceChildren(...(s.regions || []).map((r) => {
    const c = r.controller;
    const tags = [];
    if (r.active) tags.push(el("span", { class: "tag ok" }, "ACTIVE"));
    if (r.health === "down") tags.push(el("span", { class: "tag bad" }, "DOWN"));
    else if (r.health === "up") tags.push(el("span", { class: "tag ok" }, "UP"));
    let ctl = "no controller publishes";
    if (c) {
      ctl = (c.leader ? "leader" : "follower") + (c.quorum ? ", in quorum" : ", NO QUORUM") + (c.fenced ? ", FENCED" : "");
    }
    return el("div", { class: "region" + (r.active ? " active" : ""), "data-region": r.name },
      el("div", { class: "name" }, r.name, ...tags),
      el("div", { class: "role" }, r.role),
      el("div", { class: "ctl" }, ctl));
  }));
}

function dotClass(c) {
  if (!c.exists) return "absent";
  return c.health || "exists";
}

function renderQuadrants(s) {
  const q = $("#quadrants");
  const regs = (s.regions || []).filter((r) => r.role !== "witness");
  const kids = [el("div", {})];
  for (const r of regs) kids.push(el("div", { class: "hd" }, r.role + " · " + r.name + (r.active ? " ★" : "")));
  for (const group of ["permanent", "failover"]) {
    kids.push(el("div", { class: "rowhd" }, group));
    for (const r of regs) {
      const comps = (s.components || []).filter((c) => c.quadrant === r.role + "/" + group && c.region === r.name);
      kids.push(el("div", { class: "quad" + (r.active ? " active" : ""), "data-quadrant": r.role + "/" + group },
        comps.length ? comps.map((c) => el("div", { class: "comp", title: c.resource + " (" + c.unit + "." + c.component + ")" + (c.health ? " — probes: " + c.health : "") },
          el("span", { class: "dot " + dotClass(c) }),
          el("span", { class: "cname" }, c.component),
          el("span", { class: "kind" }, c.kind),
          el("span", { class: "cstate" }, c.state))) : el("span", { class: "cstate" }, "—")));
    }
  }
  q.replaceChildren(...kids);
}

function renderTraffic(s) {
  const t = $("#traffic");
  const byName = (s.traffic || []);
  if (!byName.length) {
    const comps = (s.components || []).filter((c) => c.quadrant === "global");
    t.replaceChildren(...comps.map((c) => el("div", { class: "route" }, el("span", {}, c.unit + "." + c.component), el("span", { class: "to" }, c.state))));
    return;
  }
  t.replaceChildren(...byName.map((r) => el("div", { class: "route" },
    el("span", { class: "mono" }, r.name), el("span", { class: "to" }, "→ " + (r.region || "?")),
    el("span", { class: "cstate" }, r.live ? "live" : "as recorded" + (r.error ? ": " + r.error : "")))));
}

const icons = { pending: "·", running: "▶", waiting: "⏸", approved: "✓", done: "✓", skipped: "↷", failed: "✗", cancelled: "⊘", undone: "↶" };

function renderRun(s) {
  const box = $("#run");
  const r = s.run;
  $("#run-state").textContent = "";
  if (!r) { box.replaceChildren(el("div", { class: "msg" }, "No run yet.")); return; }
  const state = r.in_progress ? r.status : r.status + " (last run)";
  $("#run-state").replaceChildren(el("span", { class: "tag " + (r.status === "succeeded" ? "ok" : r.status === "failed" || r.interrupted ? "bad" : r.status === "waiting" ? "warn" : "run") }, state));
  const pct = r.total ? Math.round(100 * r.done / r.total) : 0;
  const bar = el("div", { class: "bar" + (r.status === "succeeded" ? " ok" : r.status === "failed" ? " bad" : "") }, el("div", {}));
  bar.firstChild.style.width = pct + "%";
  const waiting = new Set((r.waiting || []).map((w) => w.step));
  const steps = el("ol", { class: "steps" }, (r.steps || []).map((st) => {
    const li = el("li", { class: "s-" + st.status + " " + st.status + (st.cleanup ? " cleanup" : ""), "data-step": st.id, "data-status": st.status },
      el("span", { class: "sicon" }, icons[st.status] || "?"),
      el("span", { class: "sid", title: st.why || st.id }, st.id),
      el("span", { class: "stime" }, st.status === "pending" ? (st.estimate ? "~" + st.estimate : "") : dur(st.started_at, st.ended_at) + (st.attempt > 1 ? " (try " + st.attempt + ")" : "")));
    if (st.error && st.status !== "done") li.append(el("span", { class: "serr" }, st.error));
    if (st.status === "waiting" && r.in_progress) {
      li.append(el("span", { class: "question" }, st.approval || "approval needed"));
      if (isOperator() && waiting.has(st.id)) {
        li.append(el("span", { class: "question" }, el("button", { class: "approve", type: "button", "data-step": st.id, onclick: () => approve(r.id, st.id) }, "Approve " + st.id)));
      }
    }
    return li;
  }));
  box.replaceChildren(...[
    el("div", { class: "runhead", "data-run": r.id, "data-status": r.status }, r.intent + " " + r.from + " → " + r.to),
    el("div", { class: "runmeta" }, r.id + " · by " + (r.by || "?") + " · started " + ago(r.started_at) + " · " + r.done + "/" + r.total + " steps · " + dur(r.started_at, r.ended_at)),
    bar,
    r.error ? el("div", { class: "serr" }, r.error) : null,
    steps,
    el("div", { class: "msg", id: "approve-msg" }, approveMsg)].filter(Boolean));
}

let approveMsg = "";
async function approve(run, step) {
  for (const b of document.querySelectorAll("button.approve")) b.disabled = true;
  const r = await fetch("/ui/api/v1/runs/" + encodeURIComponent(run) + "/approve", {
    method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-Lifeboat-CSRF": me.csrf },
    body: JSON.stringify({ step }),
  });
  let body = {};
  try { body = await r.json(); } catch (_) {}
  approveMsg = r.ok ? "approved " + step + ": " + (body.message || "the run goes on") : "approve refused: " + (body.error || r.status) + (body.hint ? " — " + body.hint : "");
  const m = $("#approve-msg");
  if (m) m.textContent = approveMsg;
}

const palette = ["#58a6ff", "#f0883e", "#a371f7", "#3fb950", "#db61a2"];

function renderLag(s) {
  const box = $("#lag");
  const pts = s.lag || [];
  const W = 600, H = 170, L = 44, R = 8, T = 10, B = 22;
  if (!pts.length) { box.replaceChildren(el("div", { class: "msg" }, "No samples yet.")); return; }
  const t0 = Math.min(...pts.map((p) => Date.parse(p.at)));
  const t1 = Math.max(...pts.map((p) => Date.parse(p.at)), t0 + 1000);
  const ymax = Math.max(1, s.rpo_seconds * 1.2, ...pts.map((p) => p.seconds * 1.1));
  const x = (t) => L + (W - L - R) * (t - t0) / (t1 - t0);
  const y = (v) => T + (H - T - B) * (1 - v / ymax);
  const svg = el("svg", { class: "chart", viewBox: "0 0 " + W + " " + H, preserveAspectRatio: "none", role: "img", "aria-label": "replication lag" });
  for (const f of [0, 0.5, 1]) {
    svg.append(el("line", { x1: L, x2: W - R, y1: y(ymax * f), y2: y(ymax * f), stroke: "#2a3440" }));
    svg.append(el("text", { x: 4, y: y(ymax * f) + 4 }, (ymax * f).toFixed(ymax < 5 ? 1 : 0) + "s"));
  }
  if (s.rpo_seconds > 0) {
    svg.append(el("line", { x1: L, x2: W - R, y1: y(s.rpo_seconds), y2: y(s.rpo_seconds), stroke: "#f85149", "stroke-dasharray": "6 4" }));
    svg.append(el("text", { x: W - R - 70, y: y(s.rpo_seconds) - 4 }, "RPO " + s.rpo_seconds + "s"));
  }
  svg.append(el("text", { x: L, y: H - 6 }, new Date(t0).toLocaleTimeString()));
  svg.append(el("text", { x: W - R - 60, y: H - 6 }, new Date(t1).toLocaleTimeString()));
  const dbs = [...new Set(pts.map((p) => p.database))];
  const legend = [];
  dbs.forEach((db, i) => {
    const color = palette[i % palette.length];
    let seg = [];
    const flush = () => { if (seg.length) svg.append(el("polyline", { points: seg.join(" "), fill: "none", stroke: color, "stroke-width": 2 })); seg = []; };
    const mine = pts.filter((p) => p.database === db);
    for (const p of mine) {
      if (!p.bounded) { flush(); svg.append(el("line", { x1: x(Date.parse(p.at)), x2: x(Date.parse(p.at)), y1: T, y2: H - B, stroke: "#f85149", "stroke-opacity": 0.5 })); continue; }
      seg.push(x(Date.parse(p.at)).toFixed(1) + "," + y(p.seconds).toFixed(1));
    }
    flush();
    const cur = mine[mine.length - 1];
    const sw = el("b", {}, "■ ");
    sw.style.color = color;
    legend.push(el("span", {}, sw, db + ": ",
      el("b", {}, cur.bounded ? cur.seconds.toFixed(2) + "s, " + cur.bytes + " B" : "UNBOUNDED"), "   "));
  });
  box.replaceChildren(svg, el("div", { class: "legend" }, legend, " — from " + (s.lag_source === "controller" ? "the active region's controller (RPO exposure)" : "the standby's driver")));
}

function renderReadiness(s) {
  $("#ready").replaceChildren(s.slow_at && !s.slow_at.startsWith("0001")
    ? el("span", { class: "tag " + (s.ready ? "ok" : "bad") }, s.ready ? "READY TO FAIL OVER" : "FAILOVER BLOCKED") : "");
  // Blocking failures first, then the others that failed, then the rest.
  const rank = (c) => (c.ok ? 2 : c.blocks ? 0 : 1);
  const checks = (s.readiness || []).slice().sort((a, b) => rank(a) - rank(b));
  $("#readiness").replaceChildren(...checks.map((c) => el("li", { class: c.ok ? "ok-check" : c.blocks ? "bad" : "warn" },
    el("span", { class: "mark " + (c.ok ? "ok" : c.blocks ? "bad" : "") }, c.ok ? "✓" : c.blocks ? "✗" : "!"),
    el("span", { class: "cn" }, c.name + (c.component ? " · " + c.component : "") + (!c.ok && c.blocks ? " (blocks)" : "")),
    el("span", { class: "why" }, c.reason))));
}

async function getJSON(path) {
  const r = await fetch("/ui/api" + path, { credentials: "same-origin" });
  if (r.status === 401) { showLogin("session ended: log in again"); return null; }
  if (!r.ok) return null;
  return r.json();
}

async function loadHistory() {
  const rows = await getJSON("/v1/history");
  if (rows) {
    $("#history tbody").replaceChildren(...rows.slice(0, 8).map((h) => el("tr", { title: h.run },
      el("td", {}, ago(h.started_at)), el("td", {}, h.intent + " " + h.from + " → " + h.to + " (epoch " + h.epoch + ")"),
      el("td", { class: h.status === "succeeded" ? "ok" : h.status === "failed" ? "bad" : "" }, h.status),
      el("td", {}, h.took), el("td", {}, (h.by || "").replace(/ via api.*$/, "")))));
  }
  const drills = await getJSON("/v1/drills");
  if (drills) {
    $("#drills").replaceChildren(...(drills.length ? drills.map((d) => el("li", {},
      el("a", { href: "/ui/api/v1/drills/" + encodeURIComponent(d.name), target: "_blank", rel: "noopener" }, d.name),
      " · " + ago(d.modified))) : [el("li", { class: "msg" }, "no drill reports yet")]));
  }
}

start();
