"""`depthlab theory` and `depthlab probe` with values at the theory's edges: a table or one line, never a traceback."""
import pytest

from depthlab.lab import cli


def test_theory_of_identity_with_a_bias_tabulates_its_ordered_rows(capsys):
    # identity with σ_b² > 0 has no fixed point at σ_w² = 1 but q* = σ_b² / (1 − σ_w²) below it
    assert cli.main(["theory", "--activation", "identity", "--bias-variance", "0.5"]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()
            if line.strip() and line.split()[0] in ("0.5", "1")}
    assert rows["0.5"][1:3] == ["ordered", "1"] and rows["1"][1] == "explodes"


@pytest.mark.parametrize("activation", ["gelu", "elu"])
def test_theory_of_a_weight_variance_whose_fixed_point_overflows_says_so(capsys, activation):
    assert cli.main(["theory", "--activation", activation, "--weight-variance", "1e308"]) == 0
    out = capsys.readouterr().out
    assert "overflow" in out and "beyond the largest float64" in out


def test_theory_of_a_relu_bias_beyond_float64_is_one_line(capsys):
    assert cli.main(["theory", "--activation", "relu", "--bias-variance", "1e308"]) == 2
    err = capsys.readouterr().err
    assert "beyond the largest float64" in err and len(err.strip().splitlines()) == 1
