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


def _adam_update(params, grads, m_all, v_all, scratch, t: int, lr: float) -> None:
    """One Adam update (step ``t``) in place, with the bias corrections folded into the step size."""
    b1, b2 = BETAS
    step_size = lr / (1 - b1 ** t)
    root_correction = math.sqrt(1 - b2 ** t)
    for p, g, m, v, s in zip(params, grads, m_all, v_all, scratch):
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
        _adam_update(self.W + self.b, grads, self.m, self.v, self.s, self.t, self.lr)

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


# ============================================================================= the residual MLP (issue 15)

@dataclass(frozen=True)
class ResNetwork:
    """A benchmark ``dl.ResMLP``: D_0 → width, ``depth`` pre-activation blocks, → D_out.

    Each block is h + F(h), F = [norm] → ReLU → Linear → [norm] → ReLU → Linear; the head is
    [norm] → ReLU → Linear. ``norm`` is None or "batch" (batch norm in train mode).
    """

    name: str
    in_features: int
    width: int
    depth: int
    out_features: int
    batch: int
    norm: str | None
    lr: dict
    vs_hand: float = 1.15
    vs_torch: float = 0.8
    task: str = "classification"
    data: str = "mnist1d"

    @property
    def widths(self) -> tuple[int, int, int]:  # what make_data reads
        return (self.in_features, self.width, self.out_features)

    @property
    def label(self) -> str:
        norm = "batch norm" if self.norm == "batch" else "no normalization"
        return (f"{self.in_features}→{self.width}, {self.depth} pre-activation blocks, →{self.out_features}, "
                f"{norm}, batch {self.batch}")


RES_NETWORKS = {
    "resmlp": ResNetwork("resmlp", 40, 100, 8, 10, 100, None, {"sgd": 1e-2, "adam": 1e-3}),
    "resmlp-bn": ResNetwork("resmlp-bn", 40, 100, 8, 10, 100, "batch", {"sgd": 1e-2, "adam": 1e-3}),
}
SMOKE_RES_NETWORKS = {name: replace(net, width=12, depth=2, batch=16) for name, net in RES_NETWORKS.items()}


def res_net(network: ResNetwork, dtype):
    """depthlab's ``ResMLP`` for ``network`` (He-normal, seed 0): the shared initial weights."""
    return dl.ResMLP(network.in_features, network.width, network.depth, network.out_features, block="preact",
                     norm=network.norm, rng=0, dtype=dtype)


def res_initial(network: ResNetwork, dtype) -> list[np.ndarray]:
    """Copies of the initial parameters, in the order of ``net.parameters()``: the stem's Ω, β;
    per block [γ, β of the first norm], Ω, β, [γ, β], Ω, β; the head's [γ, β], Ω, β."""
    return [p.data.copy() for p in res_net(network, dtype).parameters()]


def _optimizer(params, network, optimizer: str):
    lr = network.lr[optimizer]
    return dl.optim.SGD(params, lr=lr) if optimizer == "sgd" else dl.optim.Adam(params, lr=lr, betas=BETAS, eps=EPS)


class ResDepthlab:
    """``dl.TrainStep`` on ``dl.ResMLP``."""

    name = "depthlab"

    def __init__(self, network: ResNetwork, dtype, optimizer: str, params=None):
        self.net = res_net(network, dtype)
        if params is not None:
            for p, value in zip(self.net.parameters(), params):
                p.data[...] = value
        self.opt = _optimizer(self.net.parameters(), network, optimizer)
        self.train_step = dl.TrainStep(self.net, "cross_entropy", self.opt)

    def step(self, x, y):
        self.train_step(x, y)

    def weights(self):
        return [p.data for p in self.net.parameters()]


class ResHand:
    """The hand-written NumPy loop for the same network: preallocated arrays, in-place ReLU,
    batch norm by the textbook formulas (biased batch variance to normalize, the unbiased one
    into the running average), in-place SGD/Adam updates."""

    name = "hand"
    EPS_NORM, MOMENTUM = 1e-5, 0.1

    def __init__(self, network: ResNetwork, dtype, optimizer: str, params=None):
        params = res_initial(network, dtype) if params is None else params
        self.params = [np.array(p, dtype=dtype) for p in params]
        self.norm = network.norm == "batch"
        self.lr, self.adam, self.t = network.lr[optimizer], optimizer == "adam", 0
        it = iter(self.params)

        def take(count):
            return tuple(next(it) for _ in range(count))

        bn = 2 if self.norm else 0
        self.stem = take(2)
        self.blocks = [(take(bn), take(2), take(bn), take(2)) for _ in range(network.depth)]
        self.head = (take(bn), take(2))
        n, d = network.batch, network.width
        self.running = {}  # id(γ) -> [running mean, running var]
        for gamma in [b[0][0] for b in self.blocks if b[0]] + [b[2][0] for b in self.blocks if b[2]] + (
                [self.head[0][0]] if self.head[0] else []):
            self.running[id(gamma)] = [np.zeros(d, dtype), np.ones(d, dtype)]

        def new():
            return np.empty((n, d), dtype)

        # per block: input h, [xhat1, z1 → r1], f1, [xhat2], z2/r2, and the backward arrays
        self.hs = [new() for _ in range(network.depth + 1)]
        self.fwd = [{"xhat1": new(), "r1": new(), "f1": new(), "xhat2": new(), "r2": new()}
                    for _ in range(network.depth + 1)]
        self.g_r, self.g_z, self.g_in = new(), new(), new()
        self.grads = [np.empty_like(p) for p in self.params]
        if self.adam:
            self.m = [np.zeros_like(p) for p in self.params]
            self.v = [np.zeros_like(p) for p in self.params]
            self.s = [np.empty_like(p) for p in self.params]
        self.index = {id(p): i for i, p in enumerate(self.params)}

    # -- batch norm, train mode --------------------------------------------------------
    def _bn_forward(self, x, gamma, beta, xhat, out):
        n = x.shape[0]
        mean = x.mean(axis=0)
        np.subtract(x, mean, out=xhat)
        var = np.square(xhat).mean(axis=0)
        inverse_std = 1.0 / np.sqrt(var + self.EPS_NORM)
        xhat *= inverse_std
        np.multiply(xhat, gamma, out=out)
        out += beta
        running_mean, running_var = self.running[id(gamma)]
        m = self.MOMENTUM
        running_mean *= 1 - m
        running_mean += m * mean
        running_var *= 1 - m
        running_var += (m * n / (n - 1)) * var
        return inverse_std

    def _bn_backward(self, g, xhat, gamma, beta, inverse_std, out):
        """dL/dx = γ/σ · (g − Σg/N − x̂ Σ(g x̂)/N); dL/dγ = Σ g x̂, dL/dβ = Σ g."""
        n = g.shape[0]
        grad_gamma, grad_beta = self._grad(gamma), self._grad(beta)
        np.sum(g * xhat, axis=0, out=grad_gamma)
        np.sum(g, axis=0, out=grad_beta)
        np.multiply(xhat, grad_gamma / n, out=out)
        out += grad_beta / n
        np.subtract(g, out, out=out)
        out *= gamma * inverse_std
        return out

    def _grad(self, p):
        return self.grads[self.index[id(p)]]

    def _linear_backward(self, g, h, weight, bias, out):
        np.matmul(g.T, h, out=self._grad(weight))
        np.sum(g, axis=0, out=self._grad(bias))
        return None if out is None else np.matmul(g, weight, out=out)

    # -- the step ----------------------------------------------------------------------
    def step(self, x, y):
        (w0, b0), hs, fwd = self.stem, self.hs, self.fwd
        np.matmul(x, w0.T, out=hs[0])
        hs[0] += b0
        inverse_stds = []
        for b, (norm1, (w1, b1), norm2, (w2, b2)) in enumerate(self.blocks):
            h, a = hs[b], fwd[b]
            if norm1:
                inv1 = self._bn_forward(h, *norm1, a["xhat1"], a["r1"])
                r1 = np.maximum(a["r1"], 0, out=a["r1"])
            else:
                inv1, r1 = None, np.maximum(h, 0, out=a["r1"])
            f1 = np.matmul(r1, w1.T, out=a["f1"])
            f1 += b1
            if norm2:
                inv2 = self._bn_forward(f1, *norm2, a["xhat2"], a["r2"])
                r2 = np.maximum(a["r2"], 0, out=a["r2"])
            else:
                inv2, r2 = None, np.maximum(f1, 0, out=a["r2"])
            out = np.matmul(r2, w2.T, out=hs[b + 1])
            out += b2
            out += h
            inverse_stds.append((inv1, inv2))
        norm, (w, bias) = self.head
        a, h = fwd[-1], hs[-1]
        if norm:
            inv_head = self._bn_forward(h, *norm, a["xhat1"], a["r1"])
            r = np.maximum(a["r1"], 0, out=a["r1"])
        else:
            r = np.maximum(h, 0, out=a["r1"])
        logits = r @ w.T
        logits += bias
        g = _cross_entropy_grad(logits, y)
        g_h, spare, other = self.g_in, self.g_r, self.g_z  # dL/dh and two scratch arrays
        self._linear_backward(g, r, w, bias, spare)
        spare *= r > 0
        if norm:
            self._bn_backward(spare, a["xhat1"], *norm, inv_head, g_h)
        else:
            g_h, spare = spare, g_h
        for b in range(len(self.blocks) - 1, -1, -1):  # dL/dh_b = dL/dh_{b+1} + F'ᵀ dL/dh_{b+1}
            norm1, (w1, b1), norm2, (w2, b2) = self.blocks[b]
            a, (inv1, inv2) = fwd[b], inverse_stds[b]
            self._linear_backward(g_h, a["r2"], w2, b2, spare)
            spare *= a["r2"] > 0
            if norm2:
                self._bn_backward(spare, a["xhat2"], *norm2, inv2, other)
                spare, other = other, spare
            self._linear_backward(spare, a["r1"], w1, b1, other)
            other *= a["r1"] > 0
            if norm1:
                self._bn_backward(other, a["xhat1"], *norm1, inv1, spare)
                other, spare = spare, other
            g_h += other
        self._linear_backward(g_h, x, w0, b0, None)
        if self.adam:
            self.t += 1
            _adam_update(self.params, self.grads, self.m, self.v, self.s, self.t, self.lr)
        else:
            for p, grad in zip(self.params, self.grads):
                grad *= self.lr
                p -= grad

    def weights(self):
        return self.params


def _torch_resmlp(network: ResNetwork, dtype, params):
    """``network`` as ``torch.nn`` modules: each block ``h + branch(h)`` with ``branch`` an
    ``nn.Sequential`` (``dl.to_torch``'s residual module, without its multiplication by a
    scale of 1), loaded with ``params`` in the order of ``net.parameters()``."""
    import torch

    nn = torch.nn
    kind = torch.float32 if np.dtype(dtype) == np.float32 else torch.float64

    class Block(nn.Module):
        def __init__(self, branch):
            super().__init__()
            self.branch = branch

        def forward(self, h):
            return h + self.branch(h)

    def norm():
        return [nn.BatchNorm1d(network.width, dtype=kind)] if network.norm == "batch" else []

    def linear(d_in, d_out):
        return nn.Linear(d_in, d_out, dtype=kind)

    d = network.width
    layers = [linear(network.in_features, d)]
    for _ in range(network.depth):
        layers.append(Block(nn.Sequential(*norm(), nn.ReLU(), linear(d, d), *norm(), nn.ReLU(), linear(d, d))))
    layers += [*norm(), nn.ReLU(), linear(d, network.out_features)]
    model = nn.Sequential(*layers)
    with torch.no_grad():
        for tensor, value in zip(model.parameters(), params, strict=True):
            tensor.copy_(torch.from_numpy(np.ascontiguousarray(value)))
    return model


class ResTorch(Torch):
    """The same network in ``torch.nn`` with ``torch.optim`` on CPU."""

    def __init__(self, network: ResNetwork, dtype, optimizer: str, params=None):
        import torch

        self.torch = torch
        params = res_initial(network, dtype) if params is None else params
        self.model = _torch_resmlp(network, dtype, params).train()
        self.loss = torch.nn.CrossEntropyLoss()
        lr = network.lr[optimizer]
        parameters = self.model.parameters()
        self.opt = torch.optim.SGD(parameters, lr=lr) if optimizer == "sgd" else torch.optim.Adam(
            parameters, lr=lr, betas=BETAS, eps=EPS)
        self._tensors = {}

    def weights(self):
        return [p.detach().numpy() for p in self.model.parameters()]


RES_KINDS = {"depthlab": ResDepthlab, "hand": ResHand, "torch": ResTorch}


def build_res(kind: str, network: ResNetwork, dtype, optimizer: str):
    """A residual contender of ``kind`` ("depthlab", "hand", "torch") from the shared weights."""
    return RES_KINDS[kind](network, dtype, optimizer, res_initial(network, dtype))


def check_res_agreement(network: ResNetwork, dtype, batches) -> dict[str, float]:
    """As :func:`check_agreement`, for the residual contenders: relative difference of one SGD
    update of every parameter (batch norm's γ, β included) from depthlab's."""
    x, y = batches[0]
    start = [p.astype(np.float64) for p in res_initial(network, dtype)]
    contenders = {kind: build_res(kind, network, dtype, "sgd") for kind in RES_KINDS}
    for contender in contenders.values():
        contender.step(x, y)
    reference = [w.astype(np.float64) - s for w, s in zip(contenders["depthlab"].weights(), start)]
    scale = math.sqrt(sum(float(np.sum(d * d)) for d in reference)) or 1.0
    differences = {}
    for kind in ("hand", "torch"):
        delta = [w.astype(np.float64) - s for w, s in zip(contenders[kind].weights(), start, strict=True)]
        error = math.sqrt(sum(float(np.sum((a - b) ** 2)) for a, b in zip(delta, reference)))
        differences[kind] = error / scale
    return differences
