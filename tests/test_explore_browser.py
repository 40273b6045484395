"""The explorer in a real browser: headless Chromium (Debian's /usr/bin/chromium) driven by Playwright.

`make test` installs Chromium first (the Makefile's `browser` target); this test does not skip.
It loads links with the state in the query, reads the verdict the page shows (the word of
`depthlab probe`), moves a control and checks that the figure and the address changed.
"""
import urllib.parse

import pytest
from playwright.sync_api import sync_playwright

import depthlab as dl

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
SEED_NOTEBOOK = "depth=50&width=80&activation=relu&init=normal&sigma2=1&bias_variance=0&samples=1000&seed=0"


@pytest.fixture(scope="module")
def base_url():
    explorer = dl.explore()
    yield explorer.url.split("?")[0]
    explorer.stop()


@pytest.fixture(scope="module")
def page():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        tab = browser.new_page(viewport={"width": 1400, "height": 1000})
        tab.set_default_timeout(120_000)
        yield tab
        browser.close()


def _load(page, url):
    page.goto(url)
    page.wait_for_function("document.body.dataset.state === 'ready' || document.body.dataset.state === 'error'")


def _forward_y(page):
    return page.evaluate("document.getElementById('fig-layers').data[0].y")    # the forward panel's measured std


HIST_ROW = "document.getElementById('fig-layers').dataset.histogramRow"    # the row the histograms (traces 4, 5) show
# a histogram trace's counts: its step outline's points are (e_0, 0), (e_0, c_0), the bins' centres
# with their counts c_0 … c_n-1, then (e_n, c_n-1), (e_n, 0), for edges e_0 … e_n
HISTOGRAM = "((i) => document.getElementById('fig-layers').data[i].y.slice(2, -2))"


@pytest.mark.slow
def test_links_reproduce_the_probe_verdicts_and_controls_update_the_view(page, base_url):
    _load(page, f"{base_url}?{SEED_NOTEBOOK}")
    assert page.inner_text("#verdict") == "exploding"
    assert page.input_value("#depth") == "50" and page.input_value("#sigma2") == "1"
    assert page.inner_text("#t-phase") == "explodes"
    assert page.evaluate("document.getElementById('fig-phase').data.length") == 2   # heatmap, χ₁ = 1
    assert page.evaluate("document.getElementById('fig-phase').layout.plot_bgcolor") == "#bbb"   # grey where it explodes
    assert page.evaluate("document.getElementById('fig-phase').layout.yaxis.zeroline") is False   # no line on the grey
    assert page.evaluate("document.getElementById('fig-phase').layout.shapes[0].xanchor") == 80.0   # the dot: σ_w²

    _load(page, f"{base_url}?{SEED_NOTEBOOK.replace('init=normal&sigma2=1', 'init=he_normal')}")
    assert page.inner_text("#verdict") == "healthy"
    assert page.is_hidden("#sigma2-label")                 # σ² belongs to init=normal only
    before_y, before_url = _forward_y(page), page.url
    updates = int(page.evaluate("document.body.dataset.updates"))

    page.select_option("#activation", "tanh")              # move a control
    page.wait_for_function(f"Number(document.body.dataset.updates) > {updates}")
    query = urllib.parse.parse_qs(urllib.parse.urlparse(page.url).query)
    assert page.url != before_url and query["activation"] == ["tanh"] and query["init"] == ["he_normal"]
    assert _forward_y(page) != before_y
    assert page.evaluate("document.getElementById('fig-phase').layout.title.text").startswith(
        "order-to-chaos phase diagram (tanh)")
    assert page.inner_text("#verdict") in ("healthy", "exploding", "vanishing", "dead", "saturated")
    assert float(page.evaluate("document.body.dataset.updateMs")) > 0

    updates = int(page.evaluate("document.body.dataset.updates"))
    page.evaluate("const d = document.getElementById('depth'); d.value = '12'; "
                  "d.dispatchEvent(new Event('input', {bubbles: true}))")
    page.wait_for_function(f"Number(document.body.dataset.updates) > {updates}")
    assert "depth=12" in page.url and len(_forward_y(page)) == 13
    assert page.inner_text("#depth-value") == "12"
    assert page.evaluate(HIST_ROW) == "12" and page.input_value("#hist-layer") == "12"   # the slider kept to 0 … depth
    assert page.evaluate("document.getElementById('fig-layers').data[4].name") == "f_k"

    page.evaluate("const s = document.getElementById('hist-layer'); s.value = '3'; "
                  "s.dispatchEvent(new Event('input', {bubbles: true}))")
    page.wait_for_function(f"{HIST_ROW} === '3'")
    counts = page.evaluate(f"{HISTOGRAM}(4)")
    assert len(counts) == 40 and sum(counts) == 1000 * 80

    page.wait_for_function("new URLSearchParams(location.search).get('layer') === '3'")   # the slider in the link
    _load(page, page.url)                                  # the link reproduces the view exactly
    assert page.input_value("#activation") == "tanh" and page.input_value("#depth") == "12"
    assert page.input_value("#hist-layer") == "3" and page.is_hidden("#message")
    assert page.evaluate(HIST_ROW) == "3"

    assert page.is_hidden("#residual_scale-label")         # a residual block's scale: only with a residual block
    updates = int(page.evaluate("document.body.dataset.updates"))
    page.select_option("#block", "preact")                 # a residual network of 12 blocks, per block
    page.wait_for_function(f"Number(document.body.dataset.updates) > {updates}")
    query = urllib.parse.parse_qs(urllib.parse.urlparse(page.url).query)
    assert query["block"] == ["preact"] and query["residual_scale"] == ["1"] and page.is_visible("#residual_scale-label")
    assert page.evaluate("document.getElementById('fig-layers').layout.xaxis.title.text").startswith("block i")
    titles = page.evaluate("document.getElementById('fig-layers').layout.annotations.map((a) => a.text)")
    assert titles[0] == "forward: std of each block's output" and titles[2].startswith("histograms at the slider's block i")
    assert len(_forward_y(page)) == 12 + 3                 # stem, 12 blocks, final activation, head


@pytest.mark.slow
def test_the_layers_panels_stack_on_a_narrow_screen(page, base_url):
    _load(page, f"{base_url}?depth=6&width=9&samples=50")
    page.wait_for_function("(document.getElementById('fig-loss').layout || {annotations: []}).annotations"
                           ".some((a) => a.text.includes('press <b>train</b>'))")     # not an empty box before training
    layout = "document.getElementById('fig-layers').layout"
    assert page.evaluate(f"{layout}.yaxis.domain") == [0, 1]                 # side by side: full height each
    assert page.evaluate(f"{layout}.xaxis2.domain[0]") > page.evaluate(f"{layout}.xaxis.domain[1]")
    fits = ("(() => { const gd = document.getElementById('fig-layers'); "
            "return gd._fullLayout.width <= gd.clientWidth && gd._fullLayout.width > gd.clientWidth - 20 "
            "&& gd.clientHeight === gd._fullLayout.height; })()")
    page.set_viewport_size({"width": 600, "height": 1000})
    # one panel per row, drawn taller than the window (plotly's own resize relayouts the figure
    # too, so its layout is read once it has settled)
    page.wait_for_function(f"{layout}.xaxis.domain[1] === 1 && {layout}.yaxis2.domain[1] < {layout}.yaxis.domain[0] "
                           "&& document.getElementById('fig-layers')._fullLayout.height > 1000")
    page.wait_for_function(fits)                                             # the figure follows the window's width
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.wait_for_function(f"{layout}.yaxis.domain[0] === 0")
    page.wait_for_function(fits)


@pytest.mark.slow
def test_an_invalid_link_shows_a_message_in_the_page(page, base_url):
    _load(page, f"{base_url}?depth=abc&width=80")
    message = page.inner_text("#message")
    assert page.is_visible("#message") and "depth must be a whole number, got 'abc'" in message
    _load(page, f"{base_url}?depth=300")
    assert "depth must be between 1 and 200" in page.inner_text("#message")
    _load(page, f"{base_url}?depth=5&layer=x")
    assert "layer" in page.inner_text("#message") and "given twice" not in page.inner_text("#message")


IN_RANGE = """() => {            // each trace's finite points inside its axes' drawn ranges (decades on log axes)
  const gd = document.getElementById('fig-layers'), full = gd._fullLayout, outside = [];
  gd.data.forEach((trace, i) => {
    const n = trace.xaxis.slice(1), xa = full[`xaxis${n}`], ya = full[`yaxis${n}`];
    trace.y.forEach((y, j) => {
      if (y === null || !Number.isFinite(y) || (ya.type === 'log' && y <= 0)) return;
      const v = ya.type === 'log' ? Math.log10(y) : y, x = trace.x[j];
      if (v < ya.range[0] || v > ya.range[1] || x < xa.range[0] || x > xa.range[1]) outside.push([i, j, x, y]);
    });
  });
  return outside;
}"""
LINE = "document.querySelector('#fig-layers .scatterlayer .trace path.js-line').getAttribute('d')"


@pytest.mark.slow
def test_updates_that_move_only_the_data_redraw_the_traces_inside_their_axes(page, base_url):
    # after the first drawing the page moves the traces alone (and the axes whose data left
    # them): the drawn lines, the figure's data and its axes must follow the server's view
    _load(page, f"{base_url}?depth=50&width=80&activation=relu&init=he_normal&samples=1000&seed=0&layer=49")
    line = page.evaluate(LINE)
    for control, value, event in (("seed", "1", "change"), ("seed", "2", "change"), ("depth", "37", "input"),
                                  ("init", "normal", "change"), ("sigma2", "0.06", "change"), ("seed", "3", "change")):
        updates = int(page.evaluate("document.body.dataset.updates"))
        page.evaluate(f"const c = document.getElementById('{control}'); c.value = '{value}'; "
                      f"c.dispatchEvent(new Event('{event}', {{bubbles: true}}))")
        page.wait_for_function(f"Number(document.body.dataset.updates) > {updates}")
        view = page.evaluate("fetch('/api/view' + location.search).then((r) => r.json())")
        assert _forward_y(page) == view["layers"]["preactivation_std"]
        assert page.evaluate(f"{HISTOGRAM}(4)") == view["histogram"]["preactivation"]["counts"]
        x, bins = page.evaluate("[document.getElementById('fig-layers').data[4].x, "
                                "document.getElementById('fig-layers').data[4].customdata]")
        edges, counts = view["histogram"]["preactivation"]["edges"], view["histogram"]["preactivation"]["counts"]
        assert x[:2] == [edges[0]] * 2 and x[-2:] == [edges[-1]] * 2
        assert x[2:-2] == pytest.approx([(a + b) / 2 for a, b in zip(edges, edges[1:])], rel=1e-12, abs=1e-300)
        assert len(bins) == len(x) and bins[2 + 7].endswith(f"): {counts[7]} values")    # the bin a hover names
        assert page.evaluate(IN_RANGE) == []
        assert page.evaluate(LINE) != line
        line = page.evaluate(LINE)
    assert page.inner_text("#verdict") == "exploding"            # σ² = 0.06: σ_w² = 4.8 > 2


@pytest.mark.slow
def test_a_dragged_slider_writes_the_address_once_its_last_view_is_drawn(page, base_url):
    # each history.replaceState is a same-document navigation (~40 ms of the browser's CPU, and
    # browsers throttle pages that make too many): the page writes the address when the views
    # of the last change are drawn, with that change's state
    _load(page, f"{base_url}?depth=20&width=30&samples=200&seed=0")
    page.evaluate("window.__written = []; const replace = history.replaceState.bind(history); "
                  "history.replaceState = (s, t, url) => { window.__written.push(url); replace(s, t, url); }; 0;")
    updates = int(page.evaluate("document.body.dataset.updates"))
    page.evaluate("const d = document.getElementById('depth'); "
                  "for (const v of [19, 18, 17, 16, 15, 14]) { d.value = String(v); "
                  "d.dispatchEvent(new Event('input', {bubbles: true})); }")
    page.wait_for_function(f"Number(document.body.dataset.updates) > {updates} && "
                           "document.getElementById('fig-layers').data[0].y.length === 15")
    written = page.evaluate("window.__written")
    assert len(written) == 1 and "depth=14" in written[0] and "depth=14" in page.url
    assert len(page.evaluate("document.getElementById('fig-layers').data[0].y")) == 15   # f_0 … f_14


def _kept(query: str, layer, change: dict) -> bool:
    from depthlab.lab.explore import compute, state as explore_state

    key = compute.view_key(explore_state.parse({**dict(item.split("=") for item in query.split("&")), **change}), layer)
    return key in compute._VIEW.results and compute._VIEW.results[key].done()


@pytest.mark.slow
def test_the_page_looks_ahead_while_idle_and_draws_a_foreseen_step_from_it(page, base_url):
    # idle, the page asks the server for the views of the seed's and the depth slider's next
    # steps; the seed's step is then drawn from the kept view, without probing the network
    import time

    query = "depth=50&width=80&activation=relu&init=he_normal&samples=1000&seed=70"
    _load(page, f"{base_url}?{query}&layer=20")
    changes = ({"seed": "71"}, {"depth": "49"}, {"depth": "51"})     # the first it asks for
    deadline = time.monotonic() + 120
    while not all(_kept(query, 20, change) for change in changes) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(_kept(query, 20, change) for change in changes)
    updates = int(page.evaluate("document.body.dataset.updates"))
    page.evaluate("const s = document.getElementById('seed'); s.value = '71'; "
                  "s.dispatchEvent(new Event('change', {bubbles: true}))")
    page.wait_for_function(f"Number(document.body.dataset.updates) > {updates}")
    assert float(page.evaluate("document.body.dataset.serverMs")) < 30     # kept (probing it takes ~100 ms)
    view = page.evaluate("fetch('/api/view' + location.search).then((r) => r.json())")
    assert view["state"]["seed"] == 71 and _forward_y(page) == view["layers"]["preactivation_std"]


@pytest.mark.slow
def test_a_page_left_idle_has_looked_ahead_at_every_activation(page, base_url):
    query = "depth=4&width=7&activation=relu&init=he_normal&samples=30&seed=5"
    _load(page, f"{base_url}?{query}")
    page.wait_for_function("document.body.dataset.lookAhead === 'idle'")
    layer = int(page.input_value("#hist-layer"))
    from depthlab.nn import activations

    assert all(_kept(query, layer, {"activation": name}) for name in activations.names())
    assert _kept(query, layer, {"seed": "6"}) and _kept(query, layer, {"depth": "3"})


@pytest.mark.slow
def test_a_menu_opened_is_looked_ahead_at_first_without_the_rest(page, base_url):
    # a hand that opens the activation menu picks from it next: the look-ahead asks for its
    # options (nearest first) before the seed's and the depth slider's steps, without a rest
    import time

    asked = []
    on_request = lambda request: "/api/ahead?" in request.url and asked.append(  # noqa: E731
        (time.monotonic(), urllib.parse.parse_qs(request.url.split("?", 1)[1])))
    context = page.context.browser.new_context(viewport={"width": 1400, "height": 1000})
    tab = context.new_page()
    tab.set_default_timeout(120_000)
    tab.add_init_script("document.addEventListener('DOMContentLoaded', () => "   # opened before the first view
                        "document.getElementById('activation').focus())")
    tab.on("request", on_request)
    try:
        tab.goto(f"{base_url}?depth=12&width=30&activation=relu&init=he_normal&samples=200&seed=404")
        tab.wait_for_function("document.body.dataset.state === 'ready'")
        ready = time.monotonic()
        deadline = ready + 60
        while len(asked) < 12 and time.monotonic() < deadline:         # the menu's 9, then the near steps
            tab.wait_for_timeout(50)
    finally:
        context.close()
    order = [(query["activation"][0], query["depth"][0], query["seed"][0]) for _, query in asked]
    from depthlab.nn import activations

    menu = {(name, "12", "404") for name in activations.names() if name != "relu"}
    assert set(order[:len(menu)]) == menu                          # the menu's options first
    assert {("relu", "12", "405"), ("relu", "11", "404")} <= set(order[len(menu):])   # then the near steps
    assert asked[0][0] - ready < 0.9                                # no second's rest first


@pytest.mark.slow
def test_the_measured_lines_mark_their_rows_while_the_network_is_shallow(page, base_url):
    modes = "document.getElementById('fig-layers').data.slice(0, 4).map((t) => t.mode)"
    _load(page, f"{base_url}?depth=19&width=20&samples=100&seed=3")            # 20 rows: each marked
    assert page.evaluate(modes) == ["lines+markers", "lines", "lines+markers", "lines"]
    updates = int(page.evaluate("document.body.dataset.updates"))
    page.evaluate("const d = document.getElementById('depth'); d.value = '20'; "
                  "d.dispatchEvent(new Event('input', {bubbles: true}))")
    page.wait_for_function(f"Number(document.body.dataset.updates) > {updates}")
    assert page.evaluate(modes) == ["lines", "lines", "lines", "lines"]        # 21 rows: the lines alone
    assert len(_forward_y(page)) == 21


# The page's axis rule on two made-up histograms (a linear axis): kept while the data fit (and
# the range is at most 1.5 times the fresh one), grown to take in data that leave it, fresh
# where the data shrank.
AXIS_RULE = """(edges) => {
  const data = { x: [[0, 1], [0, 1], [0, 1], [0, 1], [], []], y: [[1, 2], [1, 2], [1, 2], [1, 2], [1, 2], [1, 2]],
                 edges: [edges, edges] };
  const old = { xaxis3: [-10, 10] };
  return axisRanges(data, old).xaxis3;
}"""


@pytest.mark.slow
def test_an_axis_keeps_its_range_while_the_data_fit_and_grows_to_take_them_in(page, base_url):
    _load(page, f"{base_url}?depth=3&width=5&samples=10")
    assert page.evaluate(AXIS_RULE, [-6, 7]) == [-10, 10]         # the data fit (fresh: [-8, 8]): kept
    assert page.evaluate(AXIS_RULE, [-3, 12]) == [-10, 14]        # they leave it: grown (fresh: [-4, 14])
    fresh = page.evaluate(AXIS_RULE, [-2, 2.5])                  # a fifth of it: fresh, snapped
    assert fresh[0] <= -2 and fresh[1] >= 2.5 and fresh[1] - fresh[0] < 20 / 1.5
    assert page.evaluate(AXIS_RULE, [-4, 4]) == [-5, 5]           # fits, but 20 > 1.5 × 10: fresh


@pytest.mark.slow
def test_a_view_and_a_histogram_drawn_at_once_leave_the_page_updating(page, base_url):
    # the view's update and the histogram slider both draw the layers' figure; plotly never
    # settles an animation another interrupts, so the page draws one at a time
    _load(page, f"{base_url}?depth=20&width=30&samples=200&seed=0")
    for seed in range(1, 4):
        updates = int(page.evaluate("document.body.dataset.updates"))
        page.evaluate(f"const s = document.getElementById('seed'); s.value = '{seed}'; "
                      "s.dispatchEvent(new Event('change', {bubbles: true})); "
                      "const h = document.getElementById('hist-layer'); h.value = String(3 + Number(s.value)); "
                      "h.dispatchEvent(new Event('input', {bubbles: true})); "
                      "histogramFigure({layer: 9, preactivation: {counts: [1, 2], edges: [0, 1, 2]}, "
                      "activation: {counts: [2, 1], edges: [0, 1, 2]}});")
        page.wait_for_function(f"Number(document.body.dataset.updates) > {updates}", timeout=20_000)
    page.wait_for_function(f"{HIST_ROW} === '6'")                 # the slider's last row came and was drawn
    assert page.is_hidden("#message")


@pytest.mark.slow
def test_train_replaces_the_placeholders_with_the_loss_and_the_per_layer_stds(page, base_url):
    _load(page, f"{base_url}?depth=3&width=16&samples=50&steps=20")
    page.wait_for_function("(document.getElementById('fig-loss').layout || {annotations: []}).annotations.length === 1")
    page.click("#train")
    page.wait_for_function("document.getElementById('train-status').textContent.includes('done')", timeout=60_000)
    page.wait_for_function("document.getElementById('fig-loss').data.length === 1")
    assert len(page.evaluate("document.getElementById('fig-loss').data[0].y")) == 20
    assert page.evaluate("document.getElementById('fig-loss').layout.annotations || []") == []
    assert page.evaluate("document.getElementById('fig-train-std').data[0].type") == "heatmap"
    assert "test accuracy" in page.inner_text("#train-status")


def _switch_activation_and_log(page, activation):
    """Pick ``activation``; the page's requests and responses to /api/view and /api/phase, in order."""
    events = []
    on_request = lambda request: events.append(("request", request.url))          # noqa: E731
    on_response = lambda response: events.append(("response", response.url))      # noqa: E731
    page.on("request", on_request)
    page.on("response", on_response)
    updates = int(page.evaluate("document.body.dataset.updates"))
    page.evaluate(f"const a = document.getElementById('activation'); a.value = '{activation}'; "
                  "a.dispatchEvent(new Event('change', {bubbles: true}))")
    page.wait_for_function(f"Number(document.body.dataset.updates) > {updates}")
    page.remove_listener("request", on_request)
    page.remove_listener("response", on_response)
    return [(kind, url.split("/api/")[1].split("?")[0], url) for kind, url in events if "/api/" in url]


def test_a_new_activation_s_phase_diagram_is_drawn_while_the_server_probes(page, base_url):
    _load(page, f"{base_url}?depth=30&width=60&activation=relu&init=xavier_normal&samples=800&seed=91")
    events = _switch_activation_and_log(page, "selu")
    asked = [(kind, what) for kind, what, url in events if "activation=selu" in url and "ahead" not in what]
    assert asked.index(("request", "phase")) < asked.index(("response", "view"))     # not after the view came
    assert page.evaluate("document.getElementById('fig-phase').layout.title.text").startswith(
        "order-to-chaos phase diagram (selu)")
    _load(page, f"{base_url}?depth=30&width=60&activation=relu&init=critical&samples=800&seed=92")
    events = _switch_activation_and_log(page, "elu")                    # σ_w² of the activation: after the view
    asked = [(kind, what) for kind, what, url in events if "activation=elu" in url and "ahead" not in what]
    assert asked.index(("response", "view")) < asked.index(("request", "phase"))
    assert page.evaluate("document.getElementById('fig-phase').layout.title.text").startswith(
        "order-to-chaos phase diagram (elu)")


def test_other_activations_diagrams_are_drawn_ahead_and_a_switch_shows_one(page, base_url):
    # idle, the page draws the shown range's other activations' diagrams into hidden figures; a
    # switch then shows one (no phase request, no drawing) and keeps the one it leaves
    from depthlab.nn import activations

    spares = "document.querySelectorAll('#phase-box .spare').length"
    _load(page, f"{base_url}?depth=10&width=30&activation=relu&init=he_normal&samples=200&seed=93")
    others = len(activations.names()) - 1
    page.wait_for_function(f"{spares} === {others}")
    titles = page.evaluate("[...document.querySelectorAll('#phase-box .spare')].map((d) => d.layout.title.text)")
    assert sorted(t.split("(")[1].split(")")[0] for t in titles) == sorted(n for n in activations.names() if n != "relu")
    events = _switch_activation_and_log(page, "gelu")
    assert not [what for kind, what, url in events if what == "phase"]                 # shown, not fetched
    assert page.evaluate("document.getElementById('fig-phase').layout.title.text").startswith(
        "order-to-chaos phase diagram (gelu)")
    assert page.evaluate("document.querySelectorAll('#fig-phase').length") == 1
    assert page.is_visible("#fig-phase") and page.evaluate(spares) == others         # relu's is kept, hidden
    star = "document.getElementById('fig-phase').layout.shapes[0].xanchor"
    assert page.evaluate(star) == 2.0                                                  # He: σ_w² = 2
