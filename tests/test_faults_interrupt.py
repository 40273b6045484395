"""Class 2 of the faults issue: Ctrl-C stops cleanly.

In the API, ``fit`` returns the history so far (as Keras does) marked ``history.interrupted``;
the lab's experiments raise ``KeyboardInterrupt`` again instead of reading a short history.
On the command line, Ctrl-C (a real SIGINT to the process group, as a terminal sends it) ends
every command with exit code 130, one line on stderr, no traceback, and every file written
before it whole.
"""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import depthlab as dl
from depthlab.lab.experiments import base

SRC = str(Path(dl.__file__).resolve().parents[1])


# ----------------------------------------------------------------------------- fit in-process

def data(n=40):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 2))
    return x, np.sin(x[:, :1])


class At(dl.Callback):
    """Do ``action`` when the ``step``-th optimizer step (counted from 1) has finished, or at a hook."""

    def __init__(self, action, step=None, hook=None, epoch=None):
        self.action, self.step, self.hook, self.epoch = action, step, hook, epoch
        self.ended = False
        self.weights = None

    def on_batch_end(self, batch, logs=None):
        if self.step is not None and self.state.step == self.step:
            self.weights = self.state.net.get_weights()
            self.action()

    def on_epoch_end(self, epoch, logs=None):
        if self.hook == "epoch_end" and epoch == self.epoch:
            self.action()

    def on_train_begin(self, logs=None):
        if self.hook == "train_begin":
            self.action()

    def on_train_end(self, logs=None):
        self.ended = True


def raise_interrupt():
    raise KeyboardInterrupt


def sigint():
    signal.raise_signal(signal.SIGINT)


def two_sigints():
    signal.raise_signal(signal.SIGINT)
    signal.raise_signal(signal.SIGINT)


def nothing():
    pass


# batch_size 10 and 40 samples: 4 steps per epoch
FIT_CASES = [  # id, callback, epochs, recorded epochs, steps done, interrupted, epoch named in the message
    ("KeyboardInterrupt at step 6 (mid epoch 1)", lambda: At(raise_interrupt, step=6), 3, [0], 6, True, 1),
    ("SIGINT at step 6: the step finishes, epoch 1 dropped", lambda: At(sigint, step=6), 3, [0], 6, True, 1),
    ("SIGINT at the last step of epoch 1: recorded", lambda: At(sigint, step=8), 3, [0, 1], 8, True, 1),
    ("SIGINT in the very last step", lambda: At(sigint, step=12), 3, [0, 1, 2], 12, True, 2),
    ("two SIGINTs: at once", lambda: At(two_sigints, step=2), 3, [], 2, True, 0),
    ("KeyboardInterrupt in on_epoch_end", lambda: At(raise_interrupt, hook="epoch_end", epoch=1), 3, [0], 8, True, 1),
    ("KeyboardInterrupt in on_train_begin", lambda: At(raise_interrupt, hook="train_begin"), 3, [], 0, True, 0),
    ("no interrupt", lambda: At(nothing, step=3), 3, [0, 1, 2], 12, False, None),
]


@pytest.mark.parametrize("make, epochs, recorded, steps, interrupted, where", [c[1:] for c in FIT_CASES],
                         ids=[c[0] for c in FIT_CASES])
def test_fit_returns_the_history_so_far_marked_interrupted(make, epochs, recorded, steps, interrupted, where, capsys):
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler   # what a command line has
    x, y = data()
    net = dl.MLP(2, [5], 1, rng=0)
    callback = make()
    history = dl.fit(net, x, y, optimizer="sgd", epochs=epochs, batch_size=10, shuffle=False, verbose=0,
                     callbacks=[callback])
    assert history.interrupted is interrupted
    assert history.epoch == recorded
    assert all(len(values) == len(recorded) for values in history.history.values())
    assert callback.ended                                   # on_train_end runs after Ctrl-C too
    assert capsys.readouterr().err == ""                    # verbose=0: nothing printed
    # the weights are those after the last completed step: replay exactly that many steps
    reference = dl.MLP(2, [5], 1, rng=0)
    if steps:
        stop = At(nothing, step=steps)
        dl.fit(reference, x, y, optimizer="sgd", epochs=-(-steps // 4), batch_size=10, shuffle=False, verbose=0,
               callbacks=[stop])
        expected = stop.weights
    else:
        expected = reference.get_weights()
    for a, b in zip(net.get_weights(), expected):
        np.testing.assert_array_equal(a, b)
    if interrupted:
        assert f"in epoch {where} after {steps} steps" in history.message
        with pytest.raises(KeyboardInterrupt):
            base.finished(history)
    else:
        assert base.finished(history) is history


def test_fit_says_so_on_stderr_when_verbose(capsys):
    x, y = data()
    history = dl.fit(dl.MLP(2, [5], 1, rng=0), x, y, epochs=2, batch_size=10, verbose=2,
                     callbacks=[At(sigint, step=3)])
    err = capsys.readouterr().err
    assert history.interrupted and history.message in err
    assert "returning the history of the 0 completed epoch(s)" in err


def test_the_sigint_handler_is_restored_after_fit():
    x, y = data()
    dl.fit(dl.MLP(2, [5], 1, rng=0), x, y, epochs=1, verbose=0, callbacks=[At(sigint, step=1)])
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_an_experiment_stops_instead_of_reading_a_short_history(monkeypatch, tmp_path):
    """fit-1d once read history['loss'] of an interrupted fit: KeyError 'loss'."""
    from depthlab.lab.experiments import fit_1d

    real = fit_1d.fit

    def interrupted_fit(*args, **kwds):
        return real(*args, **{**kwds, "callbacks": [At(raise_interrupt, step=2)]})
    monkeypatch.setattr(fit_1d, "fit", interrupted_fit)
    with pytest.raises(KeyboardInterrupt):
        base.run_experiment("fit-1d", quick=True, out_dir=tmp_path / "fit-1d", progress=False)
    assert list((tmp_path / "fit-1d").iterdir()) == []          # nothing written for the interrupted run


# ----------------------------------------------------------------------------- the command line

HARNESS = textwrap.dedent("""
    # Runs the real command line; when `hook` (module:Class.method) is first called, it writes the
    # marker file, so the test knows the command has reached that point before it sends SIGINT.
    import importlib, os, sys, time
    marker, hook, hold, argv = sys.argv[1], sys.argv[2], sys.argv[3] == "hold", sys.argv[4:]
    if hook != "-":
        module_name, _, attribute = hook.partition(":")
        owner = importlib.import_module(module_name)
        *path, name = attribute.split(".")
        for part in path:
            owner = getattr(owner, part)
        original = getattr(owner, name)
        def announced(*args, **kwds):
            if not os.path.exists(marker):
                open(marker, "w").close()
                if hold:                      # stay inside the command until SIGINT arrives
                    time.sleep(60)
            return original(*args, **kwds)
        setattr(owner, name, announced)
    from depthlab.lab.cli import main
    sys.exit(main(argv))
""")


def previous_report(folder: Path) -> dict:
    """Files of an earlier run in ``folder``: they must survive the interrupted one untouched."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {"report.html": "<html>earlier run</html>\n", "metrics.json": '{"earlier": 1}\n'}
    for name, text in files.items():
        (folder / name).write_text(text)
    return files


def interrupt(tmp_path, argv, hook, hold, ready=None, timeout=120):
    """Start the command, wait until it is ready, send SIGINT to its process group (as Ctrl-C does)."""
    marker = tmp_path / "started"
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    process = subprocess.Popen([sys.executable, "-c", HARNESS, str(marker), hook, "hold" if hold else "go", *argv],
                               cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    deadline = time.monotonic() + timeout
    is_ready = ready or marker.exists
    while not is_ready():
        if process.poll() is not None:
            out, err = process.communicate()
            pytest.fail(f"the command ended before it could be interrupted (exit {process.returncode}):\n{err}")
        if time.monotonic() > deadline:
            os.killpg(process.pid, signal.SIGKILL)
            pytest.fail("the command never reached the point to interrupt")
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGINT)
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def results_written(path):
    return lambda: path.exists() and path.read_text().count("\n") >= 1


def check_run(tmp_path):
    """run fit-1d: the earlier report in --out is untouched."""
    assert (tmp_path / "out" / "report.html").read_text() == "<html>earlier run</html>\n"
    assert (tmp_path / "out" / "metrics.json").read_text() == '{"earlier": 1}\n'
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["metrics.json", "report.html"]


def check_tour(tmp_path):
    """report: the finished experiment's files are whole; the earlier index is untouched."""
    assert (tmp_path / "rep" / "index.html").read_text() == "<html>earlier run</html>\n"
    done = tmp_path / "rep" / "gradcheck"
    assert json.loads((done / "metrics.json").read_text())["all_passed"] is True
    assert (done / "report.html").read_text().rstrip().endswith("</html>")
    pngs = list(done.glob("*.png"))
    assert pngs and all(p.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") for p in pngs)
    assert not [p for p in (tmp_path / "rep").rglob(".depthlab-*")]


def check_sweep(tmp_path):
    """sweep: every line in the results file is a whole record."""
    lines = (tmp_path / "r.jsonl").read_text().splitlines()
    assert lines and all(json.loads(line)["status"] == "ok" for line in lines)


def nothing_to_check(tmp_path):
    pass


FIT_1D = ["run", "fit-1d", "--set", "epochs=500", "--set", "train_samples=4000", "--set", "seed_samples=0",
          "--out", "out", "--no-progress"]
CLI_CASES = [  # id, argv, hook that marks "started", hold there?, prepare, ready, check
    ("run fit-1d while training", FIT_1D, "depthlab.training.fit:_Run.run", False,
     lambda p: previous_report(p / "out"), None, check_run),
    ("report: in the second experiment's training",
     ["report", "--quick", "--only", "gradcheck", "--only", "fit-1d", "--out", "rep", "--no-progress"],
     "depthlab.training.fit:_Run.run", False, lambda p: previous_report(p / "rep") and (p / "rep" / "index.html").write_text(
         (p / "rep" / "report.html").read_text()), None, check_tour),
    ("probe while probing", ["probe", "--depth", "20", "--width", "10"], "depthlab.signal.probe:probe", True,
     None, None, nothing_to_check),
    ("theory while integrating", ["theory", "--activation", "tanh"], "depthlab.signal.theory:critical_weight_variance",
     True, None, None, nothing_to_check),
    ("list while listing", ["list", "--keys"], "depthlab.lab.experiments.base:config_keys", True, None, None,
     nothing_to_check),
    ("sweep after its first point", ["sweep", "gradcheck", "--quick", "--grid", "seed=" + ",".join(map(str, range(40))),
                                     "--workers", "1", "--out", "r.jsonl", "--no-progress"], "-", False, None,
     lambda p: results_written(p / "r.jsonl"), check_sweep),
]


@pytest.mark.parametrize("argv, hook, hold, prepare, ready, check", [c[1:] for c in CLI_CASES],
                         ids=[c[0] for c in CLI_CASES])
def test_ctrl_c_stops_the_command_cleanly(tmp_path, argv, hook, hold, prepare, ready, check):
    if prepare is not None:
        prepare(tmp_path)
    code, out, err = interrupt(tmp_path, argv, hook, hold, ready(tmp_path) if ready else None)
    assert code == 130, err
    assert "Traceback" not in err and "Traceback" not in out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "interrupted" in lines[0], err
    assert lines[0].startswith(f"depthlab {argv[0]}:")
    check(tmp_path)


def test_ctrl_c_while_a_report_is_written_waits_for_its_last_file(tmp_path, monkeypatch):
    """The files of one report are replaced together: a SIGINT during the writes is held until the end."""
    from depthlab import _files

    real, names = _files.write_text, []

    def write_then_sigint(path, text, **kwds):
        names.append(Path(path).name)
        if len(names) == 1:
            signal.raise_signal(signal.SIGINT)
        return real(path, text, **kwds)
    monkeypatch.setattr(_files, "write_text", write_then_sigint)
    result = base.Result("demo", "A demo", config={"seed": 0}, metrics={"x": 1.5}, summary="x = 1.5")
    with pytest.raises(KeyboardInterrupt):
        base.write_outputs(result, None, tmp_path)
    assert names == ["metrics.json", "report.html"]
    assert (tmp_path / "report.html").read_text().rstrip().endswith("</html>")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
