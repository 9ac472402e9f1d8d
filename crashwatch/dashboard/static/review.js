// The review page (docs/review.md): every event of the dashboard's --events folder, newest first, from
// /api/events; a verdict per event, posted to /api/events/NAME/review and heard by every page over /ws.
"use strict";

let page = 1, events = [], chosen = -1;
const $ = (selector) => document.querySelector(selector);
const reviewer = $("#reviewer");
reviewer.value = localStorage.getItem("crashwatch.reviewer") || "";
reviewer.addEventListener("change", () => localStorage.setItem("crashwatch.reviewer", reviewer.value.trim()));

function said(v) {
  if (!v) return "unreviewed";
  const extra = v.reason ? ` (${v.reason})` : v.mark_s !== null ? ` at ${v.mark_s.toFixed(1)} s` : "";
  return `${v.decision.replace("_", " ")}${extra} by ${v.reviewer}`;
}

async function load() {
  const params = new URLSearchParams(new FormData($("#filters")));
  for (const [key, value] of [...params]) if (!value) params.delete(key);
  params.set("page", page);
  const response = await fetch(`/api/events?${params}`);
  if (!response.ok) return show(await response.text());
  const result = await response.json();
  events = result.events;
  $("#paging").textContent = `page ${result.page} of ${result.pages}, ${result.total} event(s)`;
  const reasons = $("#reason");
  if (!reasons.options.length) reasons.replaceChildren(...result.reasons.map((r) => new Option(r, r)));
  $("#events").replaceChildren(...events.map((e, i) => {
    const item = document.createElement("li");
    item.className = "event";
    item.dataset.name = e.name;
    item.dataset.verdict = e.verdict ? e.verdict.decision : "unreviewed";
    item.textContent = e.error ? `${e.name}: ${e.error}` : `${e.camera}, ${new Date(e.started_at * 1000).toLocaleString()}, ` +
      `peak ${e.peak.toFixed(2)}: ${said(e.verdict)}`;
    item.onclick = () => choose(i);
    return item;
  }));
  chosen = -1;
}

function show(text) {
  $("#message").textContent = text;
}

function choose(i) {
  if (i < 0 || i >= events.length) return;
  chosen = i;
  document.querySelectorAll("#events li").forEach((li, k) => li.classList.toggle("chosen", k === i));
  const e = events[i], box = $("#selected");
  const video = Object.assign(document.createElement("video"), {src: `/events/${e.name}/video`, controls: true,
    muted: true, preload: "auto"});
  const chart = Object.assign(document.createElement("canvas"), {className: "chart",
    title: "risk from the window that raised the alert to the end of its post-roll: threshold dashed, the start marked"});
  const explanation = document.createElement("div");
  explanation.className = "explanation";
  box.replaceChildren(video, chart, explanation);
  const risks = e.risks || [];
  chart.dataset.points = risks.length;
  if (risks.length) drawChart(chart, risks, risks[0][0], risks[risks.length - 1][0], e.threshold, [e.start]);
  showExplanation(explanation, e.explanation);
}

async function give(decision) {
  if (chosen < 0) return show("choose an event first (j)");
  const name = reviewer.value.trim();
  if (!name) return show("say who you are first (reviewer)");
  const e = events[chosen], body = {decision, reviewer: name};
  if (decision === "dismissed") body.reason = $("#reason").value;
  if (decision === "confirmed") body.mark_s = $("#selected video").currentTime;
  const response = await fetch(`/api/events/${e.name}/review`, {method: "POST",
    headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
  if (!response.ok) return show(await response.text());
  show(`${e.name}: ${said(await response.json())}`);
}

function heard(verdict) {  // a verdict given here or on another page
  const i = events.findIndex((e) => e.name === verdict.event);
  if (i < 0) return;
  events[i].verdict = verdict;
  const item = document.querySelectorAll("#events li")[i];
  item.dataset.verdict = verdict.decision;
  item.textContent = item.textContent.replace(/: [^:]*$/, `: ${said(verdict)}`);
}

document.addEventListener("keydown", (event) => {
  if (event.target.closest("input, select")) return;
  const video = $("#selected video");
  const keys = {j: () => choose(chosen + 1), k: () => choose(chosen - 1), c: () => give("confirmed"),
    d: () => give("dismissed"), u: () => give("needs_review"), " ": () => video && (video.paused ? video.play() : video.pause()),
    n: () => { page += 1; load(); }, p: () => { page = Math.max(1, page - 1); load(); }};
  if (keys[event.key]) {
    event.preventDefault();
    keys[event.key]();
  }
});
$("#filters").addEventListener("change", () => { page = 1; load(); });

function connect() {
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
  ws.onmessage = (message) => {
    const event = JSON.parse(message.data);
    if (event.type === "review") heard(event.verdict);
  };
  ws.onclose = () => setTimeout(connect, 1000);
}

load();
connect();
