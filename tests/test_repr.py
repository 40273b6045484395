"""Rich displays: every _repr_html_ is well-formed XML, offline, escaped, and shows the object's numbers."""
import json
import math
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest

import depthlab as dl
from depthlab import _html
from depthlab.lab import records

SVG = "{http://www.w3.org/2000/svg}"


def parse(markup: str) -> ET.Element:
    """The HTML as an element tree (fails on anything not well-formed), checked to be offline."""
    root = ET.fromstring(markup)
    for element in root.iter():
        assert element.tag not in ("script", "img", "link", "iframe"), element.tag
        for name, value in element.attrib.items():
            assert name not in ("src", "href"), (element.tag, name)
            assert "http" not in value or (name == "xmlns" and value == "http://www.w3.org/2000/svg"), value
    return root


def texts(root: ET.Element) -> list[str]:
    return ["".join(cell.itertext()) for cell in root.iter("td")]


def rows(root: ET.Element) -> list[list[str]]:
    return [["".join(td.itertext()) for td in tr.iter("td")] for tr in root.iter("tr") if list(tr.iter("td"))]


# ----------------------------------------------------------------------------- networks

def test_linear_remembers_how_it_was_initialized():
    assert dl.Linear(3, 2, init=2.0, rng=0).init_name == "normal(variance=2.0), bias zeros()"
    assert dl.Linear(3, 2, init={"name": "kaiming_normal", "mode": "fan_out"}, bias_init=0.1, rng=0).init_name == \
        "kaiming_normal(mode='fan_out'), bias normal(variance=0.1)"
    assert dl.Linear.from_arrays(np.ones((2, 3))).init_name == "from_arrays"


def test_network_summary_table_text_and_html():
    net = dl.MLP(1, [80, 40], 3, activation=["relu", "tanh"], init=["he_normal", 1.0, "xavier_normal"], rng=0)
    text = net.summary()
    assert isinstance(text, str) and repr(text) == str(text)
    lines = str(text).splitlines()
    assert len(lines) == 3 + 3 + 2                               # name, header, rule, 3 layers, 2 totals
    assert "6,480" not in text and "3,240" in text               # 80·40 + 40
    assert f"Parameters: {net.n_parameters():,}" in text
    root = parse(net._repr_html_())
    assert parse(text._repr_html_()) is not None
    table = rows(root)
    assert [row[0] for row in table] == ["0", "1", "2"]
    assert [row[2] for row in table] == ["(N, 80)", "(N, 40)", "(N, 3)"]
    assert [row[3] for row in table] == ["relu", "tanh", "identity"]
    assert [row[4] for row in table] == ["he_normal(), bias zeros()", "normal(variance=1.0), bias zeros()",
                                         "xavier_normal(), bias zeros()"]
    assert [int(row[5].replace(",", "")) for row in table] == [160, 3240, 123]
    assert sum(int(row[5].replace(",", "")) for row in table) == net.n_parameters()
    assert {row[7] for row in table} == {"float64"}


def test_network_made_from_arrays_says_so_and_float32_shows():
    net = dl.Sequential.from_arrays([np.ones((2, 3), np.float32), np.ones((1, 2), np.float32)])
    table = rows(parse(net._repr_html_()))
    assert [row[4] for row in table] == ["from_arrays", "from_arrays"]
    assert {row[7] for row in table} == {"float32"}


# ----------------------------------------------------------------------------- probe

@pytest.fixture(scope="module")
def exploding():
    net = dl.MLP(1, [40] * 8, 1, activation="relu", init=1.0, rng=0)
    return dl.probe(net, np.random.default_rng(0).standard_normal((100, 1)))


def test_probe_report_html_has_its_table_verdict_and_chart(exploding):
    root = parse(exploding._repr_html_())
    table = rows(root)
    assert len(table) == len(exploding.layers)
    for row, stats in zip(table, exploding.layers):
        assert row[0] == str(stats.index)
        assert row[3] == _html.number(stats.preactivation_std)
        assert row[4] == _html.number(stats.predicted_preactivation_std)
        assert row[9] == _html.number(stats.grad_preactivation_std)
    badge = "".join(root.itertext())
    assert f"exploding from layer {exploding.verdict_layer}" in badge
    styled = [tr for tr in root.iter("tr") if "background" in tr.get("style", "")]
    assert len(styled) == len(exploding.layers) - exploding.verdict_layer
    (svg,) = root.iter(SVG + "svg")
    dots = list(svg.iter(SVG + "circle"))
    legend = 2                                                   # a dot in the legend per measured series
    assert len(dots) == 2 * len(exploding.layers) + legend
    assert len(list(svg.iter(SVG + "polyline"))) == 2            # the two theory lines


def test_probe_report_without_theory_or_signal_still_displays():
    x = np.random.default_rng(0).standard_normal((20, 3))
    no_theory = dl.probe(dl.MLP(3, [5, 5], 1, rng=0), x, theory=False)
    root = parse(no_theory._repr_html_())
    assert not list(root.iter(SVG + "polyline"))                 # no theory lines
    assert all(row[4] == "—" for row in rows(root))
    dead = dl.probe(dl.MLP(3, [5, 5], 1, init="zeros", rng=0), x)
    root = parse(dead._repr_html_())
    assert "dead" in "".join(root.itertext())
    positive = sum(v > 0 for s in dead.layers for v in (s.preactivation_std, s.grad_preactivation_std))
    (svg,) = root.iter(SVG + "svg")                              # zeros cannot go on the log chart
    assert len(list(svg.iter(SVG + "circle"))) == positive + 2


def test_probe_report_verdicts_have_their_own_colours():
    colours = {verdict: _html.STATUS_COLOURS[verdict] for verdict in dl.signal.probe.VERDICTS}
    assert len(set(colours.values())) == len(colours)


# ----------------------------------------------------------------------------- history

def test_history_html_shows_its_curves_and_every_log():
    history = dl.History()
    losses = [2.0, 0.5, 0.02, 0.01]
    for epoch, (loss, accuracy) in enumerate(zip(losses, [0.1, 0.5, 0.9, 0.8])):
        history.record(epoch, {"loss": loss, "val_loss": 2 * loss, "accuracy": accuracy, "lr": 0.1})
    root = parse(history._repr_html_())
    table = {row[0]: row[1:] for row in rows(root)}
    assert table["loss"] == ["2", "0.01", "0.01", "4", "2", "1"]
    assert table["accuracy"][-2:] == ["0.9", "3"]                # largest, at epoch 3 (counted from 1)
    assert set(table) == {"loss", "val_loss", "accuracy", "lr"}
    charts = list(root.iter(SVG + "svg"))
    assert len(charts) == 2                                      # losses, and accuracy apart
    assert "log scale" in "".join(charts[0].itertext())         # losses span ×200
    dashed = [line for line in charts[0].iter(SVG + "polyline") if line.get("stroke-dasharray")]
    assert len(dashed) == 1                                      # val_loss


def test_history_names_are_escaped_and_an_empty_history_displays():
    history = dl.History()
    history.record(0, {"<b>&metric": 1.0})
    history.message = "stopped by <EarlyStopping>"
    markup = history._repr_html_()
    root = parse(markup)
    assert "<b>" not in markup and "&lt;b&gt;&amp;metric" in markup
    assert "stopped by <EarlyStopping>" in "".join(root.itertext())
    assert "Nothing recorded" in "".join(parse(dl.History()._repr_html_()).itertext())


# ----------------------------------------------------------------------------- theory

def test_depth_scales_read_well():
    scales = dl.theory.depth_scales("tanh", 1.5, 0.05)
    text = repr(scales)
    assert text.startswith("DepthScales(ordered: ξ_c = ") and f"{scales.xi_c:.4g}" in text
    root = parse(scales._repr_html_())
    values = {row[0]: row[1] for row in rows(root)}
    assert values["ξ_c"] == _html.number(scales.xi_c) and values["q*"] == _html.number(scales.q_star)
    critical = dl.theory.depth_scales("tanh", 1.0, 0.0)
    assert "critical" in repr(critical) and "ξ_c = ∞" in repr(critical)
    assert "chaotic" in repr(dl.theory.depth_scales("tanh", 3.0, 0.05))


def test_predicted_std_reads_well():
    prediction = dl.theory.predicted_std([("relu", 2 / 10, 0.0, 10, 10)] * 3 + [("identity", 0.1, 0.0, 10, 1)])
    assert repr(prediction).startswith("PredictedStd(4 layers: std f_0 = ")
    table = rows(parse(prediction._repr_html_()))
    assert len(table) == 4
    assert table[2][1] == _html.number(float(prediction.preactivation_std[2]))
    assert table[3][2] == "—"                                    # no h after the output layer


# ----------------------------------------------------------------------------- sweep records

@pytest.fixture
def results(tmp_path):
    path = tmp_path / "runs.jsonl"
    lines = [
        {"experiment": "m:f", "point": {"depth": 10}, "config": {"depth": 10}, "metrics": {"accuracy": 0.5, "depth": 3},
         "seconds": 1.5, "status": "ok"},
        {"experiment": "m:f", "point": {"depth": 20}, "config": {"depth": 20}, "metrics": {}, "status": "failed",
         "error": "ValueError: <script>x</script>", "seconds": 0.25},
        {"experiment": "m:f", "point": {"depth": 10}, "config": {"depth": 10}, "metrics": {"accuracy": 0.75, "depth": 3},
         "seconds": 1.0, "status": "ok"},
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_sweep_records_load_as_a_dataframe_with_the_last_record_of_each_point(results):
    frame = dl.sweeps.load(results)
    import pandas

    assert isinstance(frame, pandas.DataFrame)
    assert list(frame.columns) == ["experiment", "depth", "accuracy", "metrics.depth", "status", "seconds", "error"]
    assert frame["depth"].tolist() == [10, 20]
    assert frame["accuracy"].iloc[0] == 0.75 and math.isnan(frame["accuracy"].iloc[1])
    assert frame["status"].tolist() == ["ok", "failed"]


def test_sweep_records_without_pandas_display_as_a_table(results, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    table = dl.sweeps.load(results)
    assert isinstance(table, records.Records) and len(table) == 2
    assert table.column("accuracy") == [0.75, None]
    markup = table._repr_html_()
    root = parse(markup)
    assert not list(root.iter("script")) and "&lt;script&gt;" in markup
    cells = rows(root)
    assert cells[0][:5] == ["m:f", "10", "0.75", "3", "ok"] and cells[1][4] == "failed"
    assert "1 failed" in "".join(root.itertext())
    assert "0.75" in repr(table)
    with pytest.raises(ImportError, match="pip install pandas"):
        dl.sweeps.load(results, as_frame=True)
    with pytest.raises(KeyError, match="no column 'loss'"):
        table.column("loss")


def test_sweep_records_of_a_real_sweep(tmp_path):
    out = tmp_path / "grid.jsonl"
    dl.sweep(_square, {"x": [1, 2, 3]}, workers=1, out=out, progress=False)
    table = dl.sweeps.load(out, as_frame=False)
    assert table.column("x") == [1, 2, 3] and table.column("square") == [1, 4, 9]
    parse(table._repr_html_())


def _square(x):
    return {"square": x * x}


# ----------------------------------------------------------------------------- experiment results

def test_experiment_result_displays_summary_metrics_and_embedded_figures():
    import base64

    from depthlab.lab import plot, plots
    from depthlab.lab.experiments.base import Result

    figure = plot.signal_std([1.0, 2.0, 4.0])
    result = Result("demo", "A <demo>", metrics={"growth": 4.0, "curve": [1, 2]}, figures={"std": figure},
                    summary="grows ×4\nsecond line")
    assert repr(result) == "Result('demo': 1 figures, 2 metrics, 0 tables; grows ×4)"
    markup = result._repr_html_()
    root = ET.fromstring(markup)
    (image,) = root.iter("img")
    assert image.get("src").startswith("data:image/png;base64,")
    png = base64.b64decode(image.get("src").split(",", 1)[1])
    assert png == plots.encode_png(plots.render(figure), max_width=900)
    assert [row for row in rows(root)] == [["growth", "4"]]       # lists stay out of the table
    assert "A <demo>" in "".join(root.itertext()) and "<demo>" not in markup


def test_trace_gradients_and_minimize_result_display_their_numbers():
    import xml.etree.ElementTree as ElementTree

    net = dl.MLP(3, [4], 2, rng=0)
    x = np.random.default_rng(0).standard_normal((5, 3))
    trace = net.forward(x, record=True)
    grads = net.backward(np.ones((5, 2)))
    result = dl.optim.minimize("elliptic", [1.0, 1.0], optimizer="sgd", lr=0.1, steps=5)
    for obj, expected in ((trace, f"{float(np.std(trace.output)):.4g}"),
                          (grads, f"{float(np.linalg.norm(grads.weights[0])):.4g}"),
                          (result, f"{float(result.value):.4g}")):
        page = obj._repr_html_()
        ElementTree.fromstring(page)                       # well-formed
        assert expected in page and "http" not in page      # the numbers, and nothing fetched
        assert "array(" not in repr(obj)                    # a plain repr of one line, not the arrays
