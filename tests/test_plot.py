"""dl.plot: every function returns a Figure (or the given axes) that draws the data it was given.

The drawn data are read back from the artists (line data, histogram heights, mesh values)
and compared with the objects they come from (a ProbeReport's stds, a History's losses, a
MinimizeResult's path, exact linear-region counts, the theory's χ₁).
"""
import sys

import numpy as np
import pytest
from matplotlib.collections import QuadMesh
from matplotlib.figure import Figure
from matplotlib.patches import StepPatch

import depthlab as dl
from depthlab.lab import plot, plots
from depthlab.signal import regions, theory


def lines_with_label(ax, label):
    return [line for line in ax.lines if line.get_label() == label]


def stairs(ax):
    return [p for p in ax.patches if isinstance(p, StepPatch)]


def meshes(ax):
    return [c for c in ax.collections if isinstance(c, QuadMesh)]


# ----------------------------------------------------------------------------- signals

def test_signal_std_draws_measured_markers_theory_line_and_single_networks():
    measured, theory_line = np.array([1.0, 2.0, 4.0]), np.array([1.0, 2.1, 4.2])
    draws = np.array([[0.9, 2.2, 3.9], [1.1, 1.8, -1.0]])      # a non-positive value is a gap on a log axis
    fig = plot.signal_std(measured, theory_line, draws=draws, label="He")
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert len(ax.lines) == 2 + 2                              # two faint draws, markers, theory
    marker = lines_with_label(ax, "He")[0]
    np.testing.assert_array_equal(marker.get_xdata(), [1, 2, 3])      # h_1 … h_K
    np.testing.assert_array_equal(marker.get_ydata(), measured)
    np.testing.assert_array_equal(ax.lines[-1].get_ydata(), theory_line)
    assert np.isnan(ax.lines[1].get_ydata()[2])
    assert ax.get_yscale() == "log"


def test_signal_std_backward_starts_at_layer_0_and_draws_into_a_given_axes():
    fig, ax = plots.figure()
    assert plot.signal_std([3.0, 2.0], quantity="dL/df", ax=ax) is ax
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), [0, 1])
    assert "partial L" in ax.get_ylabel()


@pytest.mark.parametrize("call, error, pattern", [
    (lambda: plot.signal_std([1.0, 2.0], [1.0]), ValueError, "same length"),
    (lambda: plot.signal_std([1.0, 2.0], draws=[[1.0]]), ValueError, r"shape \(R, 2\)"),
    (lambda: plot.signal_std([1.0], quantity="g"), ValueError, "quantity must be one of"),
    (lambda: plot.signal_std([[1.0]]), ValueError, "must be 1-D"),
    (lambda: plot.signal_std([1.0], ax="left"), TypeError, "ax must be a matplotlib Axes"),
    (lambda: plot.probe_std({"layers": []}), TypeError, "ProbeReport"),
    (lambda: plot.measured_and_theory([1, 2], [1, 2], [1, 2, 3]), ValueError, "theory and theory_x"),
])
def test_bad_arguments_are_refused_with_a_message(call, error, pattern):
    with pytest.raises(error, match=pattern):
        call()


@pytest.fixture(scope="module")
def report():
    net = dl.MLP(3, [12] * 5, 2, activation="tanh", init="xavier_normal", rng=0)
    return dl.probe(net, np.random.default_rng(1).standard_normal((64, 3)))


def test_probe_std_plots_the_reports_measured_and_predicted_stds(report):
    fig = plot.probe_std(report)
    ax = fig.axes[0]
    assert len(ax.lines) == 4                                   # forward and backward, measured and theory
    forward, forward_theory, backward, backward_theory = ax.lines
    np.testing.assert_allclose(forward.get_ydata(), [s.preactivation_std for s in report.layers])
    np.testing.assert_allclose(forward_theory.get_ydata(), [s.predicted_preactivation_std for s in report.layers])
    np.testing.assert_allclose(backward.get_ydata(), [s.grad_preactivation_std for s in report.layers])
    np.testing.assert_allclose(backward_theory.get_ydata(), [s.predicted_backward_std for s in report.layers])
    assert report.verdict in ax.get_title()
    assert len(plot.probe_std(report, which="backward").axes[0].lines) == 2


def test_probe_histograms_are_the_reports_histograms(report):
    fig = plot.probe_histograms(report, which="preactivation", bins=12)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == len(report.layers)
    counts, edges = report.histograms(bins=12)[2]["preactivation"]
    (patch,) = stairs(visible[2])
    np.testing.assert_allclose(patch.get_data().values, counts / counts.sum())
    np.testing.assert_array_equal(patch.get_data().edges, edges)


def test_probe_plots_take_a_network_of_blocks():
    report = dl.probe(dl.ResMLP(3, 8, 3, 2, norm="layer", rng=0), np.random.default_rng(1).standard_normal((32, 3)))
    ax = plot.probe_std(report).axes[0]
    forward, forward_theory, backward, backward_theory = ax.lines
    np.testing.assert_allclose(forward.get_ydata(), [s.output_std for s in report.layers])
    np.testing.assert_allclose(backward_theory.get_ydata(), [s.predicted_grad_std for s in report.layers])
    assert ax.get_xlabel() == "block $i$"
    fig = plot.probe_histograms(report, which="grad_output", bins=8)
    visible = [a for a in fig.axes if a.get_visible()]
    assert len(visible) == len(report.layers) and visible[1].get_title() == "block 1"
    with pytest.raises(ValueError, match="which"):
        plot.probe_histograms(report, which="preactivation")


def test_histogram_heights_are_fractions_of_all_values():
    values = np.random.default_rng(0).standard_normal((200, 10))
    ax = plot.histogram(values, bins=20).axes[0]
    (patch,) = stairs(ax)
    heights = patch.get_data().values
    assert heights.size == 20
    assert 0.99 <= heights.sum() <= 0.996                      # the top 0.5% lies beyond the axis


def test_histogram_of_relu_outputs_leaves_out_the_zeros_and_says_how_many():
    values = np.maximum(np.random.default_rng(0).standard_normal(1000), 0.0)
    ax = plot.histogram(values, activation="relu").axes[0]
    zero_share = np.mean(values == 0)
    assert f"{100 * zero_share:.0f}% = 0" in ax.texts[0].get_text()
    assert stairs(ax)[0].get_data().values.sum() == pytest.approx((1 - zero_share) * 0.995, abs=0.01)


def test_histogram_of_a_constant_is_one_bar_of_height_one():
    ax = plot.histogram(np.full((5, 4), 0.5), activation="sigmoid").axes[0]
    assert [p.get_height() for p in ax.patches] == [1.0]
    assert ax.texts[0].get_text() == "all = 0.5"


def test_histogram_grid_has_a_row_per_setting_and_a_column_per_layer():
    rng = np.random.default_rng(0)
    rows = {"he": [rng.standard_normal((50, 4)) for _ in range(3)],
            "xavier": [rng.standard_normal((50, 4)) for _ in range(3)]}
    fig = plot.histogram_grid(rows, bins=10, title="t", row_labels={"he": "He"})
    assert len(fig.axes) == 6
    assert fig.axes[0].get_ylabel() == "He" and fig.axes[3].get_ylabel() == "xavier"
    assert fig.axes[2].get_title() == "layer 3: $a_{3}$"
    with pytest.raises(ValueError, match="same number of layers"):
        plot.histogram_grid({"a": rows["he"], "b": rows["he"][:2]})


def test_jacobian_spectrum_histograms_every_singular_value():
    net = dl.MLP(6, [6, 6], 6, activation="tanh", init="orthogonal", rng=0)
    values = dl.jacobian_spectrum(net, np.random.default_rng(0).standard_normal((20, 6)))
    ax = plot.jacobian_spectrum({"orthogonal": values}, bins=15).axes[0]
    (patch,) = stairs(ax)
    assert patch.get_data().values.sum() == pytest.approx(1.0)
    assert ax.get_xscale() == "log"
    assert f"{np.mean(values ** 2):.3g}" in patch.get_label()


# ----------------------------------------------------------------------------- mean-field theory

def test_phase_diagram_colours_are_chi1_and_its_line_is_the_critical_variance():
    sw, sb = np.array([0.8, 1.0, 2.0]), np.array([0.0, 0.1])
    ax = plot.phase_diagram("tanh", sw, sb).axes[0]
    (mesh,) = meshes(ax)
    values = np.asarray(mesh.get_array()).reshape(2, 3)
    assert values[0, 1] == pytest.approx(1.0, abs=1e-6)        # σ_w² = 1, σ_b² = 0 is critical for tanh
    assert values[1, 2] == pytest.approx(theory.chi1("tanh", 2.0, 0.1), rel=1e-12)
    line = ax.lines[0]
    assert line.get_xdata()[0] == pytest.approx(theory.critical_weight_variance("tanh", 0.0))
    assert line.get_xdata()[-1] == pytest.approx(theory.critical_weight_variance("tanh", 0.1))


def test_phase_diagram_draws_given_values_and_checks_their_shape():
    values = np.arange(6.0).reshape(2, 3) + 1
    ax = plot.phase_diagram(None, [1, 2, 3], [0, 1], values=values, quantity="q_star", critical_line=False).axes[0]
    np.testing.assert_array_equal(np.asarray(meshes(ax)[0].get_array()).reshape(2, 3), values)
    with pytest.raises(ValueError, match=r"shape \(len\(bias_variances\)"):
        plot.phase_diagram(None, [1, 2, 3], [0, 1], values=values.T, critical_line=False)
    with pytest.raises(ValueError, match="activation="):
        plot.phase_diagram(None, [1, 2], [0, 1])


def test_depth_scales_leaves_out_infinite_values():
    ax = plot.depth_scales([1.0, 2.0, 3.0], [1.0, np.inf, 2.0], [0.5, 0.6, 0.7], critical=2.0,
                           measured_chi1=([1.0, 3.0], [0.5, 1.5])).axes[0]
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), [1.0, 2.0])
    np.testing.assert_allclose(ax.lines[2].get_ydata(), [-1 / np.log(0.5)])   # only the ordered side


def test_trainability_heat_map_is_the_accuracy_over_depth_and_variance():
    accuracy = np.array([[0.9, 0.2], [0.95, 0.8], [0.3, 0.1]])
    ax = plot.trainability([1.0, 2.0, 3.0], [10, 20], accuracy, bound=([1.0, 2.0, 3.0], [12, 40, 15]),
                           critical=1.8).axes[0]
    np.testing.assert_array_equal(np.asarray(meshes(ax)[0].get_array()).reshape(2, 3), accuracy.T)
    with pytest.raises(ValueError, match="accuracy must have shape"):
        plot.trainability([1.0], [10, 20], accuracy)


# ----------------------------------------------------------------------------- optimization and training

@pytest.fixture(scope="module")
def paths():
    return dl.optim.compare("elliptic", steps=40)


def test_optimizer_paths_draw_each_trajectory_in_its_own_panel(paths):
    fig = plot.optimizer_paths(paths, titles={"gd": "plain GD"}, notes={"adam": "note"})
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == len(paths) == 6
    for ax, (name, result) in zip(visible, paths.items()):
        path = [line for line in ax.lines if line.get_linestyle() == "-" and len(line.get_xdata()) > 1][0]
        np.testing.assert_array_equal(path.get_xydata(), result.trajectory)
    assert visible[0].get_title() == "plain GD"
    assert visible[5].texts[0].get_text() == "note"


def test_optimizer_paths_on_one_axes(paths):
    fig, ax = plots.figure()
    assert plot.optimizer_paths({"adam": paths["adam"], "gd": paths["gd"].trajectory}, ax=ax) is ax
    assert len(lines_with_label(ax, "adam")) == 1 and len(lines_with_label(ax, "gd")) == 1
    with pytest.raises(ValueError, match=r"\(steps \+ 1, 2\)"):
        plot.optimizer_paths({"bad": np.zeros((3, 3))})


def test_optimizer_losses_are_the_values_along_the_paths(paths):
    ax = plot.optimizer_losses(paths, labels={"gd": "gradient descent"}).axes[0]
    line = lines_with_label(ax, "gradient descent")[0]
    np.testing.assert_allclose(line.get_ydata(), np.maximum(paths["gd"].values, 1e-19))
    assert ax.get_yscale() == "log"


def test_training_curves_from_a_history_losses_and_metrics_apart():
    net = dl.MLP(1, [8], 1, rng=0)
    x, y = dl.data.sine(60, rng=0)
    history = dl.fit(net, x, y, loss="mse", epochs=4, verbose=0, validation_split=0.25, metrics=["mae"])
    fig = plot.training_curves(history)
    losses, metrics = fig.axes
    loss, val_loss = lines_with_label(losses, "loss")[0], lines_with_label(losses, "val_loss")[0]
    np.testing.assert_allclose(loss.get_ydata(), history["loss"])
    np.testing.assert_array_equal(loss.get_xdata(), [1, 2, 3, 4])
    assert val_loss.get_linestyle() == "--" and val_loss.get_color() == loss.get_color()
    assert {line.get_label() for line in metrics.lines} == {"mae", "val_mae"}


def test_training_curves_from_a_dict_on_a_given_axes():
    fig, ax = plots.figure()
    plot.training_curves({"loss": [1.0, 0.1, 0.001], "accuracy": [0.1, 0.5, 0.9]}, keys=["loss"], ax=ax)
    assert [line.get_label() for line in ax.lines] == ["loss"]
    with pytest.raises(KeyError, match="no 'val_loss'"):
        plot.training_curves({"loss": [1.0]}, keys=["val_loss"])


def test_curves_take_shared_or_own_x_values():
    ax = plot.curves({"a": [1.0, 2.0], "b": ([10.0, 20.0, 30.0], [3.0, 2.0, 1.0])}, x=[5.0, 6.0]).axes[0]
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), [5.0, 6.0])
    np.testing.assert_array_equal(ax.lines[1].get_xdata(), [10.0, 20.0, 30.0])


# ----------------------------------------------------------------------------- learned functions

def test_fitted_function_draws_the_network_and_its_exact_kinks():
    net = dl.MLP(1, [6, 6], 1, rng=3)
    ax = plot.fitted_function(net, target=dl.data.sine_function, data=dl.data.sine(50, rng=0)).axes[0]
    learned = lines_with_label(ax, "network")[0]
    np.testing.assert_allclose(learned.get_ydata(), net(learned.get_xdata().reshape(-1, 1))[:, 0])
    count = dl.count_linear_regions(net, [-1.0], [1.0])
    (kinks,) = [line for line in ax.lines if "linear pieces" in line.get_label()]
    assert f"({count} linear pieces)" in kinks.get_label()
    assert kinks.get_xdata().size == count - 1


def test_fitted_function_of_a_curved_network_has_no_kinks_and_a_plain_function_works():
    net = dl.MLP(1, [4], 1, activation="tanh", rng=0)
    ax = plot.fitted_function(net).axes[0]
    assert [line.get_label() for line in ax.lines] == ["network"]
    ax = plot.fitted_function(lambda x: 2 * x, label="2x", x_range=(0, 1)).axes[0]
    np.testing.assert_allclose(ax.lines[0].get_ydata(), 2 * ax.lines[0].get_xdata())
    with pytest.raises(ValueError, match="x_range"):
        plot.fitted_function(net, x_range=(1, 0))


def test_linear_regions_of_the_seeds_shallow_example():
    ax = plot.linear_regions(regions.shallow_example(), 0.0, 1.0).axes[0]
    assert ax.get_title() == "7 linear regions"
    (breakpoints,) = lines_with_label(ax, "breakpoints (exact)")
    assert breakpoints.get_xdata().size == 6


def test_function_map_and_fit_maps_show_values_and_their_error():
    net = dl.MLP(2, [5], 1, rng=0)
    ax = plot.function_map(net, resolution=7).axes[0]
    xs = np.linspace(-1, 1, 7)
    gx, gy = np.meshgrid(xs, xs)
    expected = net(np.column_stack([gx.ravel(), gy.ravel()]))[:, 0].reshape(7, 7)
    np.testing.assert_allclose(np.asarray(meshes(ax)[0].get_array()).reshape(7, 7), expected)
    fig = plot.fit_maps(net, dl.data.piecewise_2d_function, resolution=7, note="n")
    truth = dl.data.piecewise_2d_function(np.column_stack([gx.ravel(), gy.ravel()]))[:, 0].reshape(7, 7)
    error = np.asarray(meshes(fig.axes[2])[0].get_array()).reshape(7, 7)
    np.testing.assert_allclose(error, expected - truth)


def test_region_map_colours_every_region_of_the_grid():
    net = dl.MLP(2, [4], 1, rng=0)
    region = dl.linear_regions_2d(net, resolution=30)
    ax = plot.region_map(net, resolution=30).axes[0]
    image = ax.images[0].get_array()
    assert image.shape == (30, 30, 3)
    assert ax.get_title() == f"{region.count} regions"
    assert plot.region_map(region).axes[0].get_title() == ax.get_title()


# ----------------------------------------------------------------------------- contract

def test_every_public_function_is_documented_and_exported():
    assert dl.plot is plot
    for name in plot.__all__:
        function = getattr(plot, name)
        assert function.__doc__ and "Returns" in function.__doc__, name


def test_figures_display_in_a_notebook_without_pyplot():
    import pickle

    fig = plot.curves({"a": [1.0, 2.0]})
    png = fig._repr_png_()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png == plots.png_bytes(fig)
    assert isinstance(pickle.loads(pickle.dumps(fig)), Figure)


def test_without_matplotlib_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"pip install 'depthlab\[lab\]'"):
        plot.signal_std([1.0, 2.0])


def test_experiments_draw_with_dl_plot(monkeypatch):
    """init-variance's figure is drawn by plot.signal_std, one call per (depth, scheme)."""
    from depthlab.lab.experiments import init_variance

    calls = []
    original = plot.signal_std
    monkeypatch.setattr(plot, "signal_std", lambda *a, **k: calls.append(a) or original(*a, **k))
    config = init_variance.Config(depths=(2, 3), schemes=("1", "2/D"), repeats=2)
    rules = [init_variance.scheme(key) for key in config.schemes]
    measured = {d: {r.key: np.ones((2, d)) for r in rules} for d in config.depths}
    predicted = {d: {r.key: np.ones(d) for r in rules} for d in config.depths}
    fig = init_variance._forward_figure(config, rules, measured, predicted)
    assert len(calls) == 4
    assert len(fig.axes[0].lines) == 2 * (2 + 2)               # per scheme: 2 draws, markers, theory
