// depthlab explore: the page reads its state from the query string, asks /api/view, and draws.
"use strict";

const KEYS = ["depth", "width", "activation", "init", "sigma2", "bias_variance", "samples",
              "in_features", "seed", "steps", "lr", "optimizer"];
const $ = (id) => document.getElementById(id);
const plotConfig = { displaylogo: false, responsive: true };
const phaseCache = new Map();
let lastView = null;
let requestNumber = 0;
let updates = 0;
let debounce = null;
let trainJob = null;

// ----------------------------------------------------------------------------- the state

function readControls() {
  const params = new URLSearchParams();
  for (const key of KEYS) {
    if (key === "sigma2" && $("init").value !== "normal") continue;
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

function layerFigure(id, title, index, measured, predicted, yTitle) {
  const traces = [
    { x: index, y: measured, mode: "lines+markers", name: "measured", marker: { size: 5 } },
    { x: index, y: predicted, mode: "lines", name: "theory", line: { dash: "dash", color: "#444" } },
  ];
  const layout = { title: { text: title, font: { size: 14 } }, margin: { t: 36, r: 10, b: 40, l: 60 },
                   xaxis: { title: { text: "layer k" } }, yaxis: { type: "log", title: { text: yTitle } },
                   legend: { orientation: "h", y: -0.25 } };
  Plotly.react(id, traces, layout, plotConfig);
}

function histogramFigure() {
  if (!lastView) return;
  const slider = $("hist-layer");
  const k = Math.min(Number(slider.value), lastView.histograms.length - 1);
  $("hist-layer-value").textContent = String(k);
  const entry = lastView.histograms[k];
  const bars = (h, name) => {
    const centers = h.counts.map((_, i) => (h.edges[i] + h.edges[i + 1]) / 2);
    return { x: centers, y: h.counts, type: "bar", name, opacity: 0.6 };
  };
  Plotly.react("fig-hist", [bars(entry.preactivation, `f_${k}`), bars(entry.activation, `h_${k + 1} = a[f_${k}]`)],
               { title: { text: `histograms at layer ${k} (${lastView.state.samples} samples × width)`, font: { size: 14 } },
                 barmode: "overlay", bargap: 0, margin: { t: 36, r: 10, b: 40, l: 60 },
                 legend: { orientation: "h", y: -0.25 } }, plotConfig);
}

async function phaseFigure(range, theory) {
  const key = `activation=${encodeURIComponent(range.activation)}&w_max=${range.w_max}&b_max=${range.b_max}`;
  if (!phaseCache.has(key)) {
    const response = await fetch(`/api/phase?${key}`);
    const data = await response.json();
    if (!response.ok) { $("t-note").textContent = data.error; return; }
    phaseCache.set(key, data);
  }
  const data = phaseCache.get(key);
  const grey = data.explodes.map((row) => row.map((e) => (e ? 1 : null)));
  const traces = [
    { type: "heatmap", x: data.sigma_w2, y: data.sigma_b2, z: data.log10_chi1, zmid: 0, colorscale: "RdBu",
      reversescale: true, colorbar: { title: { text: "log₁₀ χ₁" } }, name: "log₁₀ χ₁" },
    { type: "heatmap", x: data.sigma_w2, y: data.sigma_b2, z: grey, showscale: false, hoverinfo: "skip",
      colorscale: [[0, "#bbb"], [1, "#bbb"]], name: "explodes" },
    { type: "contour", x: data.sigma_w2, y: data.sigma_b2, z: data.log10_chi1, showscale: false, hoverinfo: "skip",
      contours: { start: 0, end: 0, size: 1, coloring: "lines" }, line: { width: 2.5 },
      colorscale: [[0, "black"], [1, "black"]], name: "χ₁ = 1" },
    { type: "scatter", mode: "markers", x: [theory.sigma_w2], y: [theory.sigma_b2], name: "this network",
      marker: { size: 13, color: "#ffd600", line: { color: "black", width: 2 }, symbol: "star" } },
  ];
  Plotly.react("fig-phase", traces, {
    title: { text: `order-to-chaos phase diagram (${data.activation})`, font: { size: 14 } },
    margin: { t: 36, r: 10, b: 40, l: 60 }, showlegend: false,
    xaxis: { title: { text: "σ_w² = fan_in·Var(Ω)" } }, yaxis: { title: { text: "σ_b²" } } }, plotConfig);
}

function render(data) {
  lastView = data;
  const verdict = $("verdict");
  verdict.textContent = data.verdict;
  verdict.className = `verdict ${data.verdict}`;
  $("verdict-layer").textContent = data.verdict_layer === null ? "" : `from layer ${data.verdict_layer}`;
  $("diagnosis").textContent = data.diagnosis;
  renderTheory(data.theory);
  const L = data.layers;
  layerFigure("fig-forward", "forward: std of f_k", L.index, L.preactivation_std, L.predicted_preactivation_std, "std");
  layerFigure("fig-backward", "backward: std of dL/df_k", L.index, L.grad_preactivation_std, L.predicted_backward_std, "std");
  const slider = $("hist-layer");
  slider.max = String(data.histograms.length - 1);
  if (Number(slider.value) > data.histograms.length - 1) slider.value = String(data.histograms.length - 1);
  histogramFigure();
}

// ----------------------------------------------------------------------------- updates

async function update(query) {
  const number = ++requestNumber;
  const started = performance.now();
  const response = await fetch(`/api/view?${query}`);
  const data = await response.json();
  if (number !== requestNumber) return;              // a newer request is on its way
  if (!response.ok) {
    showMessage(data.error || `HTTP ${response.status}`);
    document.body.dataset.state = "error";
    return;
  }
  showMessage("");
  writeControls(data.state);
  render(data);
  await phaseFigure(data.phase_range, data.theory);
  if (number !== requestNumber) return;
  const ms = performance.now() - started;
  updates += 1;
  $("timing").textContent = `updated in ${ms.toFixed(0)} ms (server ${(1000 * data.seconds).toFixed(0)} ms)`;
  document.body.dataset.updateMs = ms.toFixed(1);
  document.body.dataset.updates = String(updates);
  document.body.dataset.state = "ready";
}

function controlsChanged() {
  syncLabels();
  clearTimeout(debounce);
  debounce = setTimeout(() => {
    const query = readControls().toString();
    history.replaceState(null, "", `?${query}`);
    update(query);
  }, 60);
}

// ----------------------------------------------------------------------------- training

function trainFigures(job) {
  const steps = job.loss.map((_, i) => i + 1);
  Plotly.react("fig-loss", [{ x: steps, y: job.loss, mode: "lines", name: "loss" }], {
    title: { text: "training loss (cross-entropy, MNIST-1D)", font: { size: 14 } },
    margin: { t: 36, r: 10, b: 40, l: 60 }, xaxis: { title: { text: "step" } }, yaxis: { type: "log" } }, plotConfig);
  const z = job.forward_std.length ? job.forward_std[0].map((_, layer) =>
    job.forward_std.map((row) => (row[layer] > 0 ? Math.log10(row[layer]) : null))) : [];
  Plotly.react("fig-train-std", [{ type: "heatmap", x: job.snapshot_steps, z, colorscale: "Viridis",
                                    colorbar: { title: { text: "log₁₀ std f_k" } } }], {
    title: { text: "how the per-layer std of f_k moves while training", font: { size: 14 } },
    margin: { t: 36, r: 10, b: 40, l: 60 }, xaxis: { title: { text: "step" } }, yaxis: { title: { text: "layer k" } } },
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
$("hist-layer").addEventListener("input", histogramFigure);
$("train").addEventListener("click", startTraining);
$("stop").addEventListener("click", stopTraining);
syncLabels();
update(new URLSearchParams(location.search).toString());     // the link, exactly as given
