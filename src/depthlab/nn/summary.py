"""A network's summary table, as Keras's ``model.summary()`` or torchinfo print it.

One row per layer k (the Linear f_k = β_k + Ω_k h_k and the activation after it): output
shape, activation, how Ω_k and β_k were initialized, parameter count and dtype; then the
totals. ``net.summary()`` returns it as text (which Jupyter shows as a table), and a network
shown in a notebook displays it as HTML.

    >>> print(dl.MLP(1, [80] * 2, 1, rng=0).summary())
    layer  type                  output shape  activation  initialization  parameters
    ...
"""
from __future__ import annotations

from .. import _html

COLUMNS = ("layer", "type", "output shape", "activation", "initialization", "parameters", "trainable", "dtype")


def rows(net) -> list[dict]:
    """One dict per layer k with the :data:`COLUMNS` as keys (parameters as ints): per Linear
    layer and its activation for a plain MLP, else per top-level layer."""
    if not _plain(net):
        return _layer_rows(net)
    result = []
    for k, (linear, activation) in enumerate(zip(net.linears, net.layer_activations)):
        parameters = sum(p.size for p in linear.parameters())
        result.append({
            "layer": k,
            "type": f"Linear({linear.in_features} → {linear.out_features})",
            "output shape": f"(N, {linear.out_features})",
            "activation": activation.name,
            "initialization": getattr(linear, "init_name", "unknown"),
            "parameters": parameters,
            "trainable": parameters,     # every Parameter is updated by an optimizer given it
            "dtype": str(linear.dtype),
        })
    return result


def _plain(net) -> bool:
    from .layers import ActivationLayer, Linear
    return bool(net.layers) and isinstance(net.layers[0], Linear) and all(
        isinstance(layer, (Linear, ActivationLayer)) for layer in net.layers)


def _layer_rows(net) -> list[dict]:
    """One row per top-level layer (networks with layers other than Linear and activations)."""
    from .layers import ActivationLayer, Linear
    result, features = [], net.in_features
    for i, layer in enumerate(net.layers):
        if isinstance(layer, Linear):
            features = layer.out_features
        elif features is not None:
            features = layer.output_features(features)
        parameters = layer.parameters()
        count = sum(p.size for p in parameters)
        result.append({
            "layer": i,
            "type": (f"Linear({layer.in_features} → {layer.out_features})" if isinstance(layer, Linear)
                     else type(layer).__name__),
            "output shape": f"(N, {features})" if features is not None else "(N, ?)",
            "activation": layer.activation.name if isinstance(layer, ActivationLayer) else "",
            "initialization": getattr(layer, "init_name", "") if isinstance(layer, Linear) else "",
            "parameters": count,
            "trainable": count,
            "dtype": str(parameters[0].dtype) if parameters else "",
        })
    return result


def totals(net) -> dict:
    """Parameter count, memory of the weights and biases in bytes, input and output shapes."""
    count = net.n_parameters()
    return {"parameters": count, "trainable": count, "non-trainable": 0,
            "bytes": sum(p.data.nbytes for p in net.parameters()),
            "input shape": f"(N, {_width(net.in_features)})", "output shape": f"(N, {_width(net.out_features)})",
            "depth": net.depth}


def _size(nbytes: int) -> str:
    for unit, scale in (("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes} B"


def _footer(net) -> list[str]:
    t = totals(net)
    return [f"Input {t['input shape']} → output {t['output shape']}, {t['depth']} hidden layers.",
            f"Parameters: {t['parameters']:,} ({_size(t['bytes'])}); trainable {t['trainable']:,}, "
            f"non-trainable {t['non-trainable']}."]


class Summary(str):
    """The summary as text; Jupyter displays it as an HTML table (:meth:`_repr_html_`)."""

    def __new__(cls, net):
        table = [[str(_html.number(row[c])) if c in ("parameters", "trainable") else str(row[c]) for c in COLUMNS]
                 for row in rows(net)]
        widths = [max(len(c), *(len(r[i]) for r in table)) for i, c in enumerate(COLUMNS)]
        right = {"parameters", "trainable", "layer"}

        def line(cells):
            return "  ".join(cell.rjust(w) if c in right else cell.ljust(w)
                             for c, cell, w in zip(COLUMNS, cells, widths)).rstrip()

        text = "\n".join([f"{type(net).__name__}", line(COLUMNS), "  ".join("-" * w for w in widths),
                          *map(line, table), *_footer(net)])
        self = super().__new__(cls, text)
        self._html = html(net)
        return self

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        return self._html


def summary(net) -> Summary:
    """The summary table of ``net`` (a str; HTML in Jupyter)."""
    return Summary(net)


def html(net) -> str:
    """The summary as an HTML block (what ``net._repr_html_()`` returns)."""
    table = [[row[c] for c in COLUMNS] for row in rows(net)]
    return _html.container(
        _html.heading(f"{type(net).__name__}: {net.depth} hidden layers, {net.n_parameters():,} parameters"),
        _html.table(list(COLUMNS), table),
        *(_html.paragraph(text, muted=True) for text in _footer(net)))


def _width(features) -> str:
    """A width for the tables: the number, or "?" when the layers do not say."""
    return "?" if features is None else str(features)
