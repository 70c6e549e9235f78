"""The page ``fledge dashboard`` serves: plain HTML, CSS and JavaScript, drawn from the views of ``canary.cli.board``.

Why this exists: the dashboard must install without a front-end build or anything fetched at run time, so the
page is one string, with its charts as inline SVG.

What it must not do: load anything from another origin, or send anything but GETs to its own server.
"""

HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Fledge releases</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
  body { font: 14px system-ui, sans-serif; margin: 1.5em; color: #222; }
  h1 { font-size: 1.3em; margin: 0 0 .6em; }
  h2 { font-size: 1.1em; margin: 1.2em 0 .4em; }
  table { border-collapse: collapse; }
  th, td { text-align: left; padding: .25em .8em .25em 0; border-bottom: 1px solid #eee; vertical-align: top; }
  #canaries tr[data-key] { cursor: pointer; }
  #canaries tr.selected { background: #eef4ff; }
  .phase-Failed { color: #b00020; font-weight: 600; }
  .phase-Succeeded, .phase-Initialized { color: #1b7f3b; }
  .phase-Waiting, .phase-WaitingPromotion { color: #a15c00; }
  .check { margin: .3em 0; padding: .3em .5em; border-left: 4px solid #1b7f3b; }
  .check.failing { border-left-color: #b00020; background: #fdecee; }
  .check svg { display: block; }
  .muted { color: #777; }
  #status { font-size: .9em; }
</style>
</head>
<body>
<h1>Fledge releases <span id="status" class="muted">connecting...</span></h1>
<table id="canaries">
  <thead><tr><th>Namespace</th><th>Canary</th><th>Phase</th><th>Weight</th><th>Last decision</th></tr></thead>
  <tbody></tbody>
</table>
<section id="detail" hidden>
  <h2 id="detail-title"></h2>
  <div>Phase <b class="phase"></b>, canary weight <b class="weight-now"></b>%,
       failed checks <b class="failed"></b></div>
  <h2>Weight over time</h2>
  <svg id="weight-chart" width="640" height="160" role="img" aria-label="canary weight over time"></svg>
  <h2>Checks</h2>
  <div id="checks"></div>
  <h2>Gates waited on</h2>
  <div id="gates" class="muted"></div>
  <h2>Decisions</h2>
  <table id="history"><thead><tr><th>Time</th><th>Phase</th><th>Weight</th><th>Checks</th><th>Decision</th></tr>
  </thead><tbody></tbody></table>
</section>
<script>
"use strict";
const canaries = new Map();
const SVG = "http://www.w3.org/2000/svg";

function el(tag, attrs, text) {
  const node = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function selected() { return decodeURIComponent(location.hash.slice(1)); }

function renderList() {
  const body = document.querySelector("#canaries tbody");
  body.replaceChildren();
  for (const c of [...canaries.values()].sort((a, b) => a.key.localeCompare(b.key))) {
    const row = el("tr", {"data-key": c.key});
    if (c.key === selected()) row.classList.add("selected");
    row.append(el("td", {}, c.namespace), el("td", {}, c.name),
               el("td", {"class": "phase phase-" + c.phase}, c.phase || "-"),
               el("td", {"class": "weight"}, String(c.weight)), el("td", {"class": "decision"}, c.decision || ""));
    row.addEventListener("click", () => { location.hash = encodeURIComponent(c.key); });
    body.append(row);
  }
}

function weightChart(svg, c) {
  svg.replaceChildren();
  const width = 640, height = 160, pad = 24;
  const points = c.weights;
  const top = Math.max(c.maxWeight || 100, ...points.map(p => p[1]), 1);
  const t0 = points.length ? points[0][0] : 0, t1 = points.length ? points[points.length - 1][0] : 1;
  const x = t => pad + (width - 2 * pad) * (t1 > t0 ? (t - t0) / (t1 - t0) : 1);
  const y = w => height - pad - (height - 2 * pad) * w / top;
  svg.append(el("svg:line", {x1: pad, y1: y(0), x2: width - pad, y2: y(0), stroke: "#bbb"}));
  svg.append(el("svg:text", {x: 2, y: y(top) + 4, "font-size": 10}, String(top)));
  svg.append(el("svg:text", {x: 2, y: y(0) + 4, "font-size": 10}, "0"));
  let path = "";
  points.forEach((p, i) => {
    if (i > 0) path += ` ${x(p[0])},${y(points[i - 1][1])}`;
    path += ` ${x(p[0])},${y(p[1])}`;
  });
  if (points.length) path += ` ${width - pad},${y(points[points.length - 1][1])}`;
  svg.append(el("svg:polyline", {points: path.trim(), fill: "none", stroke: "#3366cc", "stroke-width": 2}));
}

function rangeBar(check) {
  // The value against its bounds (a metric), or the judge's interval against its fail line.
  const svg = el("svg:svg", {width: 320, height: 22});
  const low = check.verdict ? 0 : (check.min ?? 0), high = check.verdict ? Math.max(check.failAbove || 1, 1) * 2 :
      (check.max ?? Math.max(check.value ?? 1, check.min ?? 1) * 1.5);
  const span = Math.max(high - low, 1e-9), scale = v => 10 + 300 * Math.min(Math.max((v - low) / span, 0), 1);
  svg.append(el("svg:line", {x1: 10, y1: 11, x2: 310, y2: 11, stroke: "#ddd", "stroke-width": 6}));
  if (check.verdict) {
    if (check.lower != null || check.upper != null) {
      svg.append(el("svg:line", {x1: scale(check.lower ?? low), y1: 11, x2: scale(check.upper ?? high), y2: 11,
                                 stroke: "#3366cc", "stroke-width": 6}));
    }
    if (check.failAbove != null) svg.append(el("svg:line", {x1: scale(check.failAbove), y1: 2,
                                                            x2: scale(check.failAbove), y2: 20, stroke: "#b00020"}));
    if (check.effect != null) svg.append(el("svg:circle", {cx: scale(check.effect), cy: 11, r: 4, fill: "#222"}));
  } else {
    if (check.min != null) svg.append(el("svg:line", {x1: scale(check.min), y1: 2, x2: scale(check.min), y2: 20,
                                                      stroke: "#b00020"}));
    if (check.max != null) svg.append(el("svg:line", {x1: scale(check.max), y1: 2, x2: scale(check.max), y2: 20,
                                                      stroke: "#b00020"}));
    if (check.value != null) svg.append(el("svg:circle", {cx: scale(check.value), cy: 11, r: 4,
                                                          fill: check.passed ? "#1b7f3b" : "#b00020"}));
  }
  return svg;
}

function describe(check) {
  if (check.verdict) {
    const fmt = v => v == null ? "n/a" : Number(v).toPrecision(3);
    return `${check.name}: ${check.verdict}, effect ${fmt(check.effect)}` +
           ` in [${fmt(check.lower)}, ${fmt(check.upper)}]` +
           (check.failAbove != null ? `, fails above ${check.failAbove}` : "");
  }
  const wanted = [check.min != null ? `>= ${check.min}` : "", check.max != null ? `<= ${check.max}` : ""]
      .filter(Boolean).join(" and ");
  const value = check.value == null ? "no value" : Number(check.value).toPrecision(4);
  return `${check.name}: ${check.passed ? "pass" : "FAIL"} ${check.kind === "metric" ? value : ""}` +
         (wanted ? ` (want ${wanted})` : "") + (check.message && !check.passed ? ` ${check.message}` : "");
}

function renderDetail() {
  const c = canaries.get(selected());
  const detail = document.getElementById("detail");
  if (!c) { detail.hidden = true; return; }
  detail.hidden = false;
  detail.dataset.key = c.key;
  document.getElementById("detail-title").textContent = c.key;
  detail.querySelector(".phase").textContent = c.phase || "-";
  detail.querySelector(".phase").className = "phase phase-" + c.phase;
  detail.querySelector(".weight-now").textContent = String(c.weight);
  detail.querySelector(".failed").textContent = String(c.failedChecks);
  weightChart(document.getElementById("weight-chart"), c);
  const checks = document.getElementById("checks");
  checks.replaceChildren(...c.checks.map(check => {
    // Inconclusive holds the step but is not a failed check: only failures are highlighted.
    const failing = !check.passed && check.verdict !== "Inconclusive";
    const box = el("div", {"class": "check" + (failing ? " failing" : ""), "data-name": check.name});
    box.append(el("div", {}, describe(check)), rangeBar(check));
    return box;
  }));
  if (!c.checks.length) checks.append(el("div", {"class": "muted"}, "no checks yet"));
  document.getElementById("gates").textContent = c.gates.length ? c.gates.join(", ") : "none";
  const history = document.querySelector("#history tbody");
  history.replaceChildren(...c.history.map(r => {
    const row = el("tr");
    row.append(el("td", {}, r.time), el("td", {}, r.phase), el("td", {}, r.weight),
               el("td", {}, r.checks.join("; ")), el("td", {}, r.decision));
    return row;
  }));
}

function render() { renderList(); renderDetail(); }

const token = new URLSearchParams(location.search).get("token") || "";
const source = new EventSource("events" + (token ? "?token=" + encodeURIComponent(token) : ""));
source.onopen = () => { document.getElementById("status").textContent = "live"; };
source.onerror = () => { document.getElementById("status").textContent = "reconnecting..."; };
source.onmessage = message => {
  const change = JSON.parse(message.data);
  if (change.type === "canary") canaries.set(change.canary.key, change.canary);
  if (change.type === "deleted") canaries.delete(change.key);
  render();
};
window.addEventListener("hashchange", render);
</script>
</body>
</html>
"""
