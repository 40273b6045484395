"""Adversarial inputs to the explorer, `depthlab probe` and dl.explore(): each is answered with the
right numbers or a clear refusal (HTTP 400 with a message, a one-line CLI error, a TypeError or
ValueError naming the argument), never a server error or a traceback."""
import re
import socket

import numpy as np
import pytest
from starlette.testclient import TestClient

import depthlab as dl
from depthlab.lab import cli, probe_network
from depthlab.lab.explore import state as explore_state
from depthlab.lab.explore.app import create_app

SMALL = "depth=3&width=5&samples=10"


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(), raise_server_exceptions=False) as test_client:
        yield test_client


# ----------------------------------------------------------------------------- init=critical

@pytest.mark.parametrize("activation", ["gelu", "silu", "softplus"])
@pytest.mark.parametrize("endpoint", ["/api/view", "/api/histogram"])
def test_critical_init_of_an_activation_without_an_edge_of_chaos_is_400(client, activation, endpoint):
    response = client.get(f"{endpoint}?{SMALL}&init=critical&activation={activation}")
    assert response.status_code == 400
    assert f"{activation} has no edge of chaos" in response.json()["error"]
    assert client.post(f"/api/train?depth=2&width=8&steps=5&init=critical&activation={activation}").status_code == 400


def test_probe_command_puts_critical_weights_at_the_activations_edge_of_chaos(capsys):
    # ReLU's edge of chaos is σ_w² = 2 (tanh's, the critical initializer's default, is 1)
    net = probe_network.build(depth=2, width=400, activation="relu", init="critical", rng=0)
    assert 400 * np.var(net.linears[1].weight.data) == pytest.approx(2.0, rel=0.03)
    assert cli.main(["probe", "--depth", "3", "--width", "8", "--samples", "16", "--init", "critical",
                     "--activation", "gelu"]) == 2
    err = capsys.readouterr().err
    assert "gelu has no edge of chaos" in err and len(err.strip().splitlines()) == 1


# ----------------------------------------------------------------------------- query values

def test_negative_zero_is_zero_in_the_state(client):
    for query in ("bias_variance=-0", "block=preact&residual_scale=-0"):
        state = client.get(f"/api/view?{SMALL}&{query}").json()["state"]
        key = query.rsplit("&", 1)[-1].split("=")[0]
        assert state[key] == 0.0 and np.signbit(state[key]) == np.False_
    assert str(explore_state.parse({"bias_variance": "-0"}).bias_variance) == "0.0"


def test_phase_diagram_refuses_a_range_whose_grid_rounds_to_zero(client):
    response = client.get("/api/phase?activation=tanh&w_max=5e-324")
    assert response.status_code == 400 and "w_max must be > 0 (at least 1e-300)" in response.json()["error"]
    assert client.get("/api/phase?activation=tanh&w_max=1e-300").status_code == 200


# ----------------------------------------------------------------------------- dl.explore() and --host

@pytest.mark.parametrize("kwargs, error, message", [
    ({"port": -1}, ValueError, r"port must be in 0-65535"),
    ({"port": 70000}, ValueError, r"port must be in 0-65535"),
    ({"port": True}, TypeError, r"port must be an int, got bool"),
    ({"port": "8000"}, TypeError, r"port must be an int, got str"),
    ({"host": None}, TypeError, r"host must be a string"),
    ({"host": ""}, ValueError, r"host must name an address"),
    ({"height": '600" onload="alert(1)'}, TypeError, r"height must be an int"),
    ({"height": 0}, ValueError, r"height must be between 100 and 100000"),
])
def test_explore_refuses_bad_places(kwargs, error, message):
    with pytest.raises(error, match=message):
        dl.explore(**kwargs)


def test_explore_on_a_taken_port_says_so():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(ValueError, match=rf"cannot listen on 127.0.0.1:{port}: .*port=0 for a free port"):
            dl.explore(port=port)


@pytest.mark.parametrize("host", ["", "   "])
def test_command_refuses_an_empty_host(capsys, host):
    assert cli.main(["explore", "--no-browser", "--host", host]) == 2
    err = capsys.readouterr().err
    assert "--host must name an address" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("query", ["depth=200&width=512&samples=2", "depth=40&width=512&samples=2&block=preact&norm=batch"])
def test_a_network_of_too_many_weights_is_refused_before_it_is_built(client, query):
    # samples=2 keeps Linear layers × width × samples small; the weights alone would be 170-420 MB a copy
    response = client.get(f"/api/view?{query}")
    assert response.status_code == 400
    assert "width² = " in response.json()["error"] and "exceeds the explorer's cap of 16,000,000" in response.json()["error"]
    assert client.post(f"/api/train?{query}&steps=1").status_code == 400
    assert "width² ≤ 16,000,000" in client.get("/").text


def test_histogram_of_a_layer_spanning_more_than_float64(client):
    """f_108 of this identity network holds values near ±1e308: their range overflows float64."""
    query = "depth=120&width=50&sigma2=1e4&activation=identity&samples=8&seed=2"
    rng = np.random.default_rng(2)
    net = dl.MLP(1, [50] * 120, 1, activation="identity", init=1e4, bias_init="zeros", rng=rng)
    with np.errstate(over="ignore", invalid="ignore"):
        f = net.forward(rng.standard_normal((8, 1)), record=True, allow_nonfinite=True).preactivations[108]
    f = f[np.isfinite(f)]                                        # the histogram bins the finite values
    assert f.size > 10 and np.isinf(float(f.max()) - float(f.min()))
    entry = client.get(f"/api/histogram?{query}&layer=108")
    assert entry.status_code == 200
    counts, edges = np.histogram(f / 2, bins=40)                  # halving is exact: the same bins
    assert entry.json()["preactivation"]["counts"] == counts.tolist()
    np.testing.assert_array_equal(entry.json()["preactivation"]["edges"], edges * 2)
    assert client.get(f"/api/view?{query}&layer=108").json()["histogram"]["preactivation"]["counts"] == counts.tolist()


# ----------------------------------------------------------------------------- concurrency

def _get(url: str):
    import json
    import urllib.request

    with urllib.request.urlopen(url, timeout=60) as response:
        return response.status, json.load(response)


def test_one_slow_request_does_not_block_the_others(monkeypatch):
    import threading

    from depthlab.lab.explore import compute

    entered, release, original = threading.Event(), threading.Event(), compute.view

    def held_view(state, layer=None):
        entered.set()
        release.wait(30)
        return original(state, layer)

    monkeypatch.setattr(compute, "view", held_view)
    explorer = dl.explore()
    base, answers = explorer.url.split("?")[0], {}
    slow = threading.Thread(target=lambda: answers.setdefault("view", _get(f"{base}api/view?{SMALL}")))
    try:
        slow.start()
        assert entered.wait(30)
        assert _get(f"{base}api/histogram?{SMALL}&layer=1")[0] == 200        # answered while the view is held
        assert _get(f"{base}api/phase?activation=tanh")[0] == 200
        assert "view" not in answers
    finally:
        release.set()
        slow.join(60)
        explorer.stop()
    assert answers["view"][0] == 200


def test_concurrent_views_give_each_links_own_numbers():
    """Twelve views of one shape at once share kept networks: each must still be its own seed's probe."""
    from concurrent.futures import ThreadPoolExecutor

    explorer = dl.explore()
    base = explorer.url.split("?")[0]
    query = "depth=4&width=7&activation=tanh&init=normal&sigma2=0.2&samples=30&seed={}"
    try:
        with ThreadPoolExecutor(12) as pool:
            answers = list(pool.map(lambda seed: _get(f"{base}api/view?{query.format(seed)}"), range(100, 112)))
    finally:
        explorer.stop()
    for seed, (status, data) in zip(range(100, 112), answers):
        rng = np.random.default_rng(seed)
        net = dl.MLP(1, [7] * 4, 1, activation="tanh", init=0.2, bias_init="zeros", rng=rng)
        report = dl.probe(net, rng.standard_normal((30, 1)))
        assert status == 200 and data["layers"]["preactivation_std"] == [s.preactivation_std for s in report.layers]
        assert data["layers"]["grad_preactivation_std"] == [s.grad_preactivation_std for s in report.layers]


def test_a_network_whose_numbers_overflow_is_probed_as_exploding(client, capsys):
    # norms and growth factors beyond float64 (residual_scale=1e300) once raised OverflowError
    query = "depth=4&width=6&samples=10&block=postact&norm=batch&residual_scale=1e300"
    response = client.get(f"/api/view?{query}")
    assert response.status_code == 200 and response.json()["verdict"] == "exploding"
    assert cli.main(["probe", "--depth", "4", "--width", "6", "--samples", "10", "--block", "postact", "--norm",
                     "batch", "--residual-scale", "1e300"]) == 0
    assert "exploding" in capsys.readouterr().out


def test_a_value_just_beyond_a_cap_is_shown_as_given(client):
    error = client.get(f"/api/view?{SMALL}&sigma2=10000.000000000002").json()["error"]
    assert error.endswith("got 10000.000000000002.")             # not "<= 10000 …, got 10000"
    assert client.get(f"/api/view?{SMALL}&sigma2=10000").status_code == 200


def test_explore_on_a_public_address_warns():
    with pytest.warns(UserWarning, match="serving on 0.0.0.0: anyone who can reach this machine"):
        explorer = dl.explore(host="0.0.0.0")
    try:
        assert explorer.running and explorer.url.startswith("http://127.0.0.1:")
    finally:
        explorer.stop()


@pytest.mark.parametrize("query, message", [
    ("depth=" + "9" * 5000, r"^depth must be between 1 and 200 \(the explorer's cap\), got 9{40}… \(5,000 characters\)\.$"),
    ("depth=" + "9" * 1000, r"^depth must be between 1 and 200 .*got 9{40}… \(1,000 characters\)\.$"),
    ("sigma2=" + "x" * 300, r"^sigma2 must be a number, got 'x{39}… \(302 characters\)\.$"),
    ("activation=" + "a" * 100, r"activation must be one of .*; got 'a{39}… \(102 characters\)\.$"),
])
def test_huge_values_are_refused_with_a_short_message(client, query, message):
    response = client.get(f"/api/view?{query}")
    assert response.status_code == 400 and re.search(message, response.json()["error"])


@pytest.mark.parametrize("path, message", [
    (f"/api/histogram?{SMALL}&layer=" + "7" * 5000, r"layer must be between 0 and the last layer, got 7{40}…"),
    ("/api/phase?w_max=" + "1" * 400, r"w_max must be > 0 .*got \"1{39}… \(402 characters\)"),
    ("/api/view?" + "k" * 300 + "=1", r"unknown key 'k{39}… \(302 characters\) in the link"),
    ("/api/train/" + "j" * 300, r"no training job 'j{39}… \(302 characters\)"),
])
def test_long_values_of_every_endpoint_are_cut_in_the_message(client, path, message):
    response = client.get(path)
    assert response.status_code in (400, 404) and re.search(message, response.json()["error"])
    assert len(response.json()["error"]) < 300


def test_a_forced_shutdown_with_a_request_in_flight_reports_no_traceback(monkeypatch):
    """A second Ctrl-C makes uvicorn exit at once, cancelling the requests in flight; uvicorn would log
    each as 'Exception in ASGI application' with a traceback."""
    import logging
    import threading
    import urllib.error

    from depthlab.lab.explore import compute, server as explore_server

    entered, release, original = threading.Event(), threading.Event(), compute.view

    def held_view(state, layer=None):
        entered.set()
        release.wait(30)
        return original(state, layer)

    class Records(logging.Handler):
        def __init__(self):
            super().__init__(logging.DEBUG)
            self.records = []

        def emit(self, record):
            self.records.append(record)

    monkeypatch.setattr(compute, "view", held_view)
    sock = explore_server.bind("127.0.0.1", 0)
    uvicorn_server = explore_server.make_server(sock)
    records, error_log = Records(), logging.getLogger("uvicorn.error")
    error_log.addHandler(records)
    thread = threading.Thread(target=uvicorn_server.run, kwargs={"sockets": [sock]}, daemon=True)

    def ask():
        try:
            _get(explore_server.url_of(sock, "127.0.0.1") + f"api/view?{SMALL}")
        except (urllib.error.URLError, ConnectionError, OSError):
            pass                                         # the shutdown drops the connection

    try:
        thread.start()
        asker = threading.Thread(target=ask, daemon=True)
        while not uvicorn_server.started:
            thread.join(0.01)
        asker.start()
        assert entered.wait(30)
        uvicorn_server.should_exit = uvicorn_server.force_exit = True       # what a second Ctrl-C does
        thread.join(30)
        assert not thread.is_alive()
    finally:
        release.set()
        error_log.removeHandler(records)
        sock.close()
    assert [r.getMessage() for r in records.records if r.levelno >= logging.ERROR] == []


def test_explore_on_the_port_of_a_running_explorer_reuses_it():
    first = dl.explore()
    try:
        port = int(first.url.split(":")[2].split("/")[0])
        again = dl.explore(port=port, depth=4)
        assert again.url == f"http://127.0.0.1:{port}/?depth=4" and again._server is first._server
    finally:
        first.stop()
