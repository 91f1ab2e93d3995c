"""The page `seqtune serve` answers ``GET /`` with: type a text (and its pair, when the model takes pairs), see the
labels with probability bars, the score for regression, every label for multi-label. One self-contained HTML file:
no CDN, no external fonts or scripts, so it works on a machine without internet. It reads ``/info`` and posts to
``/predict`` like any client.

``GET /docs`` gets a short page pointing at ``/openapi.json``: FastAPI's Swagger UI loads its scripts from a CDN,
which an offline server cannot promise.
"""

from __future__ import annotations

import html

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>__TITLE__</title>
<style>
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:760px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.4em;margin-bottom:.1em}.muted{color:#666;font-size:.9em}label{display:block;margin-top:1em;font-weight:600}
textarea{width:100%;box-sizing:border-box;font:inherit;padding:.5em;border:1px solid #bbb;border-radius:4px}
button{margin-top:1em;padding:.5em 1.4em;font:inherit;border:0;border-radius:4px;background:#2b6cb0;color:#fff}
button:disabled{background:#999}.row{display:flex;align-items:center;margin:.3em 0}
.name{width:35%;overflow-wrap:anywhere}.bar{flex:1;background:#eee;border-radius:3px;margin:0 .6em;height:1.1em}
.fill{background:#2b6cb0;height:100%;border-radius:3px}.on .fill{background:#2f855a}.value{width:4.5em;text-align:right}
.error{color:#b00020;margin-top:1em}#result{margin-top:1.2em}.answer{font-size:1.2em;margin:.4em 0 .8em}
</style></head>
<body>
<h1>__TITLE__</h1>
<p class="muted" id="about">Loading the model's description...</p>
<form id="form">
<label for="text" id="text-label">Text</label>
<textarea id="text" name="text" rows="4" required></textarea>
<div id="pair-box" hidden><label for="pair" id="pair-label">Second text</label>
<textarea id="pair" name="pair" rows="4"></textarea></div>
<button type="submit" id="submit">Predict</button>
</form>
<div id="error" class="error" role="alert"></div>
<div id="result" aria-live="polite"></div>
<p class="muted">API: <code>POST /predict</code>, <code>GET /info</code>, <code>GET /health</code>; schema at
<a href="/openapi.json">/openapi.json</a>.</p>
<script>
"use strict";
let info = null;
const $ = (id) => document.getElementById(id);
function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}
function bar(name, p, on) {
  const row = el("div", "row" + (on ? " on" : "")), fill = el("div", "fill"), track = el("div", "bar");
  fill.style.width = (100 * p).toFixed(1) + "%";
  track.appendChild(fill);
  row.append(el("span", "name", name), track, el("span", "value", p.toFixed(3)));
  row.dataset.label = name;
  return row;
}
function show(pred) {
  const out = $("result");
  out.replaceChildren();
  if (info.problem_type === "regression") {
    out.appendChild(el("div", "answer", "Score: " + pred.score.toFixed(4)));
    return;
  }
  const multi = info.problem_type === "multi_label_classification";
  const chosen = multi ? pred.labels : [pred.label];
  out.appendChild(el("div", "answer", multi ? "Labels: " + (chosen.length ? chosen.join(", ") : "(none)")
                                             : "Label: " + pred.label));
  const probs = Object.entries(pred.probabilities).sort((a, b) => b[1] - a[1]);
  for (const [name, p] of probs) out.appendChild(bar(name, p, chosen.includes(name)));
}
async function load() {
  const response = await fetch("/info");
  info = await response.json();
  const kind = {single_label_classification: "classifies", multi_label_classification: "tags (multi-label)",
                regression: "scores"}[info.problem_type];
  $("about").textContent = "Model " + info.model + " " + kind + " " + (info.pair ? "text pairs" : "texts") +
    (info.labels.length ? " into " + info.labels.length + " labels" : "") + " (task " + info.task + ").";
  $("text-label").textContent = info.inputs[0] || "Text";
  if (info.pair) {
    $("pair-box").hidden = false;
    $("pair").required = true;
    $("pair-label").textContent = info.inputs[1] || "Second text";
  }
}
$("form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("error").textContent = "";
  $("submit").disabled = true;
  const body = {text: $("text").value};
  if (info && info.pair) body.text_pair = $("pair").value;
  try {
    const response = await fetch("/predict", {method: "POST", headers: {"Content-Type": "application/json"},
                                              body: JSON.stringify(body)});
    const data = await response.json();
    if (!response.ok) throw new Error(data.detail || ("HTTP " + response.status));
    show(data.predictions[0]);
  } catch (err) {
    $("error").textContent = String(err.message || err);
  } finally {
    $("submit").disabled = false;
  }
});
load().catch((err) => { $("about").textContent = "Could not read /info: " + err; });
</script>
</body></html>
"""

_DOCS = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>API: __TITLE__</title></head>
<body style="font-family:system-ui,sans-serif;max-width:760px;margin:2em auto">
<h1>API of __TITLE__</h1>
<p>The OpenAPI schema is at <a href="/openapi.json">/openapi.json</a>: load it into any OpenAPI viewer or client
generator. The interactive Swagger UI is off because it loads its scripts from a CDN, and this server works
offline. Try the model on <a href="/">the demo page</a>.</p>
</body></html>
"""


def demo_page(title: str) -> str:
    """The demo page for a served run called ``title``."""
    return _PAGE.replace("__TITLE__", html.escape(title))


def docs_page(title: str) -> str:
    """What ``GET /docs`` shows: where the schema is."""
    return _DOCS.replace("__TITLE__", html.escape(title))
