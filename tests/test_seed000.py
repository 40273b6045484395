"""The seed notebook 000 reproduced exactly, from the weights its own init_params draws."""
import numpy as np
import pytest

import depthlab as dl
from depthlab.nn import seeds


@pytest.mark.parametrize("K, D, sigma2", list(seeds.PRINTED_FORWARD))
def test_forward_std_of_hidden_units_matches_the_printed_table(K, D, sigma2):
    setup = seeds.init_variance_setup(K, D, sigma2)
    net = dl.Sequential.from_arrays(setup.weights, setup.biases, activation="relu")
    trace = net.forward(seeds.forward_data(setup, 1000), record=True)
    stds = [np.std(h) for h in trace.activations[1:]]
    printed = seeds.PRINTED_FORWARD[(K, D, sigma2)]
    assert len(stds) == K
    # equal to the printed digits (%3.3f: ±0.0005), and to 12 significant digits where the
    # printout shows more (the last bits differ with the order of the matrix product's sums)
    for s, p in zip(stds, printed):
        assert s == pytest.approx(p, rel=1e-12, abs=5e-4)


def test_backward_std_of_dl_df_matches_the_printed_table():
    setup = seeds.init_variance_setup(50, 80, 1.0)
    net = dl.Sequential.from_arrays(setup.weights, setup.biases, activation="relu")
    x = seeds.backward_data(setup, 100)
    trace = net.forward(x, record=True)
    grads = net.backward(dl.losses.sum_squares.grad(trace.output, np.zeros((100, 1))))
    for layer, printed in seeds.PRINTED_BACKWARD[(50, 80, 1.0)].items():
        assert np.std(grads.preactivations[layer]) == pytest.approx(printed, rel=1e-12)


def test_seed_setup_leaves_global_numpy_state_alone():
    np.random.seed(7)
    expected = np.random.normal()
    np.random.seed(7)
    seeds.init_variance_setup(5, 8, 1.0)
    assert np.random.normal() == expected
