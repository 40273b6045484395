"""Normalization layers: ``BatchNorm`` (over the batch) and ``LayerNorm`` (over the features).

Both standardize and then scale and shift, per feature j::

    x̂ = (x − μ) / sqrt(σ² + ε),        y = γ_j x̂ + β_j

BatchNorm takes μ, σ² of each feature over the batch (N samples) in train mode, and the
running averages in eval mode (``torch.nn.BatchNorm1d``); LayerNorm takes them over the D
features of each sample, the same in both modes (``torch.nn.LayerNorm`` over the last axis).
σ² is the biased variance (divided by the count), as PyTorch normalizes.

Backward, for the statistics over n values (n = N for batch norm, D for layer norm), with
dx̂ = dL/dy ⊙ γ::

    dL/dx = (n dx̂ − Σ dx̂ − x̂ Σ (dx̂ ⊙ x̂)) / (n sqrt(σ² + ε))
    dL/dγ = Σ_n dL/dy ⊙ x̂,             dL/dβ = Σ_n dL/dy

Beside the plain math each has its fast variant (``forward_fast`` / ``backward_fast``, see
:class:`~depthlab.nn.layer.Layer`): the same formulas into arrays the engine keeps, the sums as
BLAS products with a vector of ones. Batch norm folds γ and 1/σ into one factor per feature:
it keeps x − μ rather than x̂, so its forward pass is y = (x − μ) ⊙ (γ/σ) + β and its backward
pass, with g = dL/dy and c = x − μ (all sums over the batch)::

    dL/dγ = Σ g ⊙ c / σ,     dL/dx = (γ/σ) ⊙ (g − Σ g / N − c ⊙ Σ (g ⊙ c) / (N σ²))
"""
from __future__ import annotations

import numpy as np

from .._checks import check_fits_in_memory, check_positive_int, check_real, resolve_dtype
from .._fast.buffers import batch_sum, ones
from .layer import Layer, work_array
from .parameter import Parameter


def _check_features(layer, x: np.ndarray) -> None:
    if x.ndim != 2 or x.shape[1] != layer.num_features:
        raise ValueError(f"{layer!r} expects inputs of shape (N, {layer.num_features}), got {x.shape}; "
                         f"num_features must be the width of the layer before it.")


def _affine_parameters(layer, num_features: int, dtype) -> None:
    """γ (``weight``, ones) and β (``bias``, zeros), one per feature."""
    layer.weight = Parameter(np.ones(num_features, dtype), "weight")
    layer.bias = Parameter(np.zeros(num_features, dtype), "bias")


def _affine_backward(layer, grad_output: np.ndarray, xhat: np.ndarray, affine: bool) -> np.ndarray:
    """dL/dx̂ from dL/dy for y = γ x̂ + β, adding dL/dγ and dL/dβ to the parameters (when ``affine``)."""
    if not affine:
        return grad_output
    layer.weight.accumulate((grad_output * xhat).sum(axis=0))
    layer.bias.accumulate(grad_output.sum(axis=0))
    return grad_output * layer.weight.data


def _same_width(layer, in_features: int) -> int:
    if in_features != layer.num_features:
        raise ValueError(f"{layer!r} expects {layer.num_features} features, got {in_features}.")
    return in_features


def _standardize_backward(grad_xhat: np.ndarray, xhat: np.ndarray, inverse_std: np.ndarray, axis: int) -> np.ndarray:
    """dL/dx from dL/dx̂ for x̂ standardized over ``axis`` (its n values)."""
    n = xhat.shape[axis]
    total = grad_xhat.sum(axis=axis, keepdims=True)
    projected = (grad_xhat * xhat).sum(axis=axis, keepdims=True)
    return (n * grad_xhat - total - xhat * projected) * (inverse_std / n)


class BatchNorm(Layer):
    """Batch normalization of each feature, ``torch.nn.BatchNorm1d``'s semantics.

    Parameters
    ----------
    num_features : int
        D, the width of the inputs (N, D).
    eps : float, default 1e-5
    momentum : float or None, default 0.1
        running ← (1 − momentum) running + momentum · batch statistic; None: the cumulative
        average of all batches seen (PyTorch's meaning).
    affine : bool, default True
        Learn γ (``weight``, ones) and β (``bias``, zeros).
    track_running_stats : bool, default True
        Keep ``running_mean`` and ``running_var`` (the unbiased batch variance is averaged), used
        in eval mode; without them every mode uses the batch's statistics.
    dtype : "float64" or "float32"
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                 track_running_stats: bool = True, *, dtype="float64"):
        super().__init__()
        self.num_features = check_positive_int(num_features, "num_features")
        self.eps = check_real(eps, "eps", low=0, low_open=True)
        self.momentum = None if momentum is None else check_real(momentum, "momentum", low=0, high=1)
        for name, flag in (("affine", affine), ("track_running_stats", track_running_stats)):
            if not isinstance(flag, bool):
                raise TypeError(f"BatchNorm: {name} must be True or False, got {flag!r}.")
        dtype = resolve_dtype(dtype)
        check_fits_in_memory(4 * self.num_features, dtype.itemsize, f"BatchNorm({self.num_features})'s parameters and "
                             "running statistics", "use a smaller num_features (the width of the layer before)")
        if affine:
            _affine_parameters(self, num_features, dtype)
        self.affine, self.track_running_stats = affine, track_running_stats
        self.running_mean = np.zeros(num_features, dtype) if track_running_stats else None
        self.running_var = np.ones(num_features, dtype) if track_running_stats else None
        self.num_batches_tracked = 0

    buffer_names = ("running_mean", "running_var", "num_batches_tracked")

    @property
    def batch_statistics(self) -> bool:
        """Whether the next pass normalizes with the batch's own statistics."""
        return self.training or not self.track_running_stats

    def output_features(self, in_features: int) -> int:
        return _same_width(self, in_features)

    def _check_batch(self, x: np.ndarray) -> None:
        if x.shape[0] < 2 and self.training:
            raise ValueError(f"{self!r} in train mode needs more than 1 value per feature (a batch of at least "
                             f"2 samples), got x of shape {x.shape}; use a larger batch or net.eval().")

    def forward(self, x: np.ndarray, cache: dict) -> np.ndarray:
        _check_features(self, x)
        use_batch = self.training or not self.track_running_stats
        if use_batch:
            n = x.shape[0]
            self._check_batch(x)
            mean, var = x.mean(axis=0), x.var(axis=0)
            if self.training and self.track_running_stats:
                self._update_running(mean, var, n)
        else:
            mean, var = self.running_mean, self.running_var
        inverse_std = 1.0 / np.sqrt(var + self.eps)
        xhat = (x - mean) * inverse_std
        cache["xhat"], cache["inverse_std"], cache["batch"] = xhat, inverse_std, use_batch
        return xhat * self.weight.data + self.bias.data if self.affine else xhat

    def _update_running(self, mean: np.ndarray, var: np.ndarray, n: int) -> None:
        if not (np.isfinite(mean).all() and np.isfinite(var).all()):
            return  # a batch with NaN/Inf (the pass is refused as non-finite) must not corrupt the statistics
        self.num_batches_tracked += 1
        factor = 1.0 / self.num_batches_tracked if self.momentum is None else self.momentum
        self.running_mean *= 1 - factor
        self.running_mean += factor * mean
        self.running_var *= 1 - factor
        self.running_var += factor * var * (n / (n - 1))

    def backward(self, grad_output: np.ndarray, cache: dict) -> np.ndarray:
        xhat, inverse_std = cache["xhat"], cache["inverse_std"]
        grad_xhat = _affine_backward(self, grad_output, xhat, self.affine)
        if not cache["batch"]:  # fixed running statistics: an affine map per feature
            return grad_xhat * inverse_std
        return _standardize_backward(grad_xhat, xhat, inverse_std, axis=0)

    # -- the same math, into reused arrays (the engine's fast paths) ---------------------
    keeps_output = False  # backward reads x − μ and 1/σ, never y: a layer after it may overwrite y

    def forward_fast(self, x: np.ndarray, work: dict) -> np.ndarray:
        """:meth:`forward` as y = (x − μ) ⊙ (γ/σ) + β, x − μ in place of x when the engine
        allows it, the batch's sums as BLAS products; the running statistics as :meth:`forward`."""
        _check_features(self, x)
        batch = self.batch_statistics
        n = x.shape[0]
        out = work_array(work, "output", x.shape, x.dtype)
        if batch:
            self._check_batch(x)
            mean = batch_sum(x)
            mean *= 1 / n
        else:
            mean = self.running_mean
        centered = np.subtract(x, mean, out=x if work["overwrite_input"] else work_array(work, "centered", x.shape,
                                                                                        x.dtype))
        if batch:
            var = batch_sum(np.square(centered, out=out))  # out: scratch until y is written
            var *= 1 / n
            if self.training and self.track_running_stats:
                self._update_running(mean, var, n)
        else:
            var = self.running_var
        inverse_std = 1.0 / np.sqrt(var + self.eps)
        work["centered"], work["inverse_std"], work["batch"] = centered, inverse_std, batch
        if not self.affine:
            return np.multiply(centered, inverse_std, out=out)
        out = np.multiply(centered, self.weight.data * inverse_std, out=out)
        out += self.bias.data
        return out

    def backward_fast(self, grad_output: np.ndarray, work: dict):
        """:meth:`backward` from x − μ (module docstring), dL/dγ and dL/dβ written into
        ``work["gradients"]``'s arrays; dL/dx in place of dL/dy when the engine allows it."""
        g, centered, inverse_std = grad_output, work["centered"], work["inverse_std"]
        n = g.shape[0]
        gradients = work["gradients"]
        scratch = work_array(work, "scratch", g.shape, g.dtype)
        grad_sum = None
        if self.affine or work["batch"]:
            grad_sum = batch_sum(g, None if gradients is None or not self.affine else gradients[self.bias])
            grad_centered = batch_sum(np.multiply(g, centered, out=scratch))  # Σ g ⊙ (x − μ)
        if self.affine:
            bias, weight = self.bias, self.weight
            bias.grad = grad_sum if bias.grad is None else bias.grad + grad_sum
            grad_weight = np.multiply(grad_centered, inverse_std, out=None if gradients is None else gradients[weight])
            weight.grad = grad_weight if weight.grad is None else weight.grad + grad_weight
        if not work["input_grad"]:
            return None
        factor = inverse_std if not self.affine else self.weight.data * inverse_std  # γ/σ
        out = g if work["overwrite_grad"] else work_array(work, "grad_input", g.shape, g.dtype)
        if not work["batch"]:  # fixed running statistics: an affine map per feature
            return np.multiply(g, factor, out=out)
        # dL/dx = (γ/σ) g − [(γ/σ³) Σ(g ⊙ c) / N] ⊙ c − (γ/σ) Σ g / N
        correction = np.multiply(centered, factor * inverse_std * inverse_std * grad_centered * (1 / n), out=scratch)
        correction += factor * grad_sum * (1 / n)
        out = np.multiply(g, factor, out=out)
        out -= correction
        return out

    def __repr__(self) -> str:
        return (f"BatchNorm({self.num_features}, eps={self.eps:g}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats})")


class LayerNorm(Layer):
    """Layer normalization over the last axis, ``torch.nn.LayerNorm(num_features)``'s semantics.

    Parameters
    ----------
    num_features : int
        D, the width of the inputs (N, D): each sample is standardized over its D features.
    eps : float, default 1e-5
    elementwise_affine : bool, default True
        Learn γ (``weight``, ones) and β (``bias``, zeros), one per feature.
    dtype : "float64" or "float32"
    """

    def __init__(self, num_features: int, eps: float = 1e-5, elementwise_affine: bool = True, *, dtype="float64"):
        super().__init__()
        self.num_features = check_positive_int(num_features, "num_features")
        self.eps = check_real(eps, "eps", low=0, low_open=True)
        if not isinstance(elementwise_affine, bool):
            raise TypeError(f"LayerNorm: elementwise_affine must be True or False, got {elementwise_affine!r}.")
        dtype = resolve_dtype(dtype)
        check_fits_in_memory(2 * self.num_features, dtype.itemsize, f"LayerNorm({self.num_features})'s parameters",
                             "use a smaller num_features (the width of the layer before)")
        if elementwise_affine:
            _affine_parameters(self, num_features, dtype)
        self.elementwise_affine = elementwise_affine

    def output_features(self, in_features: int) -> int:
        return _same_width(self, in_features)

    def forward(self, x: np.ndarray, cache: dict) -> np.ndarray:
        _check_features(self, x)
        mean, var = x.mean(axis=1, keepdims=True), x.var(axis=1, keepdims=True)
        inverse_std = 1.0 / np.sqrt(var + self.eps)
        xhat = (x - mean) * inverse_std
        cache["xhat"], cache["inverse_std"] = xhat, inverse_std
        return xhat * self.weight.data + self.bias.data if self.elementwise_affine else xhat

    def backward(self, grad_output: np.ndarray, cache: dict) -> np.ndarray:
        xhat, inverse_std = cache["xhat"], cache["inverse_std"]
        grad_xhat = _affine_backward(self, grad_output, xhat, self.elementwise_affine)
        return _standardize_backward(grad_xhat, xhat, inverse_std, axis=1)

    # -- the same math, into reused arrays (the engine's fast paths) ---------------------
    keeps_output = False  # backward reads x̂ and 1/σ, never y

    def forward_fast(self, x: np.ndarray, work: dict) -> np.ndarray:
        """:meth:`forward` into kept arrays: x̂ in place of x when the engine allows it, the sums
        over the features as BLAS products with a vector of ones."""
        _check_features(self, x)
        d = x.shape[1]
        features = ones(d, x.dtype)
        out = work_array(work, "output", x.shape, x.dtype)
        mean = np.matmul(x, features)
        mean *= 1 / d
        xhat = np.subtract(x, mean[:, None], out=x if work["overwrite_input"] else work_array(work, "xhat", x.shape,
                                                                                             x.dtype))
        var = np.matmul(np.square(xhat, out=out), features)  # out: scratch until y is written
        var *= 1 / d
        inverse_std = (1.0 / np.sqrt(var + self.eps))[:, None]
        xhat *= inverse_std
        work["xhat"], work["inverse_std"] = xhat, inverse_std
        if not self.elementwise_affine:  # y = x̂, in an array of its own (a layer after it may overwrite y)
            if out is None:
                return xhat.copy()
            np.copyto(out, xhat)
            return out
        out = np.multiply(xhat, self.weight.data, out=out)
        out += self.bias.data
        return out

    def backward_fast(self, grad_output: np.ndarray, work: dict):
        """:meth:`backward` with the per-sample sums as BLAS products, dL/dγ and dL/dβ written
        into ``work["gradients"]``'s arrays; dL/dx in place of dL/dy when the engine allows it."""
        g, xhat, inverse_std = grad_output, work["xhat"], work["inverse_std"]
        d = g.shape[1]
        features = ones(d, g.dtype)
        gradients = work["gradients"]
        scratch = work_array(work, "scratch", g.shape, g.dtype)
        if self.elementwise_affine:
            bias, weight = self.bias, self.weight
            grad_bias = batch_sum(g, None if gradients is None else gradients[bias])
            bias.grad = grad_bias if bias.grad is None else bias.grad + grad_bias
            grad_weight = batch_sum(np.multiply(g, xhat, out=scratch), None if gradients is None else gradients[weight])
            weight.grad = grad_weight if weight.grad is None else weight.grad + grad_weight
        if not work["input_grad"]:
            return None
        out = g if work["overwrite_grad"] else work_array(work, "grad_input", g.shape, g.dtype)
        grad_xhat = np.multiply(g, self.weight.data, out=out) if self.elementwise_affine else g
        # dL/dx = (d dx̂ − Σ dx̂ − x̂ Σ (dx̂ ⊙ x̂)) / (d σ), the sums over the features of each sample
        total = np.matmul(grad_xhat, features)
        projected = np.matmul(np.multiply(grad_xhat, xhat, out=scratch), features)
        correction = np.multiply(xhat, projected[:, None], out=scratch)
        correction += total[:, None]
        out = np.multiply(grad_xhat, d, out=out)
        out -= correction
        out *= inverse_std * (1 / d)
        return out

    def __repr__(self) -> str:
        return f"LayerNorm({self.num_features}, eps={self.eps:g}, elementwise_affine={self.elementwise_affine})"
