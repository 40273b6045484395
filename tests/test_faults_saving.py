"""Class 3 of the faults issue: a save never destroys the last good file, and a file that lies is refused.

Tables: SAVE_FAULTS (what happens to the previous checkpoint when a save fails), PATHS (save/load
symmetry, folders), LYING_FILES (headers and arrays that disagree: each refused with the file's name).
Files written by depthlab 0.1.0 (tests/data, made by that version's code) must keep loading.
"""
import json
import os
import pickle
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import depthlab as dl
from depthlab import _files
from depthlab.nn import serialization

DATA = Path(__file__).parent / "data"


def network(seed=0):
    return dl.MLP(2, [3], 1, activation="tanh", rng=seed)


def leftovers(folder):
    return sorted(p.name for p in Path(folder).iterdir() if p.name.startswith(_files.TEMPORARY_PREFIX))


# ----------------------------------------------------------------------------- a failing save

def fail_in_savez(monkeypatch):
    real = np.savez

    def half_then_fail(file, *args, **kwds):
        real(file, *args, **kwds)
        file.seek(len(file.getvalue()) // 2 if hasattr(file, "getvalue") else 100)
        file.truncate()
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(np, "savez", half_then_fail)
    return OSError, "No space left"


def interrupt_in_savez(monkeypatch):
    def interrupted(file, *args, **kwds):
        file.write(b"PK\x03\x04 partial")
        raise KeyboardInterrupt
    monkeypatch.setattr(np, "savez", interrupted)
    return KeyboardInterrupt, None


def fail_on_rename(monkeypatch):
    def refuse(src, dst):
        raise PermissionError(13, "Permission denied", str(dst))
    monkeypatch.setattr(os, "replace", refuse)
    return PermissionError, "Permission denied"


def nan_weight(monkeypatch):
    return ValueError, r"weights\[1\] \(Linear layer 1\) holds 1 NaN/Inf value.*Nothing was written"


def inf_bias(monkeypatch):
    return ValueError, r"biases\[0\] \(Linear layer 0\) holds 2 NaN/Inf value.*first at index \(1,\)"


SAVE_FAULTS = [  # id, sabotage(monkeypatch) -> (exception, message), how to spoil the network
    ("disk full half-way", fail_in_savez, None),
    ("Ctrl-C during the write", interrupt_in_savez, None),
    ("rename refused", fail_on_rename, None),
    ("NaN weight (after a divergence)", nan_weight, lambda net: net.linears[1].weight.data.__setitem__((0, 2), np.nan)),
    ("Inf bias", inf_bias, lambda net: net.linears[0].bias.data.__setitem__(slice(1, 3), np.inf)),
]


@pytest.mark.parametrize("sabotage, spoil", [c[1:] for c in SAVE_FAULTS], ids=[c[0] for c in SAVE_FAULTS])
def test_a_failing_save_keeps_the_previous_file(tmp_path, monkeypatch, sabotage, spoil):
    path = tmp_path / "ckpt.npz"
    good = network(0)
    good.save(path)
    before = path.read_bytes()
    other = network(1)
    if spoil is not None:
        spoil(other)
    error, pattern = sabotage(monkeypatch)
    with pytest.raises(error, match=pattern):
        other.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert leftovers(tmp_path) == []
    np.testing.assert_array_equal(dl.load(path).get_weights()[0], good.get_weights()[0])


def test_a_save_beyond_the_file_size_limit_keeps_the_previous_file(tmp_path):
    """A real failing write: RLIMIT_FSIZE makes the kernel refuse bytes past the limit (EFBIG)."""
    script = textwrap.dedent(f"""
        import resource, signal, sys
        import depthlab as dl
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)           # EFBIG instead of being killed
        small = dl.MLP(2, [3], 1, rng=0)
        small.save({str(tmp_path / 'ckpt')!r})
        resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))
        big = dl.MLP(2, [200, 200], 1, rng=1)                   # ~330 kB: cannot be written
        try:
            big.save({str(tmp_path / 'ckpt')!r})
        except OSError as error:
            print("refused:", error.errno)
            sys.exit(0)
        sys.exit("the oversized save succeeded")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "refused: 27" in done.stdout                      # errno.EFBIG
    assert leftovers(tmp_path) == []
    back = dl.load(tmp_path / "ckpt.npz")
    np.testing.assert_array_equal(back.get_weights()[0], dl.MLP(2, [3], 1, rng=0).get_weights()[0])


# ----------------------------------------------------------------------------- paths

def save_without_suffix(tmp_path):
    path = network().save(tmp_path / "ckpt")
    assert path == tmp_path / "ckpt.npz" and sorted(os.listdir(tmp_path)) == ["ckpt.npz"]
    return dl.load(tmp_path / "ckpt"), None


def load_prefers_the_exact_name(tmp_path):
    network(0).save(tmp_path / "a.npz")
    os.replace(tmp_path / "a.npz", tmp_path / "ckpt")     # a file named exactly ckpt
    network(1).save(tmp_path / "ckpt")                      # and ckpt.npz beside it
    return dl.load(tmp_path / "ckpt"), network(0)


def save_into_a_folder(tmp_path):
    (tmp_path / "runs").mkdir()
    network().save(tmp_path / "runs")


def save_onto_a_folder_with_the_suffix(tmp_path):
    (tmp_path / "ckpt.npz").mkdir()
    network().save(str(tmp_path / "ckpt"))


def load_a_folder(tmp_path):
    (tmp_path / "runs").mkdir()
    dl.load(tmp_path / "runs")


PATHS = [  # id, action(tmp_path), expected exception or None, message pattern
    ("save('ckpt') then load('ckpt')", save_without_suffix, None, ""),
    ("an exact name wins over name.npz", load_prefers_the_exact_name, None, ""),
    ("save to a folder", save_into_a_folder, IsADirectoryError, r"'.*runs' is a folder.*runs/net\.npz"),
    ("save where name.npz is a folder", save_onto_a_folder_with_the_suffix, IsADirectoryError, r"ckpt\.npz' is a folder"),
    ("load a folder", load_a_folder, IsADirectoryError, r"load\(\): '.*runs' is a folder"),
    ("save into a missing folder", lambda p: network().save(p / "nope" / "x"), FileNotFoundError,
     r"folder '.*nope' does not exist.*makedirs"),
    ("load a missing file names both tries", lambda p: dl.load(p / "ckpt"), FileNotFoundError,
     r"no network file at '.*ckpt' or '.*ckpt\.npz'"),
    ("save to a number", lambda p: network().save(3), TypeError, r"file path .* got int 3"),
    ("save to an empty name", lambda p: network().save(""), ValueError, r"needs a file name, got ''"),
    ("load bytes path", lambda p: dl.load(b"x.npz"), TypeError, r"got bytes"),
]


@pytest.mark.parametrize("action, error, pattern", [c[1:] for c in PATHS], ids=[c[0] for c in PATHS])
def test_paths(tmp_path, action, error, pattern):
    if error is None:
        loaded, reference = action(tmp_path)
        reference = reference or network()
        for a, b in zip(loaded.get_weights(), reference.get_weights()):
            np.testing.assert_array_equal(a, b)
    else:
        with pytest.raises(error, match=pattern):
            action(tmp_path)
    assert leftovers(tmp_path) == []


def test_a_symbolic_link_stays_a_link_and_permissions_are_kept(tmp_path):
    target = network(0).save(tmp_path / "real.npz")
    os.chmod(target, 0o640)
    (tmp_path / "link.npz").symlink_to(target)
    network(1).save(tmp_path / "link.npz")
    assert (tmp_path / "link.npz").is_symlink()
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o640
    np.testing.assert_array_equal(dl.load(target).get_weights()[0], network(1).get_weights()[0])


def test_a_new_file_gets_the_umask_permissions(tmp_path):
    old = os.umask(0o027)
    try:
        path = network().save(tmp_path / "n")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640


# ----------------------------------------------------------------------------- files that lie

def archive(tmp_path, header=None, arrays=None, raw_header=None, **changes):
    """An .npz built like a saved network, with ``changes`` to the header or arrays."""
    path = tmp_path / "net.npz"
    network().save(path)
    with np.load(path) as stored:
        content = dict(stored)
    described = json.loads(content["__depthlab__"].tobytes())
    described.update(header or {})
    content["__depthlab__"] = (raw_header if raw_header is not None
                               else np.frombuffer(json.dumps(described).encode(), dtype=np.uint8))
    for name, value in (arrays or {}).items():
        if value is None:
            del content[name]
        else:
            content[name] = value
    np.savez(path, **content)
    return path


def layers(*specs):
    return {"layers": list(specs)}


LIN = lambda i, o: {"type": "linear", "in_features": i, "out_features": o}   # noqa: E731
ACT = lambda a: {"type": "activation", "activation": a}                     # noqa: E731


def write(tmp_path, data: bytes):
    path = tmp_path / "net.npz"
    path.write_bytes(data)
    return path


def saved_bytes(tmp_path):
    return network().save(tmp_path / "whole").read_bytes()


LYING_FILES = [  # id, make(tmp_path) -> path, message pattern (after "is not a valid depthlab network file: ")
    ("float16 dtype", lambda p: archive(p, {"dtype": "float16"}, {k: v.astype(np.float16) for k, v in
                                                                    [("weights_0", np.ones((3, 2))),
                                                                     ("biases_0", np.ones(3)),
                                                                     ("weights_1", np.ones((1, 3))),
                                                                     ("biases_1", np.ones(1))]}),
     r"declares dtype 'float16'"),
    ("int dtype", lambda p: archive(p, {"dtype": "int64"}), r"declares dtype 'int64'"),
    ("dtype missing", lambda p: archive(p, {"dtype": None}), r"declares dtype None"),
    ("float32 header, float64 arrays", lambda p: archive(p, {"dtype": "float32"}), r"stores float64/float64 arrays in a float32"),
    ("unknown activation", lambda p: archive(p, layers(LIN(2, 3), ACT("swishy"), LIN(3, 1))),
     r"layer 1 has an activation depthlab cannot build \('swishy'"),
    ("activation with a stray parameter", lambda p: archive(p, layers(LIN(2, 3), ACT({"name": "relu", "slope": 2}),
                                                                      LIN(3, 1))), r"unexpected hyperparameters"),
    ("activation a number", lambda p: archive(p, layers(LIN(2, 3), ACT(7), LIN(3, 1))), r"layer 1 has an activation"),
    ("no layers", lambda p: archive(p, layers(), {"weights_0": None, "biases_0": None, "weights_1": None,
                                                  "biases_1": None}), r"lists no layers \(got \[\]\)"),
    ("layers not a list", lambda p: archive(p, {"layers": "linear"}), r"lists no layers"),
    ("layer not a dict", lambda p: archive(p, layers("linear")), r"layer 0 has unknown type 'linear'"),
    ("unknown layer type", lambda p: archive(p, layers({"type": "conv2d"}, LIN(2, 3))), r"layer 0 has unknown type 'conv2d'"),
    ("negative width", lambda p: archive(p, layers(LIN(2, -3), LIN(3, 1))), r"out_features=-3.*positive ints"),
    ("boolean width", lambda p: archive(p, layers(LIN(True, 3), LIN(3, 1))), r"in_features=True"),
    ("text width", lambda p: archive(p, layers(LIN("2", 3), LIN(3, 1))), r"in_features='2'"),
    ("shapes disagree", lambda p: archive(p, arrays={"weights_0": np.ones((2, 2))}),
     r"declares weight shape \(3, 2\) but stores \(2, 2\)"),
    ("layers do not chain", lambda p: archive(p, layers(LIN(2, 3), LIN(4, 1)), {"weights_1": np.ones((1, 4))}),
     r"do not form a network.*do not chain"),
    ("starts with an activation", lambda p: archive(p, layers(ACT("relu"), LIN(2, 3), LIN(3, 1))),
     r"do not form a network.*starts with a Linear"),
    ("an array missing", lambda p: archive(p, arrays={"biases_1": None}), r"damaged \(KeyError"),
    ("an undeclared array", lambda p: archive(p, arrays={"weights_2": np.ones((1, 1))}), r"does not declare: weights_2"),
    ("NaN stored", lambda p: archive(p, arrays={"weights_1": np.array([[0.0, np.nan, 1.0]])}), r"weight holds NaN"),
    ("a pickle inside", lambda p: archive(p, arrays={"weights_0": np.array([[{"x": 1}] * 2] * 3, dtype=object)}),
     r"pickled data|allow_pickle"),
    ("a pickle file", lambda p: write(p, pickle.dumps({"weights_0": [1.0]})), r"cannot be read as \.npz"),
    ("header not text", lambda p: archive(p, raw_header=np.ones(4)), r"header is a float64 array"),
    ("header not JSON", lambda p: archive(p, raw_header=np.frombuffer(b"{not json", np.uint8)), r"header is unreadable"),
    ("header too deep", lambda p: archive(p, raw_header=np.frombuffer(b"[" * 100000, np.uint8)), r"header is unreadable"),
    ("header a list", lambda p: archive(p, raw_header=np.frombuffer(b"[1, 2]", np.uint8)), r"does not describe"),
    ("another format", lambda p: archive(p, {"format": "keras"}), r"does not describe a depthlab network"),
    ("a future version", lambda p: archive(p, {"version": 3}), r"version 3 is not supported"),
    ("version true", lambda p: archive(p, {"version": True}), r"version True is not supported"),
    ("no header", lambda p: write(p, (np.savez(p / "f.npz", a=np.ones(2)), (p / "f.npz").read_bytes())[1]),
     r"no '__depthlab__' header"),
    ("a single .npy", lambda p: (np.save(p / "one.npy", np.ones(3)), write(p, (p / "one.npy").read_bytes()))[1],
     r"single array"),
    ("not a zip", lambda p: write(p, b"hello, world"), r"cannot be read as \.npz"),
    ("empty file", lambda p: write(p, b""), r"cannot be read as \.npz"),
    ("truncated to half", lambda p: write(p, saved_bytes(p)[: len(saved_bytes(p)) // 2]), r"cannot be read|damaged"),
    ("last 10 bytes cut", lambda p: write(p, saved_bytes(p)[:-10]), r"cannot be read|damaged"),
    ("a byte flipped in the data", lambda p: write(p, (lambda b: b[:200] + bytes([b[200] ^ 0xFF]) + b[201:])(saved_bytes(p))),
     r"damaged|cannot be read|unreadable|does not describe|shape|dtype|NaN"),
]


@pytest.mark.parametrize("make, pattern", [c[1:] for c in LYING_FILES], ids=[c[0] for c in LYING_FILES])
def test_a_file_that_lies_is_refused_with_its_name(tmp_path, make, pattern):
    path = make(tmp_path)
    with pytest.raises(ValueError, match=r"'.*net\.npz' is not a valid depthlab network file: ") as caught:
        dl.load(path)
    assert caught.match(pattern), str(caught.value)


# ----------------------------------------------------------------------------- compatibility

@pytest.mark.parametrize("name, dtype", [("network-0.1.0-float64.npz", np.float64),
                                         ("network-0.1.0-float32-leaky.npz", np.float32)])
def test_files_saved_by_0_1_0_still_load(name, dtype):
    """The fixtures were written by depthlab 0.1.0's save; their outputs were recorded at the same time."""
    net = dl.load(DATA / name)
    with np.load(DATA / "network-0.1.0-outputs.npz") as recorded:
        x = recorded["x"].astype(dtype)
        expected = recorded["float64" if dtype is np.float64 else "float32"]
    assert net.dtype == dtype
    np.testing.assert_array_equal(net(x), expected)


def test_round_trip_is_exact_and_the_format_is_unchanged(tmp_path):
    net = dl.MLP(3, [5, 4], 2, activation="leaky_relu", rng=3, dtype="float32")
    path = net.save(tmp_path / "n.npz")
    with np.load(path) as stored:
        header = json.loads(stored["__depthlab__"].tobytes())
    assert header["version"] == serialization.VERSION == 1
    back = dl.load(path)
    for a, b in zip(back.get_weights(), net.get_weights()):
        assert a.dtype == b.dtype and np.array_equal(a, b)


# ----------------------------------------------------------------------------- every file depthlab writes

def test_a_failing_report_keeps_the_previous_report(tmp_path, monkeypatch):
    """metrics.json, report.html and the PNGs go through the same atomic writer."""
    from depthlab.lab.experiments import base

    out = tmp_path / "demo"
    out.mkdir()
    result = base.Result("demo", "A demo", config={"seed": 0}, metrics={"x": 1.5}, summary="x = 1.5")
    base.write_outputs(result, None, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def disk_full(*args, **kwds):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(_files.os, "fsync", disk_full)
    result.metrics = {"x": 2.5}
    with pytest.raises(OSError, match="No space left"):
        base.write_outputs(result, None, out)
    after = {p.name: p.read_bytes() for p in out.iterdir()}
    assert after["report.html"] == before["report.html"]
    assert leftovers(out) == []
    assert after == before


@pytest.mark.parametrize("mode, content", [("w", "naïve\n"), ("wb", b"\x00\x01")])
def test_the_atomic_writer_replaces_only_on_success(tmp_path, mode, content):
    path = tmp_path / "f"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with _files.atomic_writer(path, mode) as file:
            file.write(content)
            raise RuntimeError("half-way")
    assert path.read_bytes() == b"old" and leftovers(tmp_path) == []
    with _files.atomic_writer(path, mode) as file:
        file.write(content)
    assert path.read_bytes() == (content.encode() if isinstance(content, str) else content)


def fifo(tmp_path):
    path = tmp_path / "pipe.npz"
    os.mkfifo(path)
    return path


MORE_PATHS = [  # id, action(tmp_path), exception, pattern — special files and long names
    ("load a FIFO (would block)", lambda p: dl.load(fifo(p)), ValueError, r"pipe\.npz' is not a regular file"),
    ("save onto a FIFO", lambda p: network().save(fifo(p)), ValueError, r"is not a regular file"),
    ("save inside a file", lambda p: (p / "plain").write_text("x") and network().save(p / "plain" / "net"),
     NotADirectoryError, r"'.*plain' is a file, so .* cannot be made inside it"),
]


@pytest.mark.parametrize("action, error, pattern", [c[1:] for c in MORE_PATHS], ids=[c[0] for c in MORE_PATHS])
def test_special_paths(tmp_path, action, error, pattern):
    with pytest.raises(error, match=pattern):
        action(tmp_path)
    assert leftovers(tmp_path) == []


def test_a_name_as_long_as_the_system_allows_still_saves(tmp_path):
    """The temporary file's name must fit wherever the target's does (255 bytes on Linux)."""
    name = "n" * (255 - len(".npz")) + ".npz"
    path = network().save(tmp_path / name)
    assert path.name == name and dl.load(path).get_weights()[0].shape == (3, 2)


def test_a_full_disk_during_depthlab_run_is_one_line(tmp_path, monkeypatch, capsys):
    """The experiment ran; writing its report failed: exit 2, one line, the earlier report kept."""
    from depthlab.lab.cli import main

    out = tmp_path / "gc"
    out.mkdir()
    (out / "report.html").write_text("<html>earlier</html>")

    def disk_full(descriptor):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(_files.os, "fsync", disk_full)
    assert main(["run", "gradcheck", "--quick", "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "cannot write the report into" in err and "No space left on device" in err
    assert (out / "report.html").read_text() == "<html>earlier</html>" and leftovers(out) == []


def test_concurrent_saves_to_one_file_never_mix(tmp_path):
    """Four threads saving different networks to one path: the file is always one of them, whole."""
    import threading

    nets = [network(seed) for seed in range(4)]
    path = tmp_path / "shared.npz"
    nets[0].save(path)
    errors = []

    def save_many(net):
        try:
            for _ in range(15):
                net.save(path)
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)
    threads = [threading.Thread(target=save_many, args=(net,)) for net in nets]
    for thread in threads:
        thread.start()
    for _ in range(30):                       # read while they write
        loaded = dl.load(path).get_weights()[0]
        assert any(np.array_equal(loaded, net.get_weights()[0]) for net in nets)
    for thread in threads:
        thread.join()
    assert errors == [] and leftovers(tmp_path) == []
