"""The benchmark's networks and the four ways of training them one step.

Each *contender* is built from the same initial weights (depthlab's ``MLP``, He-normal,
seed 0) and trained on the same batches, in the same dtype:

- ``depthlab``: the public API's training step, ``dl.TrainStep(net, loss, opt)(x, y)``
  (what ``fit`` runs): the explicit loop below fused, bit for bit the same result;
- ``loop``: the explicit loop of the public API — ``opt.zero_grad()``,
  ``net.forward(x, record=True)``, ``dl.losses.<loss>.grad``,
  ``net.backward(..., input_grad=False, intermediates=False)`` (training needs neither
  dL/dx nor the per-layer dL/df, dL/dh, and PyTorch keeps none of them: no grad for an
  input that does not require it, no ``retain_grad``), ``opt.step()``;
- ``hand``: the minimal hand-written NumPy loop (the same matrix products, in-place ReLU,
  no checks, no objects): the floor for any NumPy library;
- ``torch``: ``torch.nn.Sequential`` of ``Linear``/``ReLU`` with ``torch.optim``, on CPU,
  with as many intra-op threads as NumPy's BLAS uses;
- ``sklearn``: ``MLPClassifier.partial_fit`` (classification networks only).

A step is: clear gradients, forward, loss gradient, backward, optimizer update.
:func:`check_agreement` runs one SGD step of each from the same weights on the same batch
and compares the updated weights, so the timings compare the same computation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

import depthlab as dl

BETAS, EPS = (0.9, 0.999), 1e-8


@dataclass(frozen=True)
class Network:
    """A benchmark network: widths D_0 → … → D_out, ReLU hidden layers, linear output."""

    name: str
    title: str
    widths: tuple[int, ...]
    batch: int
    task: str                  # "classification" (softmax cross-entropy) or "regression" (mse)
    lr: dict                   # optimizer name -> learning rate
    vs_torch: float            # target: depthlab step time <= vs_torch × PyTorch's
    sklearn_target: dict | None = None   # dtype -> minimum speed-up over scikit-learn (steps/s)
    data: str = "gaussian"     # "gaussian" or "mnist1d"

    @property
    def label(self) -> str:
        hidden = self.widths[1:-1]
        if len(hidden) > 3 and len(set(hidden)) == 1:
            middle = f"{hidden[0]}×{len(hidden)}"
        else:
            middle = "→".join(map(str, hidden))
        return f"{self.widths[0]}→{middle}→{self.widths[-1]}, batch {self.batch}"

    @property
    def loss_name(self) -> str:
        return "cross_entropy" if self.task == "classification" else "mse"


NETWORKS = {
    "002": Network("002", "seed 002's three-layer network", (1000, 100, 100, 10), 128, "regression",
                   {"sgd": 1e-3, "adam": 1e-4}, 0.8),
    "mnist1d": Network("mnist1d", "MNIST-1D classifier", (40, 100, 100, 10), 100, "classification",
                       {"sgd": 1e-2, "adam": 1e-3}, 0.8, {"float32": 3.0, "float64": 2.0}, data="mnist1d"),
    "wide": Network("wide", "wide classifier", (784, 1024, 1024, 10), 256, "classification",
                    {"sgd": 1e-3, "adam": 1e-4}, 1.0),
    "deep": Network("deep", "seed notebook's deep ReLU network", (1,) + (80,) * 50 + (1,), 1000, "regression",
                    {"sgd": 1e-4, "adam": 1e-5}, 1.0),
}

# The same shapes, shrunk so that --smoke finishes in seconds.
SMOKE_NETWORKS = {
    "002": replace(NETWORKS["002"], widths=(50, 12, 12, 5), batch=16),
    "mnist1d": replace(NETWORKS["mnist1d"], widths=(40, 12, 12, 10), batch=16),
    "wide": replace(NETWORKS["wide"], widths=(30, 24, 24, 10), batch=16),
    "deep": replace(NETWORKS["deep"], widths=(1,) + (8,) * 5 + (1,), batch=32),
}

OPTIMIZERS = ("sgd", "adam")


# ----------------------------------------------------------------------------- data

def make_data(network: Network, dtype, n_batches: int = 8, rng=0):
    """``n_batches`` batches ``[(x, y), ...]`` in ``dtype``, C-contiguous, shared by every contender.

    Classification: integer labels (N,) in [0, D_out); regression: targets (N, D_out).
    MNIST-1D networks use the real MNIST-1D training inputs.
    """
    rng = np.random.default_rng(rng)
    d_in, d_out, n = network.widths[0], network.widths[-1], network.batch
    pool = None
    if network.data == "mnist1d":
        data = dl.data.mnist1d()
        pool = (data.x_train.astype(dtype), data.y_train.astype(np.int64))
    batches = []
    for _ in range(n_batches):
        if pool is not None and pool[0].shape[1] == d_in:
            rows = rng.choice(pool[0].shape[0], size=n, replace=False)
            x = np.ascontiguousarray(pool[0][rows])
            y = np.ascontiguousarray(pool[1][rows] % d_out)
        else:
            x = rng.standard_normal((n, d_in)).astype(dtype)
            if network.task == "classification":
                y = rng.integers(0, d_out, size=n).astype(np.int64)
            else:
                y = np.sin(3.0 * x[:, :1]).repeat(d_out, axis=1) if d_in == 1 else rng.standard_normal((n, d_out))
                y = np.ascontiguousarray(y, dtype=dtype)
        batches.append((x, y))
    return batches


def initial_weights(network: Network, dtype):
    """He-normal weights Ω_k (D_{k+1}, D_k) and zero biases from ``dl.MLP(..., rng=0)``."""
    net = dl.MLP(network.widths[0], list(network.widths[1:-1]), network.widths[-1], activation="relu",
                 init="he_normal", rng=0, dtype=dtype)
    return [layer.weight.data.copy() for layer in net.linears], [layer.bias.data.copy() for layer in net.linears]


# ----------------------------------------------------------------------------- depthlab

class Depthlab:
    """depthlab's fused training step, :class:`depthlab.TrainStep`."""

    name = "depthlab"

    def __init__(self, network: Network, dtype, optimizer: str, weights=None):
        weights, biases = weights or initial_weights(network, dtype)
        self.net = dl.Sequential.from_arrays(weights, biases, activation="relu", dtype=dtype)
        self.loss = dl.losses.get(network.loss_name)
        params, lr = self.net.parameters(), network.lr[optimizer]
        self.opt = dl.optim.SGD(params, lr=lr) if optimizer == "sgd" else dl.optim.Adam(params, lr=lr, betas=BETAS,
                                                                                         eps=EPS)
        self.train_step = dl.TrainStep(self.net, self.loss, self.opt)

    def step(self, x, y):
        self.train_step(x, y)

    def weights(self):
        return [layer.weight.data for layer in self.net.linears]


class Loop(Depthlab):
    """depthlab's explicit loop: forward, loss gradient, backward, optimizer step as four calls."""

    name = "loop"

    def step(self, x, y):
        self.opt.zero_grad()
        trace = self.net.forward(x, record=True)
        self.net.backward(self.loss.grad(trace.output, y), input_grad=False, intermediates=False)
        self.opt.step()


# ----------------------------------------------------------------------------- hand-written NumPy

def _cross_entropy_grad(out, labels):
    """(softmax(out) − onehot(labels)) / N, in place in ``out``'s buffer."""
    out -= out.max(axis=1, keepdims=True)
    np.exp(out, out=out)
    out /= out.sum(axis=1, keepdims=True)
    out[np.arange(out.shape[0]), labels] -= 1
    out *= out.dtype.type(1.0 / out.shape[0])
    return out


def _mse_grad(out, target):
    """2 (out − y) / (N·D), in place."""
    out -= target
    out *= out.dtype.type(2.0 / out.size)
    return out


class Hand:
    """The minimal NumPy loop: forward with in-place ReLU, backward, in-place updates."""

    name = "hand"

    def __init__(self, network: Network, dtype, optimizer: str, weights=None):
        weights, biases = weights or initial_weights(network, dtype)
        self.W = [w.copy() for w in weights]
        self.b = [b.copy() for b in biases]
        self.grad_loss = _cross_entropy_grad if network.task == "classification" else _mse_grad
        self.lr = network.lr[optimizer]
        self.adam = optimizer == "adam"
        self.t = 0
        if self.adam:
            params = self.W + self.b
            self.m = [np.zeros_like(p) for p in params]
            self.v = [np.zeros_like(p) for p in params]
            self.s = [np.empty_like(p) for p in params]

    def step(self, x, y):
        W, b = self.W, self.b
        K = len(W) - 1
        hs = [x]
        h = x
        for k in range(K + 1):
            f = h @ W[k].T
            f += b[k]
            if k < K:
                h = np.maximum(f, 0, out=f)
                hs.append(h)
            else:
                h = f
        g = self.grad_loss(h, y)
        gW, gb = [None] * (K + 1), [None] * (K + 1)
        for k in range(K, -1, -1):
            gW[k] = g.T @ hs[k]
            gb[k] = g.sum(axis=0)
            if k > 0:
                g = g @ W[k]
                g *= hs[k] > 0
        if self.adam:
            self._adam(gW + gb)
        else:
            lr = self.lr
            for p, grad in zip(W + b, gW + gb):
                grad *= lr
                p -= grad

    def _adam(self, grads):
        self.t += 1
        b1, b2 = BETAS
        step_size = self.lr / (1 - b1 ** self.t)
        root_correction = math.sqrt(1 - b2 ** self.t)
        for p, g, m, v, s in zip(self.W + self.b, grads, self.m, self.v, self.s):
            m *= b1
            np.multiply(g, 1 - b1, out=s)
            m += s
            v *= b2
            np.multiply(g, g, out=s)
            s *= 1 - b2
            v += s
            np.sqrt(v, out=s)
            s /= root_correction
            s += EPS
            np.divide(m, s, out=s)
            s *= step_size
            p -= s

    def weights(self):
        return self.W


# ----------------------------------------------------------------------------- PyTorch

class Torch:
    """``torch.nn.Sequential`` + ``torch.optim`` on CPU (intra-op threads set by the caller)."""

    name = "torch"

    def __init__(self, network: Network, dtype, optimizer: str, weights=None):
        import torch

        self.torch = torch
        weights, biases = weights or initial_weights(network, dtype)
        layers = []
        for k, (w, b) in enumerate(zip(weights, biases)):
            linear = torch.nn.Linear(w.shape[1], w.shape[0], dtype=torch.float32 if dtype == np.float32
                                     else torch.float64)
            with torch.no_grad():
                linear.weight.copy_(torch.from_numpy(w))
                linear.bias.copy_(torch.from_numpy(b))
            layers.append(linear)
            if k < len(weights) - 1:
                layers.append(torch.nn.ReLU())
        self.model = torch.nn.Sequential(*layers)
        self.loss = torch.nn.CrossEntropyLoss() if network.task == "classification" else torch.nn.MSELoss()
        lr = network.lr[optimizer]
        params = self.model.parameters()
        self.opt = torch.optim.SGD(params, lr=lr) if optimizer == "sgd" else torch.optim.Adam(params, lr=lr,
                                                                                              betas=BETAS, eps=EPS)
        self._tensors = {}

    def tensors(self, x, y):
        """Zero-copy tensors for a NumPy batch (cached, so the conversion is not timed)."""
        key = (id(x), id(y))
        found = self._tensors.get(key)
        if found is None:
            found = self._tensors[key] = (self.torch.from_numpy(x), self.torch.from_numpy(y))
        return found

    def step(self, x, y):
        x, y = self.tensors(x, y)
        self.opt.zero_grad(set_to_none=True)
        self.loss(self.model(x), y).backward()
        self.opt.step()

    def weights(self):
        return [m.weight.detach().numpy() for m in self.model if isinstance(m, self.torch.nn.Linear)]


# ----------------------------------------------------------------------------- scikit-learn

class Sklearn:
    """``MLPClassifier.partial_fit``: one optimizer step per call on a batch (no L2 penalty)."""

    name = "sklearn"

    def __init__(self, network: Network, dtype, optimizer: str, weights=None, first_batch=None):
        import warnings

        from sklearn.exceptions import ConvergenceWarning
        from sklearn.neural_network import MLPClassifier

        warnings.filterwarnings("ignore", category=ConvergenceWarning)
        weights, biases = weights or initial_weights(network, dtype)
        lr = network.lr[optimizer]
        options = dict(hidden_layer_sizes=network.widths[1:-1], activation="relu", alpha=0.0,
                       batch_size=network.batch, learning_rate_init=lr, shuffle=False, random_state=0)
        if optimizer == "sgd":
            options.update(solver="sgd", momentum=0.0, nesterovs_momentum=False, learning_rate="constant")
        else:
            options.update(solver="adam", beta_1=BETAS[0], beta_2=BETAS[1], epsilon=EPS)
        self.model = MLPClassifier(**options)
        self.classes = np.arange(network.widths[-1])
        x, y = first_batch
        # the first call builds the layers (and takes one step); then load the shared weights
        self.model.partial_fit(x, y, classes=self.classes)
        self.model.coefs_ = [np.ascontiguousarray(w.T, dtype=dtype) for w in weights]
        self.model.intercepts_ = [b.astype(dtype) for b in biases]
        # SGD without momentum keeps no state, so the step from the shared weights is exactly
        # depthlab's; Adam's moments hold that first step's gradient (irrelevant for timing).

    def step(self, x, y):
        self.model.partial_fit(x, y)

    def weights(self):
        return [w.T for w in self.model.coefs_]


def build(kind: str, network: Network, dtype, optimizer: str, batches):
    """A contender of ``kind`` ("depthlab", "loop", "hand", "torch", "sklearn") from the shared weights."""
    weights = initial_weights(network, dtype)
    if kind == "sklearn":
        return Sklearn(network, dtype, optimizer, weights, first_batch=batches[0])
    return {"depthlab": Depthlab, "loop": Loop, "hand": Hand, "torch": Torch}[kind](network, dtype, optimizer, weights)


def kinds_for(network: Network) -> list[str]:
    return ["depthlab", "loop", "hand", "torch"] + (["sklearn"] if network.task == "classification" else [])


def check_agreement(network: Network, dtype, batches) -> dict[str, float]:
    """Max relative difference of every contender's weights from depthlab's after one SGD step.

    All start from the same weights and take one step on the same batch; the relative
    difference is ‖ΔW_other − ΔW_depthlab‖ / ‖ΔW_depthlab‖ over all layers (ΔW the update).
    """
    x, y = batches[0]
    start = [w.copy() for w in initial_weights(network, dtype)[0]]
    contenders = {kind: build(kind, network, dtype, "sgd", batches) for kind in kinds_for(network)}
    for contender in contenders.values():
        contender.step(x, y)
    reference = [w.astype(np.float64) - s for w, s in zip(contenders["depthlab"].weights(), start)]
    scale = math.sqrt(sum(float(np.sum(d * d)) for d in reference)) or 1.0
    differences = {}
    for kind, contender in contenders.items():
        if kind == "depthlab":
            continue
        delta = [w.astype(np.float64) - s for w, s in zip(contender.weights(), start)]
        error = math.sqrt(sum(float(np.sum((a - b) ** 2)) for a, b in zip(delta, reference)))
        differences[kind] = error / scale
    return differences
