// The crashwatch dashboard page: draws what /ws sends (docs/dashboard.md). The server keeps the state and
// sends it whole on connecting, then every monitor message and its own events (a camera silent or heard again,
// an alert record changed); this file only keeps the last minute of risk per camera and draws.
"use strict";

const HISTORY_S = 60;
const cameras = new Map(); // id -> {id, name, endpoint, status, risk, preview, history, silent, heardAt, missed, el}
const alerts = new Map(); // key -> {record, el}
let endpoints = {};

const $ = (root, selector) => root.querySelector(selector);
const fixed = (value, digits, unit = "") => (value === null || value === undefined ? "–" : value.toFixed(digits) + unit);
const clock = (wall) => new Date(wall * 1000).toLocaleTimeString();

function connect() {
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
  ws.onopen = () => setConnection("live", "ok");
  ws.onmessage = (event) => handle(JSON.parse(event.data));
  ws.onclose = () => {
    setConnection("disconnected: reconnecting…", "bad");
    setTimeout(connect, 1000);
  };
}

function setConnection(text, kind) {
  const badge = document.getElementById("connection");
  badge.textContent = text;
  badge.dataset.kind = kind;
}

function handle(event) {
  if (event.type === "state") load(event.state);
  else if (event.type === "message") onMessage(event);
  else if (event.type === "camera") onReception(event);
  else if (event.type === "alert") showAlert(event.alert);
}

function load(state) {
  document.getElementById("cameras").replaceChildren();
  document.getElementById("alerts").replaceChildren();
  cameras.clear();
  alerts.clear();
  endpoints = state.endpoints;
  for (const c of Object.values(state.cameras)) {
    Object.assign(camera(c.id, c.name, c.endpoint), {status: c.status, risk: c.risk, preview: c.preview,
      health: c.health, history: c.history, silent: c.silent, heardAt: c.heard_at, missed: c.missed});
    render(cameras.get(c.id));
  }
  state.alerts.forEach(showAlert);
  renderEndpoints();
}

function onMessage({endpoint, camera: id, topic, message}) {
  if (!endpoints[endpoint].heard) {
    endpoints[endpoint].heard = true;
    renderEndpoints();
  }
  if (id === null) return; // a fleet's process heartbeat
  const cam = camera(id, message.camera, endpoint);
  cam.heardAt = message.sent_at;
  if (topic === "status") {
    cam.status = message;
    if (message.camera_health) cam.health = message.camera_health; // the newest word on whether it can see
  } else if (topic === "preview") cam.preview = message;
  else if (topic === "health") cam.health = message;
  else if (topic === "risk") {
    const last = cam.history[cam.history.length - 1];
    if (last && message.t < last[0]) cam.history = []; // the monitor started again
    if (!last || message.t > last[0]) cam.history.push([message.t, message.probability, message.alert_active]);
    cam.history = cam.history.filter((p) => p[0] >= message.t - HISTORY_S);
    cam.risk = message;
  } else return;
  render(cam, topic);
}

function onReception({camera: id, silent, heard_at, missed}) {
  const cam = cameras.get(id);
  if (!cam) return;
  Object.assign(cam, {silent, heardAt: heard_at, missed});
  renderState(cam);
}

function camera(id, name, endpoint) {
  if (!cameras.has(id)) {
    const el = document.getElementById("camera-template").content.firstElementChild.cloneNode(true);
    el.dataset.camera = id;
    $(el, ".name").textContent = name;
    $(el, ".endpoint").textContent = endpoint;
    const list = document.getElementById("cameras");
    list.insertBefore(el, [...list.children].find((card) => card.dataset.camera > id) || null); // by name
    cameras.set(id, {id, name, endpoint, status: null, risk: null, preview: null, history: [], silent: false,
      missed: {}, el});
  }
  return cameras.get(id);
}

function render(cam, topic) {
  const el = cam.el;
  if (cam.preview && (!topic || topic === "preview")) $(el, ".preview").src = "data:image/jpeg;base64," + cam.preview.jpeg;
  if (cam.risk && (!topic || topic === "risk")) {
    const value = $(el, ".risk-value");
    value.textContent = cam.risk.probability.toFixed(3);
    value.dataset.t = cam.risk.t;
    el.classList.toggle("alerting", cam.risk.alert_active);
    el.dataset.level = cam.risk.level || (cam.risk.alert_active ? "imminent" : "none");
    $(el, ".level").textContent = el.dataset.level === "imminent" ? "ALERT" : el.dataset.level.toUpperCase();
    const newest = cam.history.length ? cam.history[cam.history.length - 1][0] : 0;
    drawChart($(el, ".chart"), cam.history, newest - HISTORY_S, newest, cam.risk.threshold);
  }
  if (cam.status && (!topic || topic === "status")) {
    const s = cam.status, m = s.model || {}, latency = s.model_ms;
    $(el, ".fps").textContent = `${fixed(s.capture_fps, 1)} fps, ${s.frames_captured} frames (${s.frames_dropped} dropped)`;
    const latest = cam.risk ? `, capture to risk ${fixed(cam.risk.latency_ms, 0, " ms")}` : "";
    $(el, ".lag").textContent = fixed(s.lag_s, 2, " s") + latest;
    $(el, ".latency").textContent = latency ? `p50 ${fixed(latency.p50, 0)} ms, p99 ${fixed(latency.p99, 0)} ms` : "–";
    $(el, ".bundle").textContent = m.name ? `${m.name} ${m.precision} #${m.hash}${m.demo ? " (demo model)" : ""}` : "–";
    $(el, ".runtime").textContent = m.runtime ? `${m.runtime} on ${m.device} at ${m.inference_precision}` : "–";
  }
  renderState(cam);
}

function renderState(cam) {
  const badge = $(cam.el, ".state"), source = cam.status ? cam.status.source : null;
  let state = source ? source.state : "starting", text = state;
  if (state === "reconnecting") text = `reconnecting: outage ${fixed(source.outage_s, 1, " s")}`;
  const health = cam.health;
  if (state === "online" && health && health.state === "degraded") {
    text = `cannot see well: ${health.reasons.join(", ")}`;
    state = "degraded";
  }
  if (cam.silent) {
    text = `silent since ${clock(cam.heardAt)}` + (source ? ` (was ${source.state})` : "");
    state = "silent";
  }
  badge.textContent = text;
  cam.el.dataset.state = state;
  const missed = Object.entries(cam.missed).map(([topic, count]) => `${count} ${topic}`).join(", ");
  $(cam.el, ".missed").textContent = missed || "none";
  cam.el.classList.toggle("lossy", Boolean(missed));
}

function renderEndpoints() {
  const list = document.getElementById("endpoints");
  list.replaceChildren(...Object.entries(endpoints).filter(([, info]) => !info.heard).map(([endpoint]) => {
    const item = document.createElement("li");
    item.textContent = `${endpoint}: nothing heard yet. Is a monitor publishing there, reachable, with the same CURVE keys?`;
    return item;
  }));
}

function showAlert(record) {
  let entry = alerts.get(record.key);
  if (!entry) {
    const el = document.getElementById("alert-template").content.firstElementChild.cloneNode(true);
    el.dataset.key = record.key;
    el.dataset.camera = record.camera;
    document.getElementById("alerts").prepend(el);
    document.getElementById("no-alerts").hidden = true;
    entry = {el};
    alerts.set(record.key, entry);
  }
  entry.record = record;
  const el = entry.el, r = record;
  el.classList.toggle("active", r.active);
  $(el, ".summary").textContent = `${r.camera}, alert ${r.alert_id} at ${clock(r.started_at)}: started at ` +
    `${r.start.toFixed(1)} s of the stream, peak ${r.peak.toFixed(3)} at ${r.peak_at.toFixed(1)} s, ` +
    (r.active ? "going on" : `lasted ${r.duration.toFixed(1)} s (${r.reason})`);
  const last = r.risk.length ? r.risk[r.risk.length - 1][0] : r.start;
  drawChart($(el, ".chart"), r.risk, r.start - 10, Math.max(last, (r.end ?? r.start) + 5), r.threshold, [r.start, r.end]);
  showClip($(el, ".clip"), r.clip);
  showExplanation($(el, ".explanation"), r.explanation);
}

function showClip(box, clip) {
  if (clip && clip.state === "ready") {
    if (!$(box, "video")) {
      const video = Object.assign(document.createElement("video"),
        {src: clip.video, controls: true, muted: true, preload: "metadata"});
      const sidecar = Object.assign(document.createElement("a"), {href: clip.sidecar, textContent: "sidecar (JSON)"});
      const evidence = Object.assign(document.createElement("a"), {href: clip.evidence, className: "evidence",
        textContent: "evidence (ZIP, as recorded: `crashwatch verify` checks it)"});
      box.replaceChildren(video, sidecar, " ", evidence);
    }
    return;
  }
  box.textContent = !clip ? "no clip: the monitor runs without --events"
    : clip.state === "unserved" ? `clip ${clip.name}: start the dashboard with --events to play it here`
    : `clip ${clip.name}: being written…`;
}

connect();
