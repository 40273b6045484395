"""Residual blocks and ``Dropout``: the layers that carry a signal past depth.

A residual block adds a branch F (a small network) to a shortcut::

    h_{b+1} = shortcut(h_b) + s · F(h_b)            (shortcut = identity unless given)
    dL/dh_b = shortcut'ᵀ dL/dh_{b+1} + s · F'ᵀ dL/dh_{b+1}

With He-initialized ReLU branches the variance of h grows ×(1 + s²) per block: ×2 at
s = 1, a bounded ×e over D blocks at s = 1/√D (see :func:`depthlab.theory.residual_variance`).
SkipInit (De & Smith 2020) starts at s = 0, optionally learning s; Fixup (Zhang et al. 2019)
zeroes each branch's last layer and scales its other layers by D^(−1/(2m − 2)).
"""
from __future__ import annotations

import math

import numpy as np

from .._checks import check_fits_in_memory, check_positive_int, check_real, resolve_dtype, resolve_rng
from .._fast.flat import pack
from .composite import chain_backward, chain_forward
from .layer import Layer, missing_cache, work_array
from .layers import ActivationLayer, Linear
from .normalization import BatchNorm, LayerNorm
from .parameter import Parameter


class Dropout(Layer):
    """Inverted dropout: in train mode each entry is kept with probability 1 − p and scaled by
    1/(1 − p); in eval mode the identity (``torch.nn.Dropout``'s semantics).

    Parameters
    ----------
    p : float in [0, 1)
        The probability of zeroing an entry.
    rng : np.random.Generator or int, optional
        Where the masks are drawn from (one draw per forward pass in train mode).
    """

    def __init__(self, p: float = 0.5, *, rng=None):
        super().__init__()
        self.p = check_real(p, "p", low=0, high=1, high_open=True)
        self.rng = resolve_rng(rng)

    @property
    def draws_random(self) -> bool:
        """Whether a forward pass draws a mask (train mode, p > 0)."""
        return self.training and self.p > 0

    def output_features(self, in_features: int) -> int:
        return in_features

    def forward(self, x: np.ndarray, cache: dict) -> np.ndarray:
        if not self.training or self.p == 0:
            cache["scale"] = None
            return x
        scale = (self.rng.random(x.shape) >= self.p) * x.dtype.type(1 / (1 - self.p))
        cache["scale"] = scale
        return x * scale

    def backward(self, grad_output: np.ndarray, cache: dict) -> np.ndarray:
        if "scale" not in cache:
            raise missing_cache(self)
        scale = cache["scale"]
        return grad_output if scale is None else grad_output * scale

    def __repr__(self) -> str:
        return f"Dropout(p={self.p:g})"


class Residual(Layer):
    """h → shortcut(h) + scale · F(h), F = Sequential(layers).

    Parameters
    ----------
    *layers : Layer or activation name (or one list of them)
        The branch F.
    scale : float, default 1.0
        s, the branch's weight (0 for SkipInit).
    shortcut : Layer, optional
        Maps h to the block's output width when F changes it (e.g. ``dl.Linear(D_in, D_out)``);
        the identity when None.
    learnable_scale : bool, default False
        Learn s (a Parameter ``scale``, SkipInit's learnable scalar).
    """

    def __init__(self, *layers, scale: float = 1.0, shortcut: Layer | None = None, learnable_scale: bool = False):
        from .model import Sequential

        super().__init__()
        self.branch = Sequential(*layers)
        if shortcut is not None and not isinstance(shortcut, Layer):
            raise TypeError(f"Residual: shortcut must be a depthlab Layer (e.g. dl.Linear(8, 16)) or None, got "
                            f"{type(shortcut).__name__}.")
        self.shortcut = shortcut
        value = check_real(scale, "scale")
        if not isinstance(learnable_scale, bool):
            raise TypeError(f"Residual: learnable_scale must be True or False, got {learnable_scale!r}.")
        dtype = self.branch.dtype
        if learnable_scale:
            self.scale = Parameter(np.array([value], dtype=dtype), "scale")
        else:
            self.scale = value
        branch_in, branch_out = self.branch.in_features, self.branch.out_features
        if shortcut is None and None not in (branch_in, branch_out) and branch_in != branch_out:
            raise ValueError(
                f"Residual: the branch maps {branch_in} features to {branch_out}, so the identity shortcut cannot be "
                f"added to it; give a shortcut that maps {branch_in} to {branch_out}, e.g. "
                f"Residual(..., shortcut=dl.Linear({branch_in}, {branch_out})).")
        if shortcut is not None and None not in (branch_in, branch_out):
            try:
                shortcut_out = shortcut.output_features(branch_in)
            except ValueError as error:
                raise ValueError(f"Residual: the shortcut cannot take the branch's {branch_in} input features: "
                                 f"{error}") from None
            if shortcut_out is not None and shortcut_out != branch_out:
                raise ValueError(
                    f"Residual: the branch maps {branch_in} features to {branch_out} but the shortcut {shortcut!r} "
                    f"to {shortcut_out}; they must match to be added, e.g. shortcut=dl.Linear({branch_in}, "
                    f"{branch_out}).")

    @property
    def in_features(self) -> int | None:
        return self.branch.in_features

    def output_features(self, in_features: int) -> int | None:
        return self.branch.output_features(in_features)

    def _scale(self) -> float:
        return self.scale.data[0] if isinstance(self.scale, Parameter) else self.scale

    def forward(self, h: np.ndarray, cache: dict) -> np.ndarray:
        branch_cache, shortcut_cache = {}, {}
        f = self.branch.forward(h, branch_cache)
        skip = h if self.shortcut is None else self.shortcut.forward(h, shortcut_cache)
        if f.shape != skip.shape:
            raise ValueError(f"Residual: the branch gives shape {f.shape} but the shortcut {skip.shape}; "
                             "they must match to be added.")
        cache["branch"], cache["shortcut"], cache["f"] = branch_cache, shortcut_cache, f
        return skip + self._scale() * f

    def backward(self, grad_output: np.ndarray, cache: dict) -> np.ndarray:
        if isinstance(self.scale, Parameter):
            self.scale.accumulate(np.array([np.vdot(grad_output, cache["f"])], dtype=self.scale.dtype))
        grad = self.branch.backward(self._scale() * grad_output, cache["branch"])
        if self.shortcut is None:
            return grad + grad_output
        return grad + self.shortcut.backward(grad_output, cache["shortcut"])

    # -- the same math, with the sublayers' fast variants (the engine's fast paths) --------
    keeps_output = False  # backward needs F(h) at most (a learnable scale), never the block's output

    def forward_fast(self, h: np.ndarray, work: dict) -> np.ndarray:
        """:meth:`forward` with the branch's (and shortcut's) sublayers run through their fast
        variants (:func:`~depthlab.nn.composite.chain_forward`). In a training step with a fixed
        scale the sum is written in place of F(h) when that is the last sublayer's own array
        (nothing needs F(h) afterwards), else into an array of its own, F(h) kept for backward."""
        f = chain_forward(self.branch.layers, h, work, "branch")
        skip = h if self.shortcut is None else chain_forward((self.shortcut,), h, work, "shortcut")
        if f.shape != skip.shape:
            raise ValueError(f"Residual: the branch gives shape {f.shape} but the shortcut {skip.shape}; "
                             "they must match to be added.")
        scale = self.scale
        in_place = work.get("sum_in_place")
        if in_place is None:
            last = self.branch.layers[-1]
            in_place = work["sum_in_place"] = (work["kept"] is not None and not isinstance(scale, Parameter)
                                               and work["branch"][0][-1] and not getattr(last, "keeps_output", True))
        if in_place and f is not h and f is not skip:
            out = f
            if scale != 1:
                out *= scale
        else:
            work["f"] = f
            out = np.multiply(f, self._scale(), out=work_array(work, "output", f.shape, f.dtype))
        out += skip
        return out

    def backward_fast(self, grad_output: np.ndarray, work: dict):
        """:meth:`backward` through the sublayers' fast variants
        (:func:`~depthlab.nn.composite.chain_backward`): s · dL/d(output) in an array of its
        own unless s = 1, and dL/dh = F'ᵀ(s g) + shortcut'ᵀ g in place of the branch's result
        when that array is the branch's own."""
        g = grad_output
        scale = self.scale
        if isinstance(scale, Parameter):  # dL/ds = Σ g ⊙ F(h)
            gradients = work["gradients"]
            gradient = np.empty(1, scale.dtype) if gradients is None else gradients[scale]
            gradient[0] = np.vdot(g, work["f"])
            scale.grad = gradient if scale.grad is None else scale.grad + gradient
            scale = scale.data[0]
        input_grad = work["input_grad"]
        if scale == 1:
            grad, owned = chain_backward(g, work, False, input_grad, "branch")
        else:
            scaled = np.multiply(g, scale, out=work_array(work, "scaled_grad", g.shape, g.dtype))
            grad, owned = chain_backward(scaled, work, True, input_grad, "branch")
        if self.shortcut is not None:
            g, _ = chain_backward(g, work, work["overwrite_grad"], input_grad, "shortcut")
        if not input_grad:
            return None
        if owned and grad is not g and grad is not grad_output:
            grad += g
            return grad
        return np.add(grad, g, out=work_array(work, "grad_input", g.shape, g.dtype))

    def __repr__(self) -> str:
        inner = ", ".join(repr(layer) for layer in self.branch)
        extra = "" if self.shortcut is None else f", shortcut={self.shortcut!r}"
        scale = "learnable" if isinstance(self.scale, Parameter) else f"{self.scale:g}"
        return f"Residual({inner}, scale={scale}{extra})"


NORMS = {None: None, "batch": BatchNorm, "layer": LayerNorm}
BLOCKS = ("preact", "postact")


def _residual_scale(value, depth: int) -> float:
    if isinstance(value, str):
        if value.replace(" ", "") != "1/sqrt(depth)":
            raise ValueError(f"residual_scale must be a number, '1/sqrt(depth)' or 0 (SkipInit), got {value!r}.")
        return 1.0 / math.sqrt(depth)
    return check_real(value, "residual_scale")


def ResMLP(in_features: int, width: int, depth: int, out_features: int, activation="relu", block: str = "preact",
           norm: str | None = None, residual_scale=1.0, init="he_normal", rng=0, dtype="float64",
           learnable_scale: bool = False, bias_init="zeros"):
    """A residual MLP: D_0 → width, ``depth`` residual blocks of two Linear layers, → D_out.

    ``block="preact"`` (He et al. 2016b): each branch is norm → a → Linear → norm → a → Linear,
    and the head norm → a → Linear. ``block="postact"`` (the original ResNet order): the stem is
    Linear → norm → a, each branch Linear → norm → a → Linear → norm, with a after each sum.

    Parameters
    ----------
    norm : None, "batch" or "layer"
    residual_scale : float, "1/sqrt(depth)", or 0 (SkipInit)
    init : initializer for every Linear layer (see :func:`depthlab.nn.init.get`), or "fixup":
        He-normal, each branch's last layer zeroed and its first scaled by depth^(−1/2)
        (Fixup with m = 2 layers per branch; use with norm=None).
    learnable_scale : bool
        Learn each block's residual scale (SkipInit's scalar).
    bias_init : initializer for every bias, default "zeros".
    """
    from .model import Sequential

    in_features = check_positive_int(in_features, "in_features")
    width = check_positive_int(width, "width")
    depth = check_positive_int(depth, "depth", minimum=0)
    out_features = check_positive_int(out_features, "out_features")
    if block not in BLOCKS:
        raise ValueError(f"block must be one of {BLOCKS}, got {block!r}.")
    if norm not in NORMS:
        raise ValueError(f"norm must be None, 'batch' or 'layer', got {norm!r}.")
    scale = _residual_scale(residual_scale, max(depth, 1))
    rng, dtype = resolve_rng(rng), resolve_dtype(dtype)
    entries = (in_features + 1) * width + 2 * depth * (width + 1) * width + (width + 1) * out_features
    check_fits_in_memory(entries, dtype.itemsize, f"ResMLP({in_features}, {width}, {depth}, {out_features})'s "
                         "weights", "use a smaller width or depth")
    fixup = isinstance(init, str) and init == "fixup"
    weight_init = "he_normal" if fixup else init

    def linear(d_in, d_out):
        return Linear(d_in, d_out, init=weight_init, bias_init=bias_init, rng=rng, dtype=dtype)

    def normalization():
        return [] if NORMS[norm] is None else [NORMS[norm](width, dtype=dtype)]

    def act():
        return ActivationLayer(activation)

    layers = [linear(in_features, width)]
    if block == "postact":
        layers += normalization() + [act()]
    for _ in range(depth):
        first, last = linear(width, width), linear(width, width)
        if fixup:
            first.weight.data *= depth ** -0.5
            last.weight.data[...] = 0
        if block == "preact":
            branch = normalization() + [act(), first] + normalization() + [act(), last]
            layers.append(Residual(*branch, scale=scale, learnable_scale=learnable_scale))
        else:
            branch = [first] + normalization() + [act(), last] + normalization()
            layers += [Residual(*branch, scale=scale, learnable_scale=learnable_scale), act()]
    if block == "preact":
        layers += normalization() + [act()]
    layers.append(linear(width, out_features))
    net = Sequential(layers)
    pack(net.parameters())  # one flat array: the optimizer updates them as one (depthlab._fast.flat)
    return net
