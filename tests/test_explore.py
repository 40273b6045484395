"""The explorer's server: every endpoint, bad query values, the command and dl.explore().

References: the page's numbers must be `depthlab probe`'s (the same network, seed and verdict),
its theory dl.theory's, its histograms np.histogram's; bad values get HTTP 400 with a JSON
message naming the key.
"""
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import replace

import numpy as np
import pytest
from starlette.testclient import TestClient
from threadpoolctl import threadpool_limits

import depthlab as dl
from depthlab.lab import cli, probe_network
from depthlab.lab.explore import compute, state as explore_state
from depthlab.lab.explore.app import create_app
from depthlab.signal import theory
from depthlab.signal.probe import VERDICTS

SMALL = "depth=6&width=12&samples=64"


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app()) as test_client:
        yield test_client


# ----------------------------------------------------------------------------- the page and assets

def test_page_lists_the_choices_and_the_caps(client):
    response = client.get("/")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    page = response.text
    assert '<option value="tanh">' in page and '<option value="he_normal">' in page
    assert "depth ≤ 200" in page and "width ≤ 512" in page and "samples ≤ 5000" in page
    assert "{{" not in page                                    # every placeholder filled
    assert "cdn" not in page.lower() and "https://" not in page   # offline: nothing from the network
    assert '<script src="/static/plotly.min.js">' in page
    assert client.get("/favicon.ico").status_code == 204


@pytest.mark.parametrize("name, kind, marker", [
    ("plotly.min.js", "javascript", "plotly.js v"),
    ("explore.js", "javascript", "/api/view?"),
    ("explore.css", "text/css", ".verdict"),
])
def test_static_assets(client, name, kind, marker):
    response = client.get(f"/static/{name}")
    assert response.status_code == 200 and kind in response.headers["content-type"]
    assert marker in response.text[:5_000_000]


@pytest.mark.parametrize("path", ["/static/../app.py", "/static/index.html", "/static/%2e%2e%2fstate.py",
                                  "/static/nothing.js"])
def test_no_other_file_is_served(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert "import" not in response.text


# ----------------------------------------------------------------------------- /api/view

def _probe_as_cli(depth, width, activation, init, sigma2, samples, seed, bias_variance=0.0):
    """The probe exactly as `depthlab probe` builds it (lab/cli.py), independently of the explorer."""
    rng = np.random.default_rng(seed)
    bias = {"name": "normal", "variance": bias_variance} if bias_variance > 0 else "zeros"
    net = dl.MLP(1, [width] * depth, 1, activation=activation, init=sigma2 if init == "normal" else init,
                 bias_init=bias, rng=rng)
    return dl.probe(net, rng.standard_normal((samples, 1)))


def test_view_reproduces_the_probe_command(client):
    query = "depth=7&width=10&activation=tanh&init=normal&sigma2=0.3&bias_variance=0.05&samples=90&seed=4"
    data = client.get(f"/api/view?{query}").json()
    report = _probe_as_cli(7, 10, "tanh", "normal", 0.3, 90, 4, 0.05)
    assert data["verdict"] == report.verdict and data["diagnosis"] == report.diagnosis
    assert data["layers"]["preactivation_std"] == [s.preactivation_std for s in report.layers]
    assert data["layers"]["grad_preactivation_std"] == [s.grad_preactivation_std for s in report.layers]
    assert data["layers"]["predicted_backward_std"] == [s.predicted_backward_std for s in report.layers]
    assert data["state"] == {"depth": 7, "width": 10, "activation": "tanh", "init": "normal", "sigma2": 0.3,
                             "bias_variance": 0.05, "samples": 90, "in_features": 1, "seed": 4,
                             "steps": 200, "lr": 0.01, "optimizer": "sgd", "block": "plain", "norm": "none"}
    again = client.get(f"/api/view?{query}").json()
    assert again["layers"] == data["layers"]                                # a link reproduces
    histogram = client.get(f"/api/histogram?{query}&layer=3").json()
    assert histogram == {**client.get(f"/api/histogram?{query}&layer=3").json(), "seconds": histogram["seconds"]}


@pytest.mark.parametrize("query, flags", [
    ("block=preact&residual_scale=1/sqrt(depth)", ["--block", "preact", "--residual-scale", "1/sqrt(depth)"]),
    ("block=postact&norm=layer", ["--block", "postact", "--norm", "layer"]),
    ("norm=batch", ["--norm", "batch"]),
])
def test_residual_and_normalized_views_reproduce_the_probe_command(client, capsys, query, flags):
    """The view of a residual or normalized network is `depthlab probe` with the same flags: one
    row per top-level layer, the same numbers; its histograms are those of each row's input and output."""
    base = "depth=6&width=12&activation=relu&init=he_normal&samples=64&seed=5"
    data = client.get(f"/api/view?{base}&{query}").json()
    rng = np.random.default_rng(5)
    net = probe_network.build(depth=6, width=12, activation="relu", init="he_normal", rng=rng,
                              block=net_settings(query)["block"], norm=net_settings(query)["norm"],
                              residual_scale=net_settings(query)["residual_scale"])
    x = rng.standard_normal((64, 1))
    report = dl.probe(net, x)
    assert data["rows"] == "block" and data["layers"]["index"] == list(range(len(net.layers)))
    assert data["layers"]["preactivation_std"] == [s.output_std for s in report.layers]
    assert data["layers"]["predicted_backward_std"] == [s.predicted_grad_std for s in report.layers]
    assert data["verdict"] == report.verdict and data["diagnosis"] == report.diagnosis
    assert cli.main(["probe", "--depth", "6", "--width", "12", "--init", "he_normal", "--samples", "64", "--seed", "5",
                     *flags]) == 0
    assert f"verdict: {report.verdict}" in capsys.readouterr().out
    trace = net.forward(x, record=True)
    last = len(net.layers) - 1
    entry = client.get(f"/api/histogram?{base}&{query}&layer={last}").json()
    assert entry["activation"]["counts"] == np.histogram(trace.output, bins=compute.HISTOGRAM_BINS)[0].tolist()
    assert entry["preactivation"]["counts"] == np.histogram(trace.layer_outputs[-2],
                                                            bins=compute.HISTOGRAM_BINS)[0].tolist()
    assert client.get(f"/api/histogram?{base}&{query}&layer={last + 1}").status_code == 400


def net_settings(query: str) -> dict:
    values = dict(p.split("=", 1) for p in query.split("&"))
    return {"block": values.get("block", "plain"), "norm": values.get("norm", "none"),
            "residual_scale": probe_network.residual_scale(values.get("residual_scale", "1"))}


def test_a_residual_network_trains_and_records_its_blocks(client):
    response = client.post("/api/train?depth=2&width=16&block=preact&norm=batch&init=he_normal&steps=20&lr=0.05"
                           "&optimizer=adam&seed=1")
    assert response.status_code == 202
    job = _wait(client, response.json()["id"])
    assert job["status"] == "done" and job["steps_done"] == 20
    net = probe_network.build(depth=2, width=16, block="preact", norm="batch", init="he_normal", in_features=40,
                              out_features=10)
    assert len(job["forward_std"][0]) == len(net.layers)
    assert np.mean(job["loss"][-5:]) < np.mean(job["loss"][:5])


def test_kept_networks_give_a_fresh_networks_numbers(client):
    # the second and third views borrow the first one's network (same shape) with new parameters
    for seed, bias in ((21, 0.0), (22, 0.0), (23, 0.2)):
        query = f"depth=5&width=9&activation=gelu&init=normal&sigma2=0.2&bias_variance={bias}&samples=40&seed={seed}"
        data = client.get(f"/api/view?{query}").json()
        report = _probe_as_cli(5, 9, "gelu", "normal", 0.2, 40, seed, bias)
        assert data["layers"]["preactivation_std"] == [s.preactivation_std for s in report.layers]
        assert data["layers"]["predicted_backward_std"] == [s.predicted_backward_std for s in report.layers]
        assert data["diagnosis"] == report.diagnosis
        rng = np.random.default_rng(seed)
        net = dl.MLP(1, [9] * 5, 1, activation="gelu", init=0.2,
                     bias_init={"name": "normal", "variance": bias} if bias else "zeros", rng=rng)
        f = net.forward(rng.standard_normal((40, 1)), record=True).preactivations[2]
        histogram = client.get(f"/api/histogram?{query}&layer=2").json()
        assert histogram["preactivation"]["counts"] == np.histogram(f, bins=compute.HISTOGRAM_BINS)[0].tolist()


def test_a_network_too_big_to_share_is_probed_as_built(client):
    query = "depth=17&width=512&activation=tanh&init=xavier_normal&samples=4&seed=2"   # 4.2M parameters
    assert compute.network_size(explore_state.parse(dict(p.split("=") for p in query.split("&"))))[0] > \
        compute.SHARED_PARAMETERS
    data = client.get(f"/api/view?{query}").json()
    report = _probe_as_cli(17, 512, "tanh", "xavier_normal", None, 4, 2)
    assert data["layers"]["activation_std"] == [s.activation_std for s in report.layers]


def test_network_pool_keeps_one_network_per_shape_within_its_budget():
    from depthlab.lab.explore.pool import NetworkPool

    pool = NetworkPool(budget=100)
    a, b = dl.MLP(1, [3], 1, rng=0), dl.MLP(1, [3], 1, rng=1)
    a_weight = a.linears[0].weight.data.copy()
    with pool.lend("s", a, 60) as first:
        assert first is not a                                  # nothing kept yet: a copy (a is only read)
        np.testing.assert_array_equal(first.linears[0].weight.data, a_weight)
    with pool.lend("s", b, 60) as lent:
        assert lent is first                                   # the kept one, with b's parameters
        np.testing.assert_array_equal(lent.linears[0].weight.data, b.linears[0].weight.data)
    np.testing.assert_array_equal(a.linears[0].weight.data, a_weight)
    with pool.lend("t", dl.MLP(1, [3], 1, rng=2), 60):
        pass                                                   # 60 + 60 > 100: "s" is dropped
    assert list(pool.idle) == ["t"]
    c = dl.MLP(1, [3], 1, rng=3)
    with pool.lend("u", c, 101, shared=False) as lent:
        assert lent is c                                       # not shared with another thread: itself
    assert list(pool.idle) == ["t"]                            # over the budget alone: not kept


def test_another_activation_takes_the_kept_network_of_the_same_layers_and_gives_the_same_numbers(client):
    from depthlab.lab.explore.pool import NetworkPool

    pool = NetworkPool(budget=100)
    x = np.random.default_rng(0).normal(size=(300, 1))
    with pool.lend(("k", "relu"), dl.MLP(1, [16] * 3, 1, activation="relu", rng=0), 40, kin="k") as first:
        pass
    tanh_net = dl.MLP(1, [16] * 3, 1, activation="tanh", rng=1)
    with pool.lend(("k", "tanh"), tanh_net, 40, kin="k") as second:
        assert second is first and list(pool.idle) == []            # no copy: its activations swapped
        assert [a.activation.name for a in second.layers[1::2]] == ["tanh"] * 3
        np.testing.assert_array_equal(second(x), tanh_net(x))
    residual = dl.ResMLP(1, 16, 2, 1, rng=2)                          # other layers: not the same kin after all
    with pool.lend(("k", "res"), residual, 40, kin="k") as third:
        assert third is not first
        np.testing.assert_array_equal(third(x), residual(x))
    for activation in ("gelu", "relu", "silu", "tanh"):                 # the activation menu, through the server
        query = f"depth=6&width=12&activation={activation}&init=he_normal&samples=300&seed=4"
        report = _probe_as_cli(6, 12, activation, "he_normal", None, 300, 4)
        data = client.get(f"/api/view?{query}").json()
        assert data["layers"]["preactivation_std"] == [s.preactivation_std for s in report.layers]
        assert data["layers"]["grad_preactivation_std"] == [s.grad_preactivation_std for s in report.layers]
        assert data["verdict"] == report.verdict and data["diagnosis"] == report.diagnosis


def test_an_activation_switch_builds_no_network_unless_the_init_depends_on_the_activation(client, monkeypatch):
    builds = []
    build = compute.network_and_input
    monkeypatch.setattr(compute, "_BUILT", compute.Memo(lambda state: builds.append(state.activation) or build(state), 2))
    for activation in ("tanh", "gelu", "elu", "tanh"):
        query = f"depth=5&width=7&activation={activation}&init=xavier_uniform&samples=50&seed=8"
        data = client.get(f"/api/view?{query}").json()
        report = _probe_as_cli(5, 7, activation, "xavier_uniform", None, 50, 8)
        assert data["layers"]["grad_preactivation_std"] == [s.grad_preactivation_std for s in report.layers]
    assert builds == [compute.BUILT_ACTIVATION]                     # one network for every activation
    for activation in ("tanh", "selu"):                              # the edge of chaos: σ_w² of each activation
        assert client.get(f"/api/view?depth=5&width=7&activation={activation}&init=critical&samples=50&seed=8").is_success
    assert builds == [compute.BUILT_ACTIVATION, "tanh", "selu"]


def test_a_view_probed_in_halves_reproduces_the_probe_command(client):
    from depthlab._fast import pair
    from depthlab.signal import probe as probe_module

    query = "depth=20&width=80&activation=gelu&init=he_normal&samples=1000&seed=6"
    report = _probe_as_cli(20, 80, "gelu", "he_normal", None, 1000, 6)          # one whole pass
    net = dl.MLP(1, [80] * 20, 1, activation="gelu", rng=0)
    with threadpool_limits(1, user_api="blas"):
        assert probe_module._halves_pay(net, 1000) == pair.parallel()          # halves wherever two processors are
        data = client.get(f"/api/view?{query}").json()
    for key in ("preactivation_std", "activation_std", "grad_preactivation_std", "saturated_fraction"):
        assert data["layers"][key] == [getattr(s, key) for s in report.layers], key
    assert data["verdict"] == report.verdict and data["diagnosis"] == report.diagnosis


def test_a_new_depth_takes_over_the_arrays_of_its_neighbour_and_gives_the_same_numbers(client):
    from depthlab.lab.explore.pool import NetworkPool

    pool = NetworkPool(budget=100)
    x = np.random.default_rng(0).normal(size=(500, 1))       # arrays of 320 KB: big enough to be reused
    with pool.lend(("p", 3), dl.MLP(1, [80] * 3, 1, rng=0), 40, family="p") as deep:
        arrays = {id(a) for a in deep.forward(x, record=True, detached=True).layer_outputs}  # reused once dropped
    shallow_net = dl.MLP(1, [80] * 2, 1, rng=1)
    with pool.lend(("p", 2), shallow_net, 30, family="p") as shallow:
        assert shallow is not deep and list(pool.idle) == []   # the neighbour gave its arrays away
        trace = shallow.forward(x, record=True, detached=True)
        assert {id(a) for a in trace.layer_outputs} & arrays   # written into memory already paged in
        np.testing.assert_array_equal(trace.output, shallow_net(x))
        del trace
    with pool.lend(("q", 2), dl.MLP(1, [80] * 2, 1, rng=1), 30, family="q") as other:
        assert other is not shallow                            # another family: nothing to take
    assert list(pool.idle) == [("p", 2), ("q", 2)]
    for depth in (6, 5, 7):                                     # the depth slider, through the server
        query = f"depth={depth}&width=9&activation=tanh&init=normal&sigma2=0.2&samples=40&seed=3"
        report = _probe_as_cli(depth, 9, "tanh", "normal", 0.2, 40, 3)
        data = client.get(f"/api/view?{query}").json()
        assert data["layers"]["grad_preactivation_std"] == [s.grad_preactivation_std for s in report.layers]
        assert data["layers"]["preactivation_std"] == [s.preactivation_std for s in report.layers]


def test_adopt_arrays_needs_a_network():
    with pytest.raises(TypeError, match="adopt_arrays needs another network"):
        dl.MLP(1, [3], 1).adopt_arrays(dl.Linear(1, 3))


@pytest.mark.parametrize("case", ["normal", "on_edges", "constant", "rounding", "huge", "nonfinite", "small"])
def test_histograms_counted_by_chunks_equal_one_numpy_call(case):
    rng = np.random.default_rng(4)
    values = {"normal": rng.normal(size=50_001), "on_edges": np.round(rng.normal(size=30_000), 1),
              "constant": np.full(20_000, 0.3), "rounding": np.tile([0.3, np.nextafter(0.3, 1)], 10_000), "huge": rng.choice([-1e308, 1e308, 0.0], size=20_000),
              "nonfinite": np.concatenate([rng.normal(size=20_000), [np.nan, np.inf]]),
              "small": rng.normal(size=7)}[case]
    counts, edges = compute._histogram(values, 40)
    finite = values[np.isfinite(values)]
    if case == "huge":
        want_counts, want_edges = np.histogram(finite * 0.5, bins=40)
        want_edges = want_edges * 2.0
    elif case == "rounding":                                # np.histogram cannot make 40 edges: widened by 1e-9
        spread = 1e-9 * np.nextafter(0.3, 1)
        want_counts, want_edges = np.histogram(finite, bins=40, range=(0.3 - spread, np.nextafter(0.3, 1) + spread))
    else:
        want_counts, want_edges = np.histogram(finite, bins=40)
    np.testing.assert_array_equal(counts, want_counts)
    np.testing.assert_array_equal(edges, want_edges)
    assert counts.sum() == finite.size


def test_view_verdicts_of_the_seed_notebook(client):
    exploding = client.get("/api/view?depth=50&width=80&activation=relu&init=normal&sigma2=1&samples=300").json()
    healthy = client.get("/api/view?depth=50&width=80&activation=relu&init=he_normal&samples=300").json()
    assert exploding["verdict"] == "exploding" and healthy["verdict"] == "healthy"
    assert exploding["theory"]["phase"] == "explodes" and exploding["theory"]["chi1"] == 40.0   # σ_w² = 80
    assert healthy["theory"]["sigma_w2"] == 2.0 and healthy["theory"]["phase"] == "critical"
    zeros = client.get(f"/api/view?{SMALL}&init=zeros").json()
    assert zeros["verdict"] == "dead" and zeros["theory"]["phase"] == "dead"


def test_view_theory_is_dl_theory(client):
    data = client.get(f"/api/view?{SMALL}&activation=tanh&sigma2=0.15&bias_variance=0.05").json()
    scales = theory.depth_scales("tanh", 12 * 0.15, 0.05)
    got = data["theory"]
    assert got["sigma_w2"] == pytest.approx(1.8) and got["phase"] == "chaotic"
    assert got["chi1"] == pytest.approx(scales.chi1, rel=1e-12)
    assert got["xi_c"] == pytest.approx(scales.xi_c, rel=1e-12)
    assert got["c_star"] == pytest.approx(scales.c_star, rel=1e-12)
    assert data["phase_range"] == {"activation": "tanh", "w_max": 4.0, "b_max": 0.5}


def test_histograms_equal_numpy_at_every_layer(client):
    rng = np.random.default_rng(3)
    net = dl.MLP(1, [12] * 6, 1, activation="tanh", init=0.2, bias_init="zeros", rng=rng)
    trace = net.forward(rng.standard_normal((64, 1)), record=True)
    view = client.get(f"/api/view?{SMALL}&activation=tanh&sigma2=0.2&seed=3").json()
    assert view["layers"]["index"] == list(range(7))             # f_0 … f_6: six hidden layers and the output
    for k in range(7):
        entry = client.get(f"/api/histogram?{SMALL}&activation=tanh&sigma2=0.2&seed=3&layer={k}").json()
        assert entry["layer"] == k
        counts, edges = np.histogram(trace.preactivations[k], bins=compute.HISTOGRAM_BINS)
        assert entry["preactivation"]["counts"] == counts.tolist()
        np.testing.assert_allclose(entry["preactivation"]["edges"], edges, rtol=1e-12)
        h = trace.activations[k + 1] if k + 1 < len(trace.activations) else trace.output
        assert entry["activation"]["counts"] == np.histogram(h, bins=compute.HISTOGRAM_BINS)[0].tolist()
    default = client.get(f"/api/histogram?{SMALL}&activation=tanh&sigma2=0.2&seed=3").json()
    assert default["layer"] == 5                                 # the last hidden layer, depth − 1


@pytest.mark.parametrize("query, message", [
    (f"{SMALL}&layer=7", r"layer must be between 0 and 6"),
    (f"{SMALL}&layer=-1", r"layer must be between 0 and 6"),
    (f"{SMALL}&layer=x", r"layer must be a whole number \(0 … depth\), got 'x'"),
    (f"{SMALL}&layer=1&layer=2", r"layer is given twice"),
    ("depth=abc&layer=0", r"depth must be a whole number, got 'abc'"),
    ("bins=3", r"unknown key 'bins'"),
])
def test_bad_histogram_queries(client, query, message):
    response = client.get(f"/api/histogram?{query}")
    assert response.status_code == 400 and re.search(message, response.json()["error"])


def test_views_and_histograms_are_kept_per_state(client):
    query = f"{SMALL}&activation=tanh&seed=11"
    first = client.get(f"/api/view?{query}").json()
    second = client.get(f"/api/view?{query}").json()                 # kept: the same numbers
    assert {k: v for k, v in first.items() if k != "seconds"} == {k: v for k, v in second.items() if k != "seconds"}
    other = client.get(f"/api/view?{query.replace('seed=11', 'seed=12')}").json()
    assert other["layers"]["preactivation_std"] != first["layers"]["preactivation_std"]


def test_a_view_looked_ahead_is_kept_with_the_numbers_of_one_computed_when_asked(client):
    """/api/ahead computes a view in the worker process; /api/view then answers it from what
    it kept, with the numbers this process computes for the same state."""
    query = f"{SMALL}&activation=gelu&init=he_normal&seed=4321"
    state = explore_state.parse(dict(p.split("=") for p in query.split("&")))
    assert compute.view_key(state, 2) not in compute._VIEW.results
    response = client.get(f"/api/ahead?{query}&layer=2")
    assert response.status_code == 200 and response.json() == {"kept": True}
    assert compute._VIEW.results[compute.view_key(state, 2)].done()
    kept = client.get(f"/api/view?{query}&layer=2").json()
    here = compute._view(state, 2)                     # computed anew, in this process
    assert {k: v for k, v in kept.items() if k not in ("seconds", "state")} == here
    assert kept["histogram"]["layer"] == 2 and kept["state"]["activation"] == "gelu"


def test_a_look_ahead_runs_one_at_a_time_and_refuses_bad_queries(client, monkeypatch):
    import threading
    from concurrent.futures import Future

    response = client.get("/api/ahead?depth=0")
    assert response.status_code == 400 and "depth" in response.json()["error"]
    busy = Future()                                                    # one still being computed
    monkeypatch.setattr(compute.LOOK_AHEAD, "future", busy)
    threading.Timer(0.5, busy.set_exception, args=(RuntimeError("its own error"),)).start()
    started = time.monotonic()
    response = client.get(f"/api/ahead?{SMALL}&seed=77")
    assert response.status_code == 200 and response.json() == {"kept": True}
    assert time.monotonic() - started >= 0.5                           # after the other one
    state = explore_state.parse({"depth": "6", "width": "12", "samples": "64", "seed": "77"})
    assert compute._VIEW.results[compute.view_key(state, None)].done()


def test_a_view_asked_for_pauses_the_look_ahead_unless_it_is_the_one_computed(monkeypatch):
    from concurrent.futures import Future

    calls = []
    helper = type("FakeHelper", (), {"pause": lambda self: calls.append("pause"),
                                     "resume": lambda self: calls.append("resume")})()
    ahead = compute.LookAhead(helper)
    with ahead.asked("a"):                       # nothing computed ahead: paused all the same (see below)
        assert calls == ["pause"] and ahead.asking == 1
    assert ahead.asking == 0
    ahead.key, ahead.future = "a", Future()
    calls.clear()
    with ahead.asked("b"):
        assert calls == ["pause"]
    with ahead.asked("a"):                       # the very view: it goes on, and the request waits for it
        assert calls == ["pause", "resume"] and ahead.joined == 1
        with ahead.asked("b"):                   # another view meanwhile does not pause what one waits on
            assert calls == ["pause", "resume"]
    assert ahead.joined == 0 and ahead.asking == 0
    calls.clear()
    time.sleep(compute.RESUME_AFTER + 0.5)          # no page asked for more: it goes on by itself
    assert calls == ["resume"]


def test_a_request_holds_the_look_ahead_as_it_arrives_and_a_refused_one_not_for_long(client, monkeypatch):
    calls = []
    helper = type("FakeHelper", (), {"pause": lambda self: calls.append("pause"),
                                     "resume": lambda self: calls.append("resume")})()
    monkeypatch.setattr(compute, "LOOK_AHEAD", compute.LookAhead(helper))
    assert client.get("/api/view?depth=zero").status_code == 400        # refused before it is computed
    assert calls == ["pause"]                                            # held on arrival all the same
    time.sleep(compute.RESUME_AFTER + 0.5)
    assert calls == ["pause", "resume"]                                  # and not left paused
    calls.clear()
    compute.LOOK_AHEAD.joined = 1                                        # a view waits on the worker's:
    compute.LOOK_AHEAD.hold()                                            # another request does not pause it
    assert calls == []
    compute.LOOK_AHEAD.joined = 0


def test_a_look_ahead_asked_for_while_a_view_is_computed_waits_paused_for_the_pages_next(monkeypatch):
    """The page may send a look-ahead just before a control moves; the server can get it after
    the view the move asks for has begun. The worker must not compute beside that view (nor
    beside the browser drawing it): it starts paused and goes on at the page's next request."""
    calls = []
    helper = type("FakeHelper", (), {"pause": lambda self: calls.append("pause"),
                                     "resume": lambda self: calls.append("resume"),
                                     "run": lambda self, function, *args: calls.append("run")})()
    ahead = compute.LookAhead(helper)
    state = explore_state.parse({"depth": "3", "width": "4", "samples": "8", "seed": "31337"})
    guesses = [compute.view_key(replace(state, seed=seed), None) for seed in (31338, 31339)]
    try:
        with ahead.asked(compute.view_key(state, None)):
            calls.clear()
            future, started = ahead.start(guesses[0])
            assert started and calls[0] == "pause"              # paused before its work is sent
            future.result(timeout=10)
        calls.clear()
        ahead.start(guesses[1])[0].result(timeout=10)           # the page is idle again
        assert calls[0] == "resume"
    finally:
        for key in guesses:                                     # the fake worker's answers are no views
            compute._VIEW.results.pop(key, None)


def test_the_look_aheads_worker_raises_its_errors_here_and_is_replaced_when_it_dies():
    from depthlab.lab.explore.ahead import Helper, WorkerDied

    helper = Helper()
    try:
        assert helper.run(compute.weight_variance, explore_state.parse({"init": "he_normal"})) == 2.0
        with pytest.raises(explore_state.StateError, match="layer must be between 0 and 6"):
            helper.run(compute.check_layer, explore_state.parse({"depth": "6"}), 7)
        worker = helper._process.pid
        state = lambda: open(f"/proc/{worker}/stat").read().rsplit(")", 1)[1].split()[0]   # noqa: E731
        helper.pause()
        deadline = time.monotonic() + 10
        while state() != "T" and time.monotonic() < deadline:          # a signal arrives when it arrives
            time.sleep(0.01)
        assert state() == "T"                                           # stopped
        answer = []                                                     # work sent meanwhile waits
        sent = threading.Thread(target=lambda: answer.append(
            helper.run(compute.weight_variance, explore_state.parse({"width": "20"}))))
        sent.start()
        sent.join(0.5)
        assert sent.is_alive() and state() == "T" and not answer
        helper.resume()
        sent.join(10)
        assert answer == [20.0]
        while state() == "T" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert state() != "T"
        helper._process.kill()                                         # killed between two pieces of work
        helper._process.wait()
        assert helper.run(compute.weight_variance, explore_state.parse({"width": "10"})) == 10.0   # a new worker
        assert helper._process.pid != worker
        with pytest.raises((AttributeError, TypeError, __import__("pickle").PicklingError)):
            helper.run(compute.weight_variance, lambda: None)           # the caller's: nothing sent
        assert helper._process.pid != worker and helper._process.poll() is None
        with pytest.raises(WorkerDied, match="ended"):
            helper.run(os._exit, 3)                                     # dies while it works
        assert helper.run(compute.weight_variance, explore_state.parse({})) == 80.0     # width · sigma2
    finally:
        helper.stop()
    assert helper._process is None


def test_a_view_that_waited_for_a_look_ahead_whose_worker_died_is_computed_here(client, monkeypatch):
    from depthlab.lab.explore.ahead import WorkerDied

    def dies(function, *args):
        time.sleep(0.3)
        raise WorkerDied("the look-ahead's worker process ended (EOFError)")

    monkeypatch.setattr(compute.LOOK_AHEAD.helper, "run", dies)
    query = f"{SMALL}&seed=9090"
    state = explore_state.parse(dict(p.split("=") for p in query.split("&")))
    future, started = compute.look_ahead(state)
    assert started and not future.done()
    data = client.get(f"/api/view?{query}").json()                     # waits for it, then computes it
    assert data["layers"] == compute._view(state, None)["layers"]
    assert isinstance(future.exception(), WorkerDied)


def test_the_training_controls_ask_for_no_new_view(client):
    query = f"{SMALL}&activation=tanh&seed=31"
    first = client.get(f"/api/view?{query}").json()
    kept = len(compute._VIEW.results)
    other = client.get(f"/api/view?{query}&steps=50&lr=0.5&optimizer=adam").json()
    assert len(compute._VIEW.results) == kept                          # the same view, kept
    assert other["layers"] == first["layers"] and (other["state"]["lr"], other["state"]["steps"]) == (0.5, 50)


@pytest.mark.parametrize("query", [
    "depth=3&width=8&activation=sigmoid&sigma2=1e-5&bias_variance=10000",   # every unit saturated
    "depth=3&width=8&activation=softplus&sigma2=1e-300",
    "depth=1&width=1&activation=sigmoid&sigma2=1e-6&bias_variance=10000&seed=39",  # h_1 within a few ulps
])
def test_histograms_of_layers_equal_to_rounding(client, query):
    assert client.get(f"/api/view?samples=20&{query}").status_code == 200
    depth = int(re.search(r"depth=(\d+)", query).group(1))
    for layer in range(depth):
        entry = client.get(f"/api/histogram?samples=20&{query}&layer={layer}").json()
        counts, edges = entry["activation"]["counts"], entry["activation"]["edges"]
        width = int(re.search(r"width=(\d+)", query).group(1))
        assert sum(counts) == 20 * width and len(edges) == compute.HISTOGRAM_BINS + 1
        assert all(a < b for a, b in zip(edges, edges[1:]))


def test_histogram_of_values_equal_to_rounding_widens_the_range():
    rng = np.random.default_rng(39)        # the network of the last case above: h_1 = σ(f_0) ≈ 1 − 1e-13
    net = dl.MLP(1, [1], 1, activation="sigmoid", init=1e-6, bias_init={"name": "normal", "variance": 10000.0}, rng=rng)
    h = net.forward(rng.standard_normal((20, 1)), record=True).activations[1]
    with pytest.raises(ValueError, match="Too many bins"):
        np.histogram(h, bins=compute.HISTOGRAM_BINS)              # why the explorer widens the range
    assert 0 < h.max() - h.min() < 1e-12


BAD_VIEWS = [  # (query, message pattern): HTTP 400 with {"error": message}
    ("depth=abc", r"depth must be a whole number, got 'abc'"),
    ("depth=0", r"depth must be between 1 and 200"),
    ("depth=201", r"depth must be between 1 and 200 \(the explorer's cap\), got 201"),
    ("depth=99999999999999999999", r"depth must be between 1 and 200"),
    ("width=513", r"width must be between 1 and 512"),
    ("width=1.5", r"width must be a whole number"),
    ("samples=1", r"samples must be between 2 and 5000"),
    ("samples=5001", r"samples must be between 2 and 5000"),
    ("depth=200&width=512&samples=5000", r"Linear layers × width × samples = 514,560,000 exceeds .* 8,000,000"),
    ("block=preact&depth=200&width=512&samples=100", r"Linear layers × width × samples = 20,582,400 exceeds"),
    ("block=dense", r"block must be one of plain, preact, postact; got 'dense'"),
    ("norm=group", r"norm must be one of none, batch, layer; got 'group'"),
    ("block=preact&residual_scale=-1", r"residual_scale must be a number >= 0 or '1/sqrt\(depth\)', got '-1'"),
    ("block=preact&residual_scale=inf", r"residual_scale must be a number >= 0"),
    ("block=preact&residual_scale=1/depth", r"residual_scale must be a number >= 0"),
    ("residual_scale=0.5", r"residual_scale weighs residual branches; it needs block=preact or block=postact"),
    ("activation=swish2", r"activation must be one of identity, relu"),
    ("activation=", r"activation must be one of"),
    ("init=kaiming_bogus", r"init must be one of normal, he_normal"),
    ("sigma2=-1", r"sigma2 must be > 0 and <= 10000"),
    ("sigma2=0", r"sigma2 must be > 0"),
    ("sigma2=nan", r"sigma2 must be finite, got 'nan'"),
    ("sigma2=inf", r"sigma2 must be finite"),
    ("sigma2=1e308", r"sigma2 must be > 0 and <= 10000"),
    ("sigma2=one", r"sigma2 must be a number, got 'one'"),
    ("init=he_normal&sigma2=2", r"sigma2 sets σ²_Ω of init=normal; it cannot be combined with init=he_normal"),
    ("bias_variance=-0.1", r"bias_variance must be >= 0"),
    ("bias_variance=1e300", r"bias_variance must be >= 0 and <= 10000"),
    ("seed=-1", r"seed must be between 0 and 4294967295"),
    ("in_features=65", r"in_features must be between 1 and 64"),
    ("steps=2001", r"steps must be between 1 and 2000"),
    ("lr=0", r"lr must be > 0"),
    ("optimizer=rmsprop", r"optimizer must be one of sgd, adam"),
    ("colour=red", r"unknown key 'colour' in the link; valid keys: depth, width"),
    ("depth=5&depth=6", r"depth is given twice in the link \('5' and '6'\); keep one"),
    ("depth=%00", r"depth must be a whole number, got '\\x00'"),
]


@pytest.mark.parametrize("query, message", BAD_VIEWS)
def test_bad_view_queries_are_400_with_a_message(client, query, message):
    response = client.get(f"/api/view?{query}")
    assert response.status_code == 400
    assert re.search(message, response.json()["error"])


def test_named_keys_and_case_are_forgiving_where_probe_is(client):
    data = client.get(f"/api/view?{SMALL}&activation=Leaky-ReLU&init=He_Normal").json()
    assert data["state"]["activation"] == "leaky_relu" and data["state"]["init"] == "he_normal"
    assert "sigma2" not in data["state"]


# ----------------------------------------------------------------------------- /api/phase

def test_phase_diagram_is_dl_theory_on_a_grid(client):
    data = client.get("/api/phase?activation=tanh&w_max=4&b_max=0.5").json()
    assert len(data["sigma_w2"]) == len(data["sigma_b2"]) == compute.PHASE_POINTS
    i, j = 37, 61
    w, b = data["sigma_w2"][j], data["sigma_b2"][i]
    assert data["log10_chi1"][i][j] == pytest.approx(np.log10(theory.chi1("tanh", w, b)), abs=1e-11)
    relu = client.get("/api/phase?activation=relu&w_max=4&b_max=0.5").json()
    assert relu["explodes"][0][-1] is True and relu["log10_chi1"][0][-1] is None      # σ_w² = 4 > 2
    assert relu["explodes"][0][0] is False


def test_the_edge_of_chaos_line_lies_where_the_theorys_chi1_is_one(client):
    tanh = client.get("/api/phase?activation=tanh&w_max=4&b_max=0.5").json()["edge_of_chaos"]
    points = [(w, b) for w, b in zip(tanh["sigma_w2"], tanh["sigma_b2"]) if w is not None]
    assert len(points) > 50
    for w, b in points[::10]:           # interpolated on the grid: within a grid cell's curvature
        assert theory.chi1("tanh", w, b) == pytest.approx(1.0, abs=2e-3)
    at_zero = min(points, key=lambda p: p[1])                # tanh's edge of chaos at σ_b² = 0: σ_w² = 1
    assert at_zero[1] == 0.0 and at_zero[0] == pytest.approx(theory.critical_weight_variance("tanh", 0.0), abs=1e-3)
    relu = client.get("/api/phase?activation=relu&w_max=4&b_max=0.5").json()["edge_of_chaos"]
    assert relu == {"sigma_w2": [], "sigma_b2": []}          # a single point (2, 0): no line through the grey


def test_a_stopping_server_waits_for_its_background_threads_and_warming_resumes_later():
    # a daemon thread still inside C++ (contourpy, scipy.special) when the interpreter ends
    # aborts the process (SIGABRT: "terminate called without an active exception")
    from depthlab.lab.explore import memo

    compute._PHASE_DIAGRAM.start("gelu", 3.0, 0.7)             # a grid no one asked for: computed now
    compute.start_warming()
    compute.stop_background(timeout=120)
    assert not any(thread.is_alive() for thread in list(memo._STARTED) + compute._WARMING)
    assert compute._PHASE_DIAGRAM.results[("gelu", 3.0, 0.7)].done()
    compute.start_warming()                                    # stopped before it was done: again
    assert compute._WARMED.is_set() or compute._WARMING[0].is_alive()


def test_the_server_warms_every_activations_first_phase_diagram_and_theory(client):
    # create_app started it; warm_theory computes (or waits for) the same entries a request keeps
    assert [t.name for t in compute._WARMING] == ["depthlab-warm-theory"]
    compute.start_warming()                                      # once per process
    assert len(compute._WARMING) == 1
    compute.warm_theory()
    for name in dl.nn.activations.names():
        kept = compute._PHASE_DIAGRAM.results[(name, 4.0, 0.5)]
        assert kept.done() and kept.result()["activation"] == name
        assert compute._MEAN_FIELD.results[(name, 2.0, 0.0)].done()
    tanh = compute.phase_diagram("tanh", 4.0, 0.5)
    assert tanh is compute._PHASE_DIAGRAM.results[("tanh", 4.0, 0.5)].result()     # a request finds it
    assert tanh["log10_chi1"][10][20] == pytest.approx(
        np.log10(theory.chi1("tanh", tanh["sigma_w2"][20], tanh["sigma_b2"][10])), abs=1e-11)
    assert compute.mean_field("tanh", 2.0, 0.0)["chi1"] == pytest.approx(theory.chi1("tanh", 2.0, 0.0), rel=1e-12)


@pytest.mark.parametrize("query, message", [
    ("activation=nope", r"activation must be one of"),
    ("activation=tanh&w_max=-1", r"w_max must be > 0"),
    ("activation=tanh&w_max=x", r"w_max must be a number, got 'x'"),
    ("activation=tanh&b_max=1e300", r"b_max must be > 0 and <= 100000"),
    ("activation=tanh&depth=3", r"unknown key 'depth'"),
])
def test_bad_phase_queries(client, query, message):
    response = client.get(f"/api/phase?{query}")
    assert response.status_code == 400 and re.search(message, response.json()["error"])


# ----------------------------------------------------------------------------- /api/train

def _wait(client, job_id, timeout=120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/api/train/{job_id}").json()
        if job["status"] not in ("starting", "running"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"training job {job_id} did not finish in {timeout} s")


def test_training_runs_and_records_the_layers(client):
    response = client.post("/api/train?depth=3&width=16&activation=tanh&init=xavier_normal&steps=30&lr=0.1&seed=1")
    assert response.status_code == 202
    job = _wait(client, response.json()["id"])
    assert job["status"] == "done" and job["steps_done"] == 30 and len(job["loss"]) == 30
    assert job["loss"][0] == pytest.approx(np.log(10), rel=0.3)            # chance level at the start
    assert np.mean(job["loss"][-5:]) < np.mean(job["loss"][:5])             # it learns
    assert job["snapshot_steps"][0] == 0 and job["snapshot_steps"][-1] == 30
    assert len(job["forward_std"][0]) == 4 and len(job["forward_std"]) == len(job["snapshot_steps"])
    assert 0.0 <= job["test_accuracy"] <= 1.0


def test_training_can_be_stopped_and_unknown_jobs_are_404(client):
    job = client.post("/api/train?depth=4&width=32&steps=2000&lr=0.01").json()
    stopped = client.post(f"/api/train/{job['id']}/stop")
    assert stopped.status_code == 200
    assert _wait(client, job["id"])["status"] in ("stopped", "done")
    assert client.get("/api/train/nope").status_code == 404
    assert "no training job 'nope'" in client.get("/api/train/nope").json()["error"]
    assert client.post("/api/train/nope/stop").status_code == 404
    assert client.get("/api/train").status_code == 405            # starting takes POST


def test_training_divergence_is_reported_not_raised(client):
    job = client.post("/api/train?depth=3&width=16&steps=50&lr=10&init=normal&sigma2=50").json()
    finished = _wait(client, job["id"])
    assert finished["status"] in ("diverged", "done")
    if finished["status"] == "diverged":
        assert finished["message"]


@pytest.mark.parametrize("query, message", [
    ("depth=100&width=300&samples=10&steps=2000", r"training steps × Linear layers × width² = .* exceeds the explorer's cap"),
    ("steps=0", r"steps must be between 1 and 2000"),
    ("lr=-1", r"lr must be > 0"),
])
def test_bad_training_queries(client, query, message):
    response = client.post(f"/api/train?{query}")
    assert response.status_code == 400 and re.search(message, response.json()["error"])


def test_unknown_api_paths_are_json_404(client):
    response = client.get("/api/nothing")
    assert response.status_code == 404 and response.json() == {"error": "Not Found"}
    assert client.post("/api/view").status_code == 405


# ----------------------------------------------------------------------------- the state

def test_state_query_round_trips():
    state = explore_state.parse({"depth": "9", "init": "critical", "activation": "tanh"})
    assert explore_state.parse({k: str(v) for k, v in state.query().items()}) == state
    assert state.weight_init == {"name": "critical", "activation": "tanh"}
    assert compute.weight_variance(state) == pytest.approx(theory.critical_weight_variance("tanh", 0.0))


# ----------------------------------------------------------------------------- the command

def _start(*args):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    process = subprocess.Popen([sys.executable, "-m", "depthlab", "explore", "--no-browser", *args],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    line = process.stdout.readline()
    match = re.search(r"http://[^ ]+/", line)
    assert match, (line, process.stderr.read() if process.poll() is not None else "")
    return process, match.group(0)


def _stop(process):
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    return process.returncode, out, err


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (Linux's /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def test_command_serves_on_a_free_local_port_and_stops_on_ctrl_c():
    process, url = _start()
    try:
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url + "api/view?" + SMALL, timeout=60) as response:
            assert json.load(response)["verdict"] in VERDICTS
        with urllib.request.urlopen(url, timeout=30) as response:
            assert b"depthlab explore" in response.read()
        with urllib.request.urlopen(url + "api/ahead?" + SMALL + "&seed=3", timeout=60) as response:
            assert json.load(response) == {"kept": True}                # the look-ahead's worker is started
        workers = _children(process.pid)
        assert len(workers) == 1 and os.getpgid(workers[0]) != os.getpgid(process.pid)   # Ctrl-C is not its
    finally:
        code, out, err = _stop(process)
    assert code in (0, 130) and "Traceback" not in err and "stopped" in err
    deadline = time.monotonic() + 10
    while any(os.path.exists(f"/proc/{w}") for w in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(os.path.exists(f"/proc/{w}") for w in workers)      # stopped with the server


def test_the_servers_connections_send_without_waiting_for_an_acknowledgement():
    """uvicorn writes a response's headers and body in two pieces: with Nagle's algorithm on,
    the body waits for the client's delayed acknowledgement (~40 ms a request). asyncio turns
    it off (TCP_NODELAY) on the connections of a socket that names its protocol TCP."""
    import asyncio
    import socket

    from depthlab.lab.explore import server as explore_server

    async def accepted_nodelay():
        sock = explore_server.bind("127.0.0.1", 0)
        seen = asyncio.get_running_loop().create_future()

        def connected(reader, writer):
            if not seen.done():
                seen.set_result(writer.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(connected, sock=sock)
        try:
            _, writer = await asyncio.open_connection(*sock.getsockname()[:2])
            value = await asyncio.wait_for(seen, 30)
            writer.close()
            return value
        finally:
            server.close()
            await server.wait_closed()

    assert asyncio.run(accepted_nodelay()) != 0


def test_ctrl_c_while_the_server_warms_up_ends_it_cleanly():
    for _ in range(2):                     # the theory is being warmed (contourpy, scipy.special: C++)
        process, url = _start()
        code, out, err = _stop(process)
        assert code in (0, 130) and "terminate called" not in err and "Traceback" not in err, (code, err)


def test_a_ctrl_c_as_the_server_is_made_stops_the_warming_it_started(monkeypatch, capsys):
    import argparse
    import threading

    from depthlab.lab.explore import server as server_module

    made = server_module.make_server

    def interrupted(sock):                 # the app starts warming the theory, then the Ctrl-C comes
        made(sock)
        raise KeyboardInterrupt

    monkeypatch.setattr(compute, "_WARMED", threading.Event())        # not warmed yet in this process
    monkeypatch.setattr(server_module, "make_server", interrupted)
    args = argparse.Namespace(host=None, port=0, no_browser=True)
    assert server_module.cli_main(args) == 130
    assert "stopped" in capsys.readouterr().err
    assert not [t for t in threading.enumerate() if t.name == "depthlab-warm-theory" and t.is_alive()]


class _SignalWhenCollected:
    """Raises a signal from ``__del__``: where Python's own SIGINT handler would raise
    KeyboardInterrupt into a finalizer, which Python prints and drops (the garbage collector
    runs them anywhere, e.g. as the server starts)."""

    def __init__(self, number):
        self.number = number

    def __del__(self):
        signal.raise_signal(self.number)


@pytest.mark.parametrize("number, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_the_garbage_collector_delivers_as_the_server_is_made_stops_it(monkeypatch, capsys, number, code):
    import argparse

    from depthlab.lab.explore import server as server_module

    made = server_module.make_server

    def signalled(sock):
        server = made(sock)
        _SignalWhenCollected(number)       # collected at once: the signal arrives inside __del__

        def served(**_):
            raise AssertionError("served after the signal")
        server.run = served
        return server

    monkeypatch.setattr(server_module, "make_server", signalled)
    args = argparse.Namespace(host=None, port=0, no_browser=True)
    assert server_module.cli_main(args) == code
    assert "stopped" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler     # the handlers are put back


def test_a_signal_in_a_finalizer_as_the_server_starts_stops_it(monkeypatch, capsys):
    import argparse
    import threading

    from depthlab.lab.explore import server as server_module

    made = server_module.make_server
    servers = []

    def signalled(sock):
        server = servers.append(made(sock)) or servers[0]
        run = server.run

        def run_after_a_signal(**kwargs):
            _SignalWhenCollected(signal.SIGINT)          # before uvicorn's own handler is in place
            return run(**kwargs)
        server.run = run_after_a_signal
        return server

    monkeypatch.setattr(server_module, "make_server", signalled)
    fired = []
    watchdog = threading.Timer(60, lambda: fired.append(setattr(servers[0], "should_exit", True)))
    watchdog.start()                       # a failure ends too
    try:
        assert server_module.cli_main(argparse.Namespace(host=None, port=0, no_browser=True)) == 130
    finally:
        watchdog.cancel()
    assert not fired and servers[0].should_exit and not servers[0].force_exit


def test_sigterm_stops_the_command_and_its_worker():
    process, url = _start()
    with urllib.request.urlopen(url + "api/ahead?" + SMALL + "&seed=3", timeout=60) as response:
        assert json.load(response) == {"kept": True}
    workers = _children(process.pid)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 143 and "stopped" in err and "Traceback" not in err
    deadline = time.monotonic() + 10
    while any(os.path.exists(f"/proc/{w}") for w in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert workers and not any(os.path.exists(f"/proc/{w}") for w in workers)


def test_command_warns_for_a_public_host_and_refuses_a_taken_port():
    process, url = _start("--host", "0.0.0.0")
    try:
        port = url.rsplit(":", 1)[1].strip("/")
        taken = subprocess.run([sys.executable, "-m", "depthlab", "explore", "--no-browser", "--port", port,
                                "--host", "0.0.0.0"], capture_output=True, text=True, timeout=60)
        assert taken.returncode == 2 and f"cannot listen on 0.0.0.0:{port}" in taken.stderr
        assert "Traceback" not in taken.stderr
    finally:
        code, out, err = _stop(process)
    assert "warning: serving on 0.0.0.0" in err and code in (0, 130)


@pytest.mark.parametrize("args, message", [
    (["--port", "70000"], "must be in 0-65535"),
    (["--port", "x"], "expected a port number"),
])
def test_command_bad_arguments(args, message):
    done = subprocess.run([sys.executable, "-m", "depthlab", "explore", "--no-browser", *args],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr


BLOCK_WEB = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('starlette', 'uvicorn', 'plotly'):
            raise ImportError(f'No module named {name!r}')
sys.meta_path.insert(0, Block())
from depthlab.lab.cli import main
sys.exit(main(['explore', '--no-browser']))
"""


def test_command_without_the_web_extra_names_it():
    done = subprocess.run([sys.executable, "-c", BLOCK_WEB], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "pip install 'depthlab[web]'" in done.stderr and "Traceback" not in done.stderr


# ----------------------------------------------------------------------------- Jupyter

def test_explore_in_a_notebook_shows_the_same_app_inline():
    explorer = dl.explore(depth=6, width=12, samples=64, activation="tanh")
    try:
        assert explorer.running and "depth=6" in explorer.url and "activation=tanh" in explorer.url
        frame = explorer._repr_html_()
        assert f'<iframe src="{explorer.url}"' in frame
        base = explorer.url.split("?")[0]
        with urllib.request.urlopen(base + "api/view?" + explorer.url.split("?")[1], timeout=60) as response:
            assert json.load(response)["state"]["activation"] == "tanh"
        assert dl.explore().url.split("?")[0] == base            # the running server is reused
    finally:
        explorer.stop()
    assert not explorer.running


@pytest.mark.parametrize("kwargs, error, message", [
    ({"depth": 0}, ValueError, "depth must be between 1 and 200"),
    ({"colour": "red"}, TypeError, "unexpected keyword 'colour'"),
])
def test_explore_refuses_bad_state(kwargs, error, message):
    with pytest.raises(error, match=message):
        dl.explore(**kwargs)


# ----------------------------------------------------------------------------- results kept per key

def test_memo_computes_once_while_several_threads_ask_and_keeps_the_last_results():
    import threading

    from depthlab.lab.explore.memo import Memo

    calls, release = [], threading.Event()

    def square(x):
        calls.append(x)
        release.wait(10)
        return x * x

    memo = Memo(square, size=2)
    memo.start(3)                                           # in the background, blocked on release
    answers = []
    askers = [threading.Thread(target=lambda: answers.append(memo(3))) for _ in range(3)]
    for asker in askers:
        asker.start()
    release.set()
    for asker in askers:
        asker.join(10)
    assert answers == [9, 9, 9] and calls == [3]           # the askers waited for the one computation
    assert memo(4) == 16 and memo(5) == 25 and memo(3) == 9  # 3 was dropped (size 2): computed again
    assert calls == [3, 4, 5, 3]


def test_memo_hands_an_error_to_its_callers_and_does_not_keep_it():
    from depthlab.lab.explore.memo import Memo

    attempts = []

    def refuse(x):
        attempts.append(x)
        raise ValueError(f"no {x}")

    memo = Memo(refuse, size=4)
    for _ in range(2):
        with pytest.raises(ValueError, match="no 7"):
            memo(7)
    assert attempts == [7, 7]
