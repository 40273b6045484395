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

function queryOf(values) {    // the query of the controls' values ({key: text}), in KEYS' order
  const params = new URLSearchParams();
  for (const key of KEYS) {
    if (key === "sigma2" && values.init !== "normal") continue;
    if (key === "residual_scale" && values.block === "plain") continue;
    params.set(key, values[key].trim());
  }
  return params;
}

const controlValues = () => Object.fromEntries(KEYS.map((key) => [key, $(key).value]));

function readControls() {
  return queryOf(controlValues());
}

function writeControls(state) {
  for (const key of KEYS) {
    if (state[key] !== undefined && state[key] !== null) $(key).value = String(state[key]);
    shown[key] = $(key).value;
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
// The three views of the network's layers (forward std, backward std, histograms) are one
// figure of three panels, drawn in full (Plotly.react) once and again only when a title, a
// legend entry or the arrangement changes. Any other update moves only the
// traces: Plotly.animate without a redraw keeps the axes, titles and legends as drawn (a full
// redraw is mostly those: about half of its time). plotly's autorange runs only on a redraw,
// so the page sets every axis range itself (axisRanges) and hands the ones that changed to
// the same call; they snap outwards to round steps and stay while the data fit, so a new seed
// often leaves an axis where it was (measured: about half of the axes move at a seed change of
// a ReLU network, 50 × 80, whose deep layers' scale varies from seed to seed).

// Tick labels are drawn as they come: plotly's default ("hide past div") measures the box of
// every label on every redraw, a third of a redraw's time; these labels stay inside the figure.
const axis = (options) => ({ ticklabeloverflow: "allow", ...options });

const PANELS = 3;                     // forward, backward, histograms
const TRACES = [0, 1, 2, 3, 4, 5];    // two per panel: measured and theory; f_k's and h_k+1's histogram
const NARROW = 900;                   // below this width (px) the panels stack, one per row
const layers = { layout: null, ranges: null, wide: null, view: null, histogram: null };   // what the figure shows

// Panel i's domains (paper fractions) in the figure's arrangement: side by side, or stacked.
function domains(wide) {
  const gap = wide ? 0.07 : 0.12, size = (1 - (PANELS - 1) * gap) / PANELS;
  return Array.from({ length: PANELS }, (_, i) => {
    const span = [i * (size + gap), i * (size + gap) + size];
    return wide ? { x: span, y: [0, 1] } : { x: [0, 1], y: [1 - span[1], 1 - span[0]] };
  });
}

const isWide = () => $("fig-layers").clientWidth >= NARROW;

function layersLayout(titles, axisTitles) {
  const wide = layers.wide = isWide();
  const layout = { margin: { t: 30, r: 10, b: wide ? 80 : 40, l: 60 }, height: wide ? 360 : 1050,
                   barmode: "overlay", bargap: 0, annotations: [] };
  domains(wide).forEach((domain, i) => {
    const n = i ? String(i + 1) : "";
    layout[`xaxis${n}`] = axis({ domain: domain.x, anchor: `y${n}`, title: { text: axisTitles[i][0] } });
    layout[`yaxis${n}`] = axis({ domain: domain.y, anchor: `x${n}`, type: i < 2 ? "log" : "linear",
                                 title: { text: axisTitles[i][1] } });
    layout[i ? `legend${i + 1}` : "legend"] = { orientation: "h", xref: "paper", yref: "paper", x: domain.x[0],
                                                  y: domain.y[0] - (wide ? 0.2 : 0.05), yanchor: "top" };
    layout.annotations.push({ text: titles[i], showarrow: false, font: { size: 14 }, xref: "paper", yref: "paper",
                              x: (domain.x[0] + domain.x[1]) / 2, y: domain.y[1], xanchor: "center", yanchor: "bottom" });
  });
  return layout;
}

// The histograms' title and legend name the slider's row in general terms (the slider under the
// figure shows which row): a title or legend entry that changes costs a full redraw, and the
// depth slider moves the row whenever the network gets shallower than it.
//
// Each histogram is drawn as one filled step outline (matplotlib's "stepfilled"), one path
// where bars are an element per bin that every update moves (160 of them: an update 30 → 20 ms,
// 48 → 37 when axes move). Its points are the bins' centres, stepped halfway between them (at
// the edges: the bins are equal), and the outer edges twice, down to zero and up to the first
// and last counts; the nearest point to the pointer is then its bin's, and says its range.
function histogramPart(data) {
  const plain = plainNetwork(), where = plain ? "layer k" : "block i";
  const outline = (h) => {
    const n = h.counts.length, e = h.edges;
    if (!n) return { x: [], y: [], bins: [] };
    const centres = h.counts.map((_, i) => (e[i] + e[i + 1]) / 2);
    const bins = h.counts.map((c, i) => `[${fmt(e[i])}, ${fmt(e[i + 1])}): ${c} values`);
    return { x: [e[0], e[0], ...centres, e[n], e[n]], y: [0, h.counts[0], ...h.counts, h.counts[n - 1], 0],
             bins: [bins[0], bins[0], ...bins, bins[n - 1], bins[n - 1]] };
  };
  const shown = [outline(data.preactivation), outline(data.activation)];
  return { title: `histograms at the slider's ${where}`,
           names: plain ? ["f_k", "h_k+1 = a[f_k]"] : ["input of block i", "output of block i"],
           layer: data.layer,
           x: shown.map((o) => o.x), y: shown.map((o) => o.y), bins: shown.map((o) => o.bins),
           edges: [data.preactivation.edges, data.activation.edges] };
}

function viewPart(data) {
  const L = data.layers;
  const plain = data.rows === "layer";
  return { titles: [plain ? "forward: std of f_k" : "forward: std of each block's output",
                    plain ? "backward: std of dL/df_k" : "backward: std of dL/d(block output)"],
           x: plain ? "layer k" : "block i (net.layers[i])", index: L.index,
           y: [L.preactivation_std, L.predicted_preactivation_std, L.grad_preactivation_std, L.predicted_backward_std] };
}

// The measured lines mark each row while a network has at most MARKED_ROWS of them; deeper, the
// line alone (its rows are a few pixels apart, and each marker is an element that an update
// moves: 102 markers were ~15 ms of an update of a 50-layer network's figure).
const MARKED_ROWS = 20;

// Trace i of the layers' figure: two per panel (measured and theory; f_k's and h_k+1's histogram).
function layerTrace(i, x, y, name, marked, bins) {
  const panel = Math.floor(i / 2), n = panel ? String(panel + 1) : "";
  const color = i % 2 ? "#ff7f0e" : "#1f77b4";
  const style = panel === 2 ? { mode: "lines", line: { shape: "hvh", width: 1.5, color }, fill: "tozeroy",
                                fillcolor: i % 2 ? "rgba(255,127,14,0.35)" : "rgba(31,119,180,0.35)",
                                customdata: bins, hovertemplate: "%{customdata}" }
    : i % 2 ? { mode: "lines", line: { dash: "dash", color: "#444" } }
    : { mode: marked ? "lines+markers" : "lines", marker: { size: 5, color: "#1f77b4" }, line: { color: "#1f77b4" } };
  return { x, y, name, ...style, xaxis: `x${n}`, yaxis: `y${n}`, legend: `legend${n}` };
}

// The smallest of 1, 2, 5 × 10^k that is >= size.
function niceStep(size) {
  const unit = 10 ** Math.floor(Math.log10(size));
  return [1, 2, 5, 10].map((m) => m * unit).find((step) => step >= size * (1 - 1e-12));
}

// [low, high] widened by 4% of its span (at least minSpan) on each side and snapped outwards to
// a round step (1, 2, 5 × 10^k) of at least an eighth of the span and at least minStep; null
// when it leaves the floats (plotly's autorange then decides).
function snapped(low, high, minSpan, minStep = 0) {
  const span = Math.max(high - low, minSpan), pad = 0.04 * span, step = Math.max(niceStep(span / 8), minStep);
  const range = [Math.floor((low - pad) / step) * step, Math.ceil((high + pad) / step) * step];
  return range.every(Number.isFinite) ? range : null;
}

function extent(series, keep) {     // [min, max] of the finite values that pass keep(), or null
  let low = Infinity, high = -Infinity;
  for (const values of series) {
    for (const v of values) {
      if (v !== null && Number.isFinite(v) && keep(v)) { low = Math.min(low, v); high = Math.max(high, v); }
    }
  }
  return low <= high ? [low, high] : null;
}

// The layer axis of rows 0 … last: its end snapped up to a tenth of the depth (1, 2, 5 × 10^k).
function rowRange(last) {
  const step = niceStep(Math.max(last, 1) / 10);
  return [-0.5 - 0.02 * last, step * Math.ceil((1.02 * last + 0.5) / step)];
}

// Every axis's range for these data, in plotly's units (decades on the log axes), with the
// extent of the data it must show: { axis: [range, [low, high]] }; null where the data give none.
function freshRanges(data) {
  const decades = (series) => {
    const found = extent(series, (v) => v > 0);
    if (!found) return null;
    const low = Math.log10(found[0]), high = Math.log10(found[1]);
    return [snapped(low, high, 0.5, 0.25), [low, high]];                 // quarter decades at least
  };
  const rows = extent([data.x[0]], () => true), layer = rows && [rowRange(rows[1]), [-0.5, rows[1] + 0.5]];
  const edges = extent(data.edges, () => true), counts = extent(data.y.slice(4), () => true);
  return { xaxis: layer, yaxis: decades(data.y.slice(0, 2)), xaxis2: layer, yaxis2: decades(data.y.slice(2, 4)),
           xaxis3: edges && [snapped(edges[0], edges[1], Math.abs(edges[1]) * 1e-9 || 1e-9), edges],
           yaxis3: counts && [[0, snapped(0, counts[1], 1)[1]], [0, counts[1]]] };
}

// The ranges to draw: an axis that shows the data keeps its range, and one that does not grows
// to take them in (the union of its range and the fresh one), while it is at most STICKY times
// as long as the fresh range; otherwise it takes the fresh range. So a new seed, or the depth
// slider's next step, often leaves an axis as it was and the frame stays still while one
// compares them; a change of regime (a network that explodes made healthy) gets its own axes.
// (Looser axes move less — at 3 times, 26 of 39 seed changes moved one instead of 36 — but
// then a histogram may fill a third of its panel.)
const STICKY = 1.5;

function axisRanges(data, drawn) {
  const ranges = {};
  for (const [name, found] of Object.entries(freshRanges(data))) {
    const fresh = found && found[0], old = drawn && drawn[name];
    if (!fresh || !old) { ranges[name] = fresh; continue; }
    const [low, high] = found[1];
    const next = old[0] <= low && high <= old[1] ? old : [Math.min(old[0], fresh[0]), Math.max(old[1], fresh[1])];
    ranges[name] = next[1] - next[0] <= STICKY * (fresh[1] - fresh[0]) ? next : fresh;
  }
  return ranges;
}

// Draw the layers' figure from the view's part and the histograms' part (either may be new),
// one drawing at a time: the view, the histogram slider and a resize may each ask at any
// moment, and plotly never settles the promise of an animation that another one interrupts.
let layersDrawing = Promise.resolve();

function drawLayers() {
  const drawn = layersDrawing.then(drawLayersNow);
  layersDrawing = drawn.catch(() => {});            // a failed drawing does not block the next
  return drawn;
}

function drawLayersNow() {
  const view = layers.view, hist = layers.histogram ||
    { title: "histograms", names: ["", ""], x: [[], []], y: [[], []], bins: [[], []], edges: [[], []] };
  const titles = [...view.titles, hist.title];
  const axisTitles = [[view.x, "std"], [view.x, "std"], ["value", "count"]];
  const data = { x: [view.index, view.index, view.index, view.index, ...hist.x], y: [...view.y, ...hist.y],
                 name: ["measured", "theory", "measured", "theory", ...hist.names], edges: hist.edges,
                 bins: [null, null, null, null, ...hist.bins] };       // the histograms' points' bins (hover)
  const marked = view.index.length <= MARKED_ROWS;
  const key = JSON.stringify([titles, axisTitles, data.name, isWide(), marked]);
  const ranges = axisRanges(data, layers.layout === key ? layers.ranges : null);
  $("fig-layers").dataset.histogramRow = hist.layer === undefined ? "" : String(hist.layer);   // the row its histograms show
  if (layers.layout === key && Object.values(ranges).every((r) => r !== null)) {
    const moved = {};
    for (const [name, range] of Object.entries(ranges)) {
      if (String(range) !== String(layers.ranges[name])) moved[name] = { range, autorange: false };
    }
    layers.ranges = ranges;
    const traces = data.x.map((x, i) => (data.bins[i] ? { x, y: data.y[i], customdata: data.bins[i] } : { x, y: data.y[i] }));
    return Plotly.animate("fig-layers", { data: traces, traces: TRACES, layout: moved },
                          { transition: { duration: 0 }, frame: { duration: 0, redraw: false }, mode: "immediate" });
  }
  const layout = layersLayout(titles, axisTitles);
  for (const [name, range] of Object.entries(ranges)) {     // plotly's autorange where the page has none
    Object.assign(layout[name], range === null ? { autorange: true } : { range, autorange: false });
  }
  layers.layout = key;
  layers.ranges = ranges;
  $("fig-layers").style.height = `${layout.height}px`;    // a responsive figure fills its box: give the box the height
  // react, not update: an update that sets the height freezes the width at its current value,
  // and the figure would then no longer follow the window's width
  return Plotly.react("fig-layers", data.x.map((x, i) => layerTrace(i, x, data.y[i], data.name[i], marked, data.bins[i])), layout,
                      plotConfig);
}

function layersFigure(data) {            // a view, with the histograms of the slider's layer when it brings them
  layers.view = viewPart(data);
  if (data.histogram && data.histogram.layer === Number($("hist-layer").value)) layers.histogram = histogramPart(data.histogram);
  return drawLayers();
}

function histogramFigure(data) {         // the histograms of another layer (the slider moved)
  layers.histogram = histogramPart(data);
  return layers.view ? drawLayers() : null;
}

// The phase diagram is drawn in full only when its grid changes (another activation or range);
// otherwise only the marker of this network moves: a layout shape, so plotly recomputes nothing.
// While the page is idle it also draws the other activations' diagrams of the same range into
// hidden figures in the same box (phaseSpares), and an activation switch shows one of those
// instead of drawing: a drawing (20–60 ms of the browser's main thread) no longer shares the
// processors with the server's probe of the new network (a switch measured 30–35 ms faster).

const STAR = Array.from({ length: 10 }, (_, i) => {          // a five-pointed star, in pixels
  const radius = i % 2 ? 4.5 : 11, angle = Math.PI / 2 + (i * Math.PI) / 5;
  return `${(radius * Math.cos(angle)).toFixed(2)},${(radius * Math.sin(angle)).toFixed(2)}`;
});
const STAR_PATH = `M${STAR.join("L")}Z`;

function marker(theory) {
  return [{ type: "path", path: STAR_PATH, xref: "x", yref: "y", xsizemode: "pixel", ysizemode: "pixel",
            xanchor: theory.sigma_w2, yanchor: theory.sigma_b2, fillcolor: "#ffd600", line: { color: "black", width: 1.5 } }];
}

const phaseKey = (range) => `activation=${encodeURIComponent(range.activation)}&w_max=${range.w_max}&b_max=${range.b_max}`;

async function fetchPhase(range) {
  const key = phaseKey(range);
  if (!phaseCache.has(key)) {
    const response = await fetch(`/api/phase?${key}`);
    const data = await response.json();
    if (!response.ok) throw new Error(data.error);
    phaseCache.set(key, data);
  }
  return [key, phaseCache.get(key)];
}

const EXPLODES_GREY = "#bbb";
const markerAt = (theory) => `${theory.sigma_w2},${theory.sigma_b2}`;

function drawPhase(div, key, data, theory) {      // the diagram of grid `key` in `div`, from scratch
  div.dataset.key = key;
  div.dataset.markerAt = markerAt(theory);
  // Where the variance grows without bound log10 χ₁ is null: the heatmap leaves those cells
  // out and the plot's grey background shows through (one heatmap image to draw, not two).
  const traces = [
    { type: "heatmap", x: data.sigma_w2, y: data.sigma_b2, z: data.log10_chi1, zmid: 0, colorscale: "RdBu",
      reversescale: true, colorbar: { title: { text: "log₁₀ χ₁" } }, name: "log₁₀ χ₁", hoverongaps: false },
    { type: "scatter", mode: "lines", x: data.edge_of_chaos.sigma_w2, y: data.edge_of_chaos.sigma_b2,
      line: { width: 2.5, color: "black" }, hoverinfo: "skip", name: "χ₁ = 1" },       // computed by the server
  ];
  return Plotly.react(div, traces, {
    title: { text: `order-to-chaos phase diagram (${data.activation}); ★ this network`, font: { size: 14 } },
    margin: { t: 36, r: 10, b: 40, l: 60 }, showlegend: false, shapes: marker(theory), plot_bgcolor: EXPLODES_GREY,
    // no grid or zero line: the heatmap hides them, and on the grey they would read as lines of the diagram
    xaxis: axis({ title: { text: "σ_w² = fan_in·Var(Ω)" }, showgrid: false, zeroline: false }),
    yaxis: axis({ title: { text: "σ_b²" }, showgrid: false, zeroline: false }) }, plotConfig);
}

const phaseSpares = new Map();            // grid key -> a hidden figure of that diagram, the last SPARES
const SPARES = 12;                        // every activation's at one range, and a few more

function dropFigure(div) {
  Plotly.purge(div);
  div.remove();
}

function keepSpare(div) {
  div.classList.add("spare");
  div.removeAttribute("id");
  const kept = phaseSpares.get(div.dataset.key);
  if (kept !== undefined && kept !== div) dropFigure(kept);       // drawn twice (a switch came meanwhile)
  phaseSpares.delete(div.dataset.key);
  phaseSpares.set(div.dataset.key, div);
  while (phaseSpares.size > SPARES) {
    const [oldest, figure] = phaseSpares.entries().next().value;
    phaseSpares.delete(oldest);
    dropFigure(figure);
  }
}

function showSpare(key) {                 // the hidden figure of `key` shown in place of the one shown
  const shown = $("fig-phase"), spare = phaseSpares.get(key);
  phaseSpares.delete(key);
  if (shown.dataset.key) keepSpare(shown); else shown.remove();   // the diagram left stays, hidden
  spare.classList.remove("spare");
  spare.id = "fig-phase";
  return spare;
}

function phaseFigure(key, data, theory) {
  let shown = $("fig-phase");
  if (shown.dataset.key !== key && phaseSpares.has(key)) shown = showSpare(key);
  if (shown.dataset.key !== key) return drawPhase(shown, key, data, theory);
  if (shown.dataset.markerAt === markerAt(theory)) return null;       // same grid, the star where it was
  shown.dataset.markerAt = markerAt(theory);
  return Plotly.relayout(shown, { shapes: marker(theory) });
}

// Draw the diagrams of the shown range's other activations into hidden figures, one at a time,
// nearest in the menu first, while the page stays idle (not at the edge of chaos, whose range is
// each activation's own). Started SPARES_AFTER ms after the page became idle: once per range (a
// new seed, depth or width keeps it), so a page has them a second or so after it opened; a
// change that comes while one is drawn waits for it (~20–40 ms), once.
let drawingSpares = false;

async function drawSpares() {
  if (drawingSpares) return;
  drawingSpares = true;
  const idle = () => !running && !queued && !histogramRunning && document.body.dataset.state === "ready";
  try {
    while (idle() && phaseShown && phaseShown.params.get("init") !== "critical") {
      const names = otherOptions("activation").filter((q) => q !== null)
        .map((query) => new URLSearchParams(query).get("activation"));
      const ranges = names.map((activation) => ({ ...phaseShown.range, activation }));
      const range = ranges.find((r) => !phaseSpares.has(phaseKey(r)) && $("fig-phase").dataset.key !== phaseKey(r));
      if (range === undefined) break;
      const [key, data] = await fetchPhase(range);
      if (!idle() || phaseSpares.has(key)) continue;
      const div = document.createElement("div");
      div.className = "phase-figure spare";
      $("phase-box").appendChild(div);
      try {
        await drawPhase(div, key, data, phaseShown.theory);
      } catch (problem) {
        dropFigure(div);
        throw problem;
      }
      keepSpare(div);
    }
  } catch (problem) { /* a diagram the server refused: drawn (and its error shown) if it is switched to */ }
  drawingSpares = false;
}

let sparesTimer = null;
const SPARES_AFTER = 150;

function drawSparesWhenIdle() {
  clearTimeout(sparesTimer);
  sparesTimer = setTimeout(drawSpares, SPARES_AFTER);
}

function render(data) {
  const verdict = $("verdict");
  verdict.textContent = data.verdict;
  verdict.className = `verdict ${data.verdict}`;
  $("verdict-layer").textContent = data.verdict_layer === null ? "" : `from ${data.rows} ${data.verdict_layer}`;
  $("diagnosis").textContent = data.diagnosis;
  renderTheory(data.theory);
  return layersFigure(data);
}

// ----------------------------------------------------------------------------- updates
// One view request at a time: changes made while one is on its way are merged into the next.
// The view brings the histograms of the slider's layer; when it arrives, the phase diagram
// is asked for if its grid is new (the server has started it with the view), and everything
// is drawn as it arrives.

let running = false;
let queued = null;
const KEPT_MS = 3;       // a view the server answers faster than this it had kept (probing takes tens of ms)

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
  lookAhead();
  drawSparesWhenIdle();
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

// The phase diagram depends on the activation and on σ_w², σ_b² (its range and the star), which
// the init, sigma2, width and bias_variance fix, except at the edge of chaos ("critical": σ_w² of
// the activation). When only the activation changed, the page draws the new activation's diagram
// while the server probes the network (its grid is warmed or on its way): not after the view came.
const PHASE_KEYS = ["init", "sigma2", "width", "bias_variance"];
let phaseShown = null;                     // { params, range, theory } of the last view's phase diagram

function phaseAhead(params) {
  const last = phaseShown;
  if (!last || params.get("init") === "critical" || PHASE_KEYS.some((key) => params.get(key) !== last.params.get(key))) {
    return Promise.resolve();
  }
  const range = { ...last.range, activation: params.get("activation") };
  return fetchPhase(range).then(([key, phase]) => phaseFigure(key, phase, last.theory)).catch(() => {});
}

async function update(query, since) {
  let data, early = Promise.resolve();
  try {              // the slider's row comes with the view: its histograms are made from the view's own pass
    const params = new URLSearchParams(query);
    if (!params.has("layer")) params.set("layer", $("hist-layer").value);
    remember(params.toString());
    early = phaseAhead(params);
    data = await getJSON(`/api/view?${params}`);
  } catch (problem) {
    showMessage(problem.message);
    writeLinkWhenIdle();
    document.body.dataset.state = "error";
    return;
  }
  histogramLayer(data.layers.index.length - 1, data.rows);
  showMessage("");
  if (!queued) {                                   // else the controls already show a newer state
    writeControls(data.state);
    phaseShown = { params: readControls(), range: data.phase_range, theory: data.theory };   // as the next change reads them
  }
  const drawing = [render(data)];                  // the layers' figure, with the histograms the view brought
  drawing.push(early.then(() => fetchPhase(data.phase_range)).then(([key, phase]) => phaseFigure(key, phase, data.theory))
                 .catch((problem) => { $("t-note").textContent = problem.message; }));
  await Promise.all(drawing);
  const ms = performance.now() - since;
  writeLinkWhenIdle();
  updates += 1;
  const server = 1000 * data.seconds;
  $("timing").textContent = `updated in ${ms.toFixed(0)} ms (server ${server.toFixed(0)} ms` +
    (server < KEPT_MS ? ": it had this view, computed ahead or seen before)" : ")");
  document.body.dataset.updateMs = ms.toFixed(1);
  document.body.dataset.serverMs = server.toFixed(1);
  document.body.dataset.updates = String(updates);
  document.body.dataset.state = "ready";
}

// The address bar holds the controls and the histogram slider's layer (a link brings both back).
// It is written once the views of the last change are drawn, not on every change: a dragged
// slider fires a change per step, and each history.replaceState is a same-document navigation
// that costs the browser tens of milliseconds of CPU, spent beside the server's computation of
// the view (browsers also throttle a page that replaces its address too often).
let linkWanted = false;

function writeLinkWhenIdle() {
  if (!linkWanted || queued || histogramQueued) return;       // nothing new, or more is on its way
  linkWanted = false;
  history.replaceState(null, "", `?${readControls()}&layer=${$("hist-layer").value}`);
}

function controlsChanged(event) {
  stopLookingAhead();
  menuOpened = null;
  noteMove(event.target);
  syncLabels();
  linkWanted = true;
  schedule(readControls().toString(), performance.now());
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
  stopLookingAhead();
  $("hist-layer-value").textContent = $("hist-layer").value;
  linkWanted = true;
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
  writeLinkWhenIdle();
  lookAhead();
}

// ----------------------------------------------------------------------------- looking ahead
// While the page is idle it asks the server to compute the views a hand is likely to ask for
// next, one at a time: the control moved last one step on, a new seed, the depth slider's two
// neighbours, the last control one step back, then (after a second's rest) the activation
// menu's other options; while a hand has a menu open, that menu's options first. The server
// computes them in a worker process and keeps them
// (/api/ahead), so a change the page foresaw is drawn without waiting for the network. A
// control that moves stops the asking, and its view pauses the worker until the page is idle
// again and asks for the next: the look-ahead never takes a processor from a view asked for
// or from its drawing.

const STEPPED = ["depth", "width", "seed", "samples", "in_features"];   // whole numbers: a step is ±1
const MENUS = ["activation", "init", "block", "norm"];                 // a step is the next option
const shown = {};                          // each control's value in the last view asked for
let lastMove = { key: "seed", sign: 1 };   // the control moved last, and which way
const asked = new Map();                   // the views asked for or looked ahead (their queries), the last ASKED
const ASKED = 200;                         // fewer than the server keeps (256)

function remember(query) {
  asked.delete(query);
  asked.set(query, true);
  if (asked.size > ASKED) asked.delete(asked.keys().next().value);
}

function noteMove(control) {
  const key = control.id, before = shown[key];
  let sign = 1;
  if (STEPPED.includes(key)) sign = Number(control.value) < Number(before) ? -1 : 1;
  if (MENUS.includes(key)) sign = control.selectedIndex < [...control.options].findIndex((o) => o.value === before) ? -1 : 1;
  lastMove = { key, sign };
  shown[key] = control.value;
}

// The query of the shown state with control `key` one step (sign ±1) on, or null past its end.
function stepped(key, sign) {
  const control = $(key), values = controlValues();
  if (STEPPED.includes(key)) {
    const value = Number(control.value) + sign;
    const low = control.min === "" ? -Infinity : Number(control.min), high = control.max === "" ? Infinity : Number(control.max);
    if (control.value.trim() === "" || !Number.isInteger(value) || value < low || value > high) return null;
    values[key] = String(value);
  } else if (MENUS.includes(key)) {
    const option = control.options[control.selectedIndex + sign];    // sign: ±1, or ±k options away
    if (!option) return null;
    values[key] = option.value;
  } else {
    return null;                           // sigma2, bias_variance, residual_scale: no natural step
  }
  const params = queryOf(values);
  params.set("layer", $("hist-layer").value);
  return params.toString();
}

// A menu's other options, nearest first (a page left idle long enough has the activations').
function otherOptions(key) {
  const menu = $(key), out = [];
  for (let step = 1; step < menu.options.length; step += 1) out.push(stepped(key, step), stepped(key, -step));
  return out;
}

function foreseen() {
  const { key, sign } = lastMove;
  const near = [stepped(key, sign), stepped("seed", 1), stepped("depth", -1), stepped("depth", 1), stepped(key, -sign)];
  return menuOpened ? [...otherOptions(menuOpened), ...near] : near;   // a hand on a menu picks from it next
}

const REST = 1000;       // ms idle after the near steps before the other activations (a hand that moves on needs none)

let lookingAhead = null;                   // the AbortController of the look-ahead under way
let menuOpened = null;                     // the menu a hand has opened (focused) and not yet chosen from
let endRest = null;                        // ends the look-ahead's rest at once

async function lookAhead() {
  if (lookingAhead) return;
  const mine = lookingAhead = new AbortController();
  document.body.dataset.lookAhead = "running";
  const idle = () => !mine.signal.aborted && !running && !queued && !histogramRunning &&
    document.body.dataset.state === "ready";
  const wanted = (query) => query !== null && !asked.has(query);
  let rested = false;
  try {
    while (idle()) {
      let next = foreseen().find(wanted);
      if (next === undefined) {
        if (!rested) {
          rested = true;
          await new Promise((resume) => { endRest = resume; setTimeout(resume, REST); });
          endRest = null;
          continue;
        }
        next = otherOptions("activation").find(wanted);
        if (next === undefined) break;
      }
      remember(next);
      await fetch(`/api/ahead?${next}`, { signal: mine.signal });   // answered once the view is kept
    }
  } catch (problem) { /* stopped, or a guess that failed: the view is computed when asked for */ }
  if (lookingAhead === mine) {
    lookingAhead = null;
    document.body.dataset.lookAhead = "idle";
  }
}

// A hand opens a menu (a click or the keyboard focuses it): its options are what it asks for
// next, so the look-ahead computes them first, nearest first, without its rest; a mouse takes
// a second or so to pick one. Until the menu is left or a choice is made.
function menuOpens(event) {
  menuOpened = event.currentTarget.id;
  if (endRest) endRest();
  lookAhead();                             // if it had finished (idle): again, with the menu's options
}

function menuLeft() {
  menuOpened = null;
}

// A control moved: the look-ahead stops waiting for the view it asked for (the server pauses
// that one while it computes the change, and the page asks again when it is idle).
function stopLookingAhead() {
  if (lookingAhead) lookingAhead.abort();
  lookingAhead = null;
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

// Before any training the two training figures say what they will show (not two empty boxes).
function trainPlaceholders() {
  const note = (text) => ({ margin: { t: 36, r: 10, b: 40, l: 60 }, xaxis: { visible: false }, yaxis: { visible: false },
                            annotations: [{ text, showarrow: false, font: { size: 14, color: "#555" },
                                            xref: "paper", yref: "paper", x: 0.5, y: 0.5 }] });
  if (trainJob !== null) return;
  Plotly.react("fig-loss", [], note("the training loss on MNIST-1D:<br>press <b>train</b> above"), plotConfig);
  Plotly.react("fig-train-std", [], note("how the per-layer std moves while training:<br>press <b>train</b> above"),
               plotConfig);
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
for (const key of MENUS) {
  $(key).addEventListener("focus", menuOpens);
  $(key).addEventListener("pointerdown", menuOpens);
  $(key).addEventListener("blur", menuLeft);
}
$("hist-layer").addEventListener("input", histogramMoved);
window.addEventListener("resize", () => { if (layers.layout !== null && isWide() !== layers.wide) drawLayers(); });  // stack or not
$("train").addEventListener("click", startTraining);
$("stop").addEventListener("click", stopTraining);
syncLabels();
schedule(linkQuery(), performance.now());     // the link, exactly as given
(window.requestIdleCallback || ((then) => setTimeout(then, 500)))(trainPlaceholders);   // after the first view
