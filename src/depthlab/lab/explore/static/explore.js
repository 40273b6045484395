// depthlab explore: the page reads its state from the query string, asks /api/view, and draws.
"use strict";

const KEYS = ["depth", "width", "activation", "init", "sigma2", "bias_variance", "samples",
              "in_features", "seed", "steps", "lr", "optimizer", "block", "norm", "residual_scale"];
const $ = (id) => document.getElementById(id);
const plotConfig = { displaylogo: false, responsive: true };
const phaseCache = new Map();
let updates = 0;
let trainJob = null;

// ----------------------------------------------------------------------------- the state

function readControls() {
  const params = new URLSearchParams();
  for (const key of KEYS) {
    if (key === "sigma2" && $("init").value !== "normal") continue;
    if (key === "residual_scale" && $("block").value === "plain") continue;
    params.set(key, $(key).value.trim());
  }
  return params;
}

function writeControls(state) {
  for (const key of KEYS) {
    if (state[key] !== undefined && state[key] !== null) $(key).value = String(state[key]);
  }
  syncLabels();
}

function syncLabels() {
  $("depth-value").textContent = $("depth").value;
  $("width-value").textContent = $("width").value;
  $("sigma2-label").hidden = $("init").value !== "normal";
  $("residual_scale-label").hidden = $("block").value === "plain";
}

function plainNetwork() {    // rows are Linear layers; else the network's blocks (as the view's "rows" says)
  return $("block").value === "plain" && $("norm").value === "none";
}

function showMessage(text) {
  const box = $("message");
  box.hidden = !text;
  box.textContent = text ? `This view cannot be computed: ${text}` : "";
}

// ----------------------------------------------------------------------------- formatting

function fmt(value) {
  if (value === null || value === undefined) return "—";
  if (value === 0) return "0";
  const size = Math.abs(value);
  return size >= 1e-3 && size < 1e5 ? Number(value.toPrecision(4)).toString() : value.toExponential(3);
}

function renderTheory(theory) {
  $("t-sigma_w2").textContent = fmt(theory.sigma_w2);
  $("t-sigma_b2").textContent = fmt(theory.sigma_b2);
  $("t-chi1").textContent = fmt(theory.chi1);
  $("t-phase").textContent = theory.phase || "—";
  $("t-q_star").textContent = theory.phase === "explodes" ? "∞ (no fixed point)" : fmt(theory.q_star);
  $("t-c_star").textContent = fmt(theory.c_star);
  const xiQ = theory.xi_q_infinite ? "∞" : fmt(theory.xi_q);
  const xiC = theory.xi_c_infinite ? "∞" : fmt(theory.xi_c);
  $("t-xi").textContent = `${xiQ}, ${xiC}`;
  $("t-note").textContent = theory.note || "";
}

// ----------------------------------------------------------------------------- figures
// A figure is drawn in full once (Plotly.react); an update only moves its data (Plotly.update),
// which skips plotly's diffing of the whole figure.

const drawn = new Map();

// Tick labels are drawn as they come: plotly's default ("hide past div") measures the box of
// every label on every redraw, a third of a redraw's time; these labels stay inside the figure.
const axis = (options) => ({ ticklabeloverflow: "allow", ...options });   // figure id -> the layout changes it was last given

function draw(id, traces, layout, data, layoutChanges) {
  const changes = JSON.stringify(layoutChanges || {});
  if (!drawn.has(id)) {
    drawn.set(id, changes);
    return Plotly.react(id, traces, layout, plotConfig);
  }
  if (drawn.get(id) === changes) return Plotly.restyle(id, data);    // only the data: no axes or titles redone
  drawn.set(id, changes);
  return Plotly.update(id, data, layoutChanges || {});
}

function layerFigure(id, title, index, measured, predicted, yTitle, xTitle) {
  const traces = [
    { x: index, y: measured, mode: "lines+markers", name: "measured", marker: { size: 5 } },
    { x: index, y: predicted, mode: "lines", name: "theory", line: { dash: "dash", color: "#444" } },
  ];
  const layout = { title: { text: title, font: { size: 14 } }, margin: { t: 36, r: 10, b: 40, l: 60 },
                   xaxis: axis({ title: { text: xTitle } }), yaxis: axis({ type: "log", title: { text: yTitle } }),
                   legend: { orientation: "h", y: -0.25 } };
  return draw(id, traces, layout, { x: [index, index], y: [measured, predicted] },
              { "title.text": title, "xaxis.title.text": xTitle });
}

function histogramFigure(data) {
  const k = data.layer;
  const where = plainNetwork() ? "layer" : "block";
  const title = `histograms at ${where} ${k} (${$("samples").value} samples × width)`;
  const bars = (h) => h.counts.map((_, i) => (h.edges[i] + h.edges[i + 1]) / 2);
  const pre = data.preactivation, act = data.activation;
  const names = data.names || [`f_${k}`, `h_${k + 1} = a[f_${k}]`];
  const traces = [{ x: bars(pre), y: pre.counts, type: "bar", name: names[0], opacity: 0.6 },
                  { x: bars(act), y: act.counts, type: "bar", name: names[1], opacity: 0.6 }];
  const layout = { title: { text: title, font: { size: 14 } }, barmode: "overlay", bargap: 0,
                   margin: { t: 36, r: 10, b: 40, l: 60 }, legend: { orientation: "h", y: -0.25 },
                   xaxis: axis({}), yaxis: axis({}) };
  return draw("fig-hist", traces, layout, { x: [traces[0].x, traces[1].x], y: [pre.counts, act.counts], name: names },
              { "title.text": title });
}

// The phase diagram is drawn in full only when its grid changes (another activation or range);
// otherwise only the marker of this network moves: a layout shape, so plotly recomputes nothing.
let phaseDrawn = null;

const STAR = Array.from({ length: 10 }, (_, i) => {          // a five-pointed star, in pixels
  const radius = i % 2 ? 4.5 : 11, angle = Math.PI / 2 + (i * Math.PI) / 5;
  return `${(radius * Math.cos(angle)).toFixed(2)},${(radius * Math.sin(angle)).toFixed(2)}`;
});
const STAR_PATH = `M${STAR.join("L")}Z`;

function marker(theory) {
  return [{ type: "path", path: STAR_PATH, xref: "x", yref: "y", xsizemode: "pixel", ysizemode: "pixel",
            xanchor: theory.sigma_w2, yanchor: theory.sigma_b2, fillcolor: "#ffd600", line: { color: "black", width: 1.5 } }];
}

async function fetchPhase(range) {
  const key = `activation=${encodeURIComponent(range.activation)}&w_max=${range.w_max}&b_max=${range.b_max}`;
  if (!phaseCache.has(key)) {
    const response = await fetch(`/api/phase?${key}`);
    const data = await response.json();
    if (!response.ok) throw new Error(data.error);
    data.grey = data.explodes.map((row) => row.map((e) => (e ? 1 : null)));
    phaseCache.set(key, data);
  }
  return [key, phaseCache.get(key)];
}

let markerAt = null;

function phaseFigure(key, data, theory) {
  const at = `${theory.sigma_w2},${theory.sigma_b2}`;
  if (phaseDrawn === key && markerAt === at) return null;            // same grid, the star where it was
  markerAt = at;
  if (phaseDrawn === key) return Plotly.relayout("fig-phase", { shapes: marker(theory) });
  phaseDrawn = key;
  const traces = [
    { type: "heatmap", x: data.sigma_w2, y: data.sigma_b2, z: data.log10_chi1, zmid: 0, colorscale: "RdBu",
      reversescale: true, colorbar: { title: { text: "log₁₀ χ₁" } }, name: "log₁₀ χ₁" },
    { type: "heatmap", x: data.sigma_w2, y: data.sigma_b2, z: data.grey, showscale: false, hoverinfo: "skip",
      colorscale: [[0, "#bbb"], [1, "#bbb"]], name: "explodes" },
    { type: "contour", x: data.sigma_w2, y: data.sigma_b2, z: data.log10_chi1, showscale: false, hoverinfo: "skip",
      contours: { start: 0, end: 0, size: 1, coloring: "lines" }, line: { width: 2.5 },
      colorscale: [[0, "black"], [1, "black"]], name: "χ₁ = 1" },
  ];
  return Plotly.react("fig-phase", traces, {
    title: { text: `order-to-chaos phase diagram (${data.activation}); ★ this network`, font: { size: 14 } },
    margin: { t: 36, r: 10, b: 40, l: 60 }, showlegend: false, shapes: marker(theory),
    xaxis: axis({ title: { text: "σ_w² = fan_in·Var(Ω)" } }), yaxis: axis({ title: { text: "σ_b²" } }) }, plotConfig);
}

function render(data) {
  const verdict = $("verdict");
  verdict.textContent = data.verdict;
  verdict.className = `verdict ${data.verdict}`;
  $("verdict-layer").textContent = data.verdict_layer === null ? "" : `from ${data.rows} ${data.verdict_layer}`;
  $("diagnosis").textContent = data.diagnosis;
  renderTheory(data.theory);
  const L = data.layers;
  const plain = data.rows === "layer";
  const x = plain ? "layer k" : "block i (net.layers[i])";
  return Promise.all([
    layerFigure("fig-forward", plain ? "forward: std of f_k" : "forward: std of each block's output", L.index,
                L.preactivation_std, L.predicted_preactivation_std, "std", x),
    layerFigure("fig-backward", plain ? "backward: std of dL/df_k" : "backward: std of dL/d(block output)", L.index,
                L.grad_preactivation_std, L.predicted_backward_std, "std", x),
  ]);
}

// ----------------------------------------------------------------------------- updates
// One view request at a time: changes made while one is on its way are merged into the next.
// The view brings the histograms of the slider's layer; when it arrives, the phase diagram
// is asked for if its grid is new (the server has started it with the view), and everything
// is drawn as it arrives.

let running = false;
let queued = null;

function schedule(query, since) {
  queued = { query, since: queued ? queued.since : since };
  if (!running) pump();
}

async function pump() {
  running = true;
  while (queued) {
    const job = queued;
    queued = null;
    try { await update(job.query, job.since); } catch (problem) { showMessage(String(problem.message || problem)); }
  }
  running = false;
}

async function getJSON(url) {
  const response = await fetch(url);
  const data = await response.json();
  if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
  return data;
}

function histogramLayer(last, rows) {
  const slider = $("hist-layer");
  slider.max = String(last);
  if (Number(slider.value) > last) slider.value = String(last);
  $("hist-layer-name").textContent = rows === "layer" ? "layer k" : "block i";
  $("hist-layer-value").textContent = slider.value;
  return Number(slider.value);
}

async function update(query, since) {
  let data;
  try {              // the slider's row comes with the view: its histograms are made from the view's own pass
    const params = new URLSearchParams(query);
    if (!params.has("layer")) params.set("layer", $("hist-layer").value);
    data = await getJSON(`/api/view?${params}`);
  } catch (problem) {
    showMessage(problem.message);
    document.body.dataset.state = "error";
    return;
  }
  histogramLayer(data.layers.index.length - 1, data.rows);
  const histogram = Promise.resolve(data.histogram);
  showMessage("");
  if (!queued) writeControls(data.state);          // else the controls already show a newer state
  const drawing = [render(data)];
  drawing.push(fetchPhase(data.phase_range).then(([key, phase]) => phaseFigure(key, phase, data.theory))
                 .catch((problem) => { $("t-note").textContent = problem.message; }));
  drawing.push(histogram.then((h) => (h && h.layer === Number($("hist-layer").value) ? histogramFigure(h) : null)));
  await Promise.all(drawing);
  const ms = performance.now() - since;
  updates += 1;
  $("timing").textContent = `updated in ${ms.toFixed(0)} ms (server ${(1000 * data.seconds).toFixed(0)} ms)`;
  document.body.dataset.updateMs = ms.toFixed(1);
  document.body.dataset.updates = String(updates);
  document.body.dataset.state = "ready";
}

// The address bar holds the controls and the histogram slider's layer (a link brings both back).
function writeLink(query) {
  history.replaceState(null, "", `?${query}&layer=${$("hist-layer").value}`);
}

function controlsChanged() {
  syncLabels();
  const query = readControls().toString();
  writeLink(query);
  schedule(query, performance.now());
}

// A link's layer= sets the slider (the view then keeps it within the network's rows); a value
// that is not a layer goes to the server as given, which says what is wrong with it.
function linkQuery() {
  const params = new URLSearchParams(location.search);
  const layer = params.get("layer");
  if (layer !== null && /^\d+$/.test(layer.trim())) {
    const slider = $("hist-layer");
    slider.max = String(Math.max(Number(slider.max), Number(layer)));
    slider.value = layer.trim();
  }
  return params.toString();
}

// The histogram slider asks for one layer; moves made while one is on its way are merged.
let histogramRunning = false;
let histogramQueued = false;

async function histogramMoved() {
  $("hist-layer-value").textContent = $("hist-layer").value;
  writeLink(readControls().toString());
  histogramQueued = true;
  if (histogramRunning) return;
  histogramRunning = true;
  while (histogramQueued) {
    histogramQueued = false;
    try {
      const h = await getJSON(`/api/histogram?${readControls()}&layer=${$("hist-layer").value}`);
      if (h.layer === Number($("hist-layer").value)) await histogramFigure(h);
    } catch (problem) { /* the view's message says what is wrong with the state */ }
  }
  histogramRunning = false;
}

// ----------------------------------------------------------------------------- training

function trainFigures(job) {
  const steps = job.loss.map((_, i) => i + 1);
  Plotly.react("fig-loss", [{ x: steps, y: job.loss, mode: "lines", name: "loss" }], {
    title: { text: "training loss (cross-entropy, MNIST-1D)", font: { size: 14 } },
    margin: { t: 36, r: 10, b: 40, l: 60 }, xaxis: axis({ title: { text: "step" } }), yaxis: axis({ type: "log" }) }, plotConfig);
  const z = job.forward_std.length ? job.forward_std[0].map((_, layer) =>
    job.forward_std.map((row) => (row[layer] > 0 ? Math.log10(row[layer]) : null))) : [];
  Plotly.react("fig-train-std", [{ type: "heatmap", x: job.snapshot_steps, z, colorscale: "Viridis",
                                    colorbar: { title: { text: "log₁₀ std" } } }], {
    title: { text: "how the per-layer std of the outputs moves while training", font: { size: 14 } },
    margin: { t: 36, r: 10, b: 40, l: 60 }, xaxis: axis({ title: { text: "step" } }),
    yaxis: axis({ title: { text: plainNetwork() ? "layer k" : "block i" } }) },
    plotConfig);
  const accuracy = job.test_accuracy === null ? "" : `, test accuracy ${(100 * job.test_accuracy).toFixed(1)}%`;
  $("train-status").textContent = `training: ${job.status}, ${job.steps_done}/${job.steps} steps${accuracy}` +
    (job.message ? ` — ${job.message}` : "");
}

async function pollTraining(id) {
  const response = await fetch(`/api/train/${id}`);
  const job = await response.json();
  if (!response.ok || trainJob !== id) return;
  trainFigures(job);
  if (job.status === "starting" || job.status === "running") setTimeout(() => pollTraining(id), 400);
  else { $("train").disabled = false; $("stop").disabled = true; }
}

async function startTraining() {
  const response = await fetch(`/api/train?${readControls()}`, { method: "POST" });
  const job = await response.json();
  if (!response.ok) { $("train-status").textContent = `cannot train: ${job.error}`; return; }
  trainJob = job.id;
  $("train").disabled = true;
  $("stop").disabled = false;
  pollTraining(job.id);
}

async function stopTraining() {
  if (trainJob) await fetch(`/api/train/${trainJob}/stop`, { method: "POST" });
}

// ----------------------------------------------------------------------------- start

for (const key of KEYS) {
  $(key).addEventListener(key === "depth" || key === "width" ? "input" : "change", controlsChanged);
}
$("hist-layer").addEventListener("input", histogramMoved);
$("train").addEventListener("click", startTraining);
$("stop").addEventListener("click", stopTraining);
syncLabels();
schedule(linkQuery(), performance.now());     // the link, exactly as given
