"""Learning-rate schedules: the same rates as torch.optim.lr_scheduler, step by step."""
import math

import numpy as np
import pytest
import torch

import depthlab as dl
from depthlab import optim

LRS = (0.1, 0.05)
SCHEDULES = [
    ("StepLR", {"step_size": 7, "gamma": 0.5}),
    ("StepLR", {"step_size": 1}),
    ("ExponentialLR", {"gamma": 0.95}),
    ("CosineAnnealingLR", {"T_max": 10}),
    ("CosineAnnealingLR", {"T_max": 7, "eta_min": 0.001}),
    ("CosineAnnealingLR", {"T_max": 1, "eta_min": 0.01}),
    ("LinearLR", {}),
    ("LinearLR", {"start_factor": 0.5, "end_factor": 0.1, "total_iters": 20}),
    ("LinearLR", {"start_factor": 1.0, "end_factor": 0.0, "total_iters": 30}),
]


def _pair(momentum=0.0):
    """The same two-group SGD in depthlab and in torch (lrs 0.1 and 0.05)."""
    params = [dl.Parameter(np.zeros(3)), dl.Parameter(np.zeros(2))]
    tensors = [torch.zeros(3, requires_grad=True), torch.zeros(2, requires_grad=True)]
    ours = optim.SGD([{"params": [params[0]], "lr": LRS[0]}, {"params": [params[1]], "lr": LRS[1]}],
                     momentum=momentum)
    theirs = torch.optim.SGD([{"params": [tensors[0]], "lr": LRS[0]}, {"params": [tensors[1]], "lr": LRS[1]}],
                             momentum=momentum)
    return ours, theirs


def _lrs(optimizer):
    return [group["lr"] for group in optimizer.param_groups]


@pytest.mark.parametrize(("name", "kwargs"), SCHEDULES, ids=[f"{n}-{k}" for n, k in SCHEDULES])
def test_schedule_matches_torch_over_60_steps(name, kwargs):
    ours, theirs = _pair()
    schedule = getattr(optim, name)(ours, **kwargs)
    reference = getattr(torch.optim.lr_scheduler, name)(theirs, **kwargs)
    assert [g["initial_lr"] for g in ours.param_groups] == list(LRS)
    np.testing.assert_allclose(_lrs(ours), _lrs(theirs), rtol=1e-12, atol=0)
    for _ in range(60):
        ours.step()
        theirs.step()
        schedule.step()
        reference.step()
        np.testing.assert_allclose(schedule.get_last_lr(), reference.get_last_lr(), rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(_lrs(ours), _lrs(theirs), rtol=1e-12, atol=1e-15)
    assert schedule.last_epoch == reference.last_epoch == 60


def test_cosine_annealing_follows_the_closed_form_in_its_first_half_period():
    ours, _ = _pair()
    schedule = optim.CosineAnnealingLR(ours, T_max=20, eta_min=0.01)
    for t in range(1, 21):
        schedule.step()
        expected = 0.01 + (0.1 - 0.01) * (1 + math.cos(math.pi * t / 20)) / 2
        assert schedule.get_last_lr()[0] == pytest.approx(expected, rel=1e-12)


PLATEAU = [
    {},
    {"patience": 2},
    {"patience": 0, "factor": 0.5},
    {"patience": 1, "cooldown": 3, "factor": 0.5},
    {"mode": "max", "patience": 2},
    {"threshold_mode": "abs", "threshold": 0.05, "patience": 1},
    {"mode": "max", "threshold_mode": "abs", "threshold": 0.05, "patience": 1},
    {"patience": 1, "min_lr": [0.02, 0.001], "factor": 0.5},
    {"patience": 1, "min_lr": 0.03, "factor": 0.5, "eps": 1e-3},
]


@pytest.mark.parametrize("kwargs", PLATEAU, ids=[str(k) for k in PLATEAU])
def test_reduce_lr_on_plateau_matches_torch(kwargs):
    rng = np.random.default_rng(7)
    # a loss that falls, stalls, wiggles and rises: every branch of the rule gets used
    metrics = np.concatenate([np.linspace(1.0, 0.5, 10), np.full(8, 0.5), 0.5 + 0.01 * rng.normal(size=20),
                              np.linspace(0.5, 0.9, 10), np.linspace(0.9, 0.2, 12)])
    ours, theirs = _pair()
    schedule = optim.ReduceLROnPlateau(ours, **kwargs)
    reference = torch.optim.lr_scheduler.ReduceLROnPlateau(theirs, **kwargs)
    changes = 0
    for metric in metrics:
        before = _lrs(ours)
        schedule.step(float(metric))
        reference.step(float(metric))
        changes += before != _lrs(ours)
        assert _lrs(ours) == pytest.approx(_lrs(theirs), rel=1e-12)
        assert schedule.get_last_lr() == pytest.approx(reference.get_last_lr(), rel=1e-12)
        assert (schedule.num_bad_epochs, schedule.cooldown_counter) == (
            reference.num_bad_epochs, reference.cooldown_counter)
    assert changes > 0


@pytest.mark.parametrize(("name", "kwargs"), [SCHEDULES[0], SCHEDULES[3], SCHEDULES[7]])
def test_state_dict_resumes_the_same_schedule(name, kwargs):
    straight, _ = _pair(momentum=0.9)
    uninterrupted = getattr(optim, name)(straight, **kwargs)
    for _ in range(40):
        uninterrupted.step()

    first, _ = _pair(momentum=0.9)
    schedule = getattr(optim, name)(first, **kwargs)
    for _ in range(15):
        schedule.step()
    saved_optimizer, saved_schedule = first.state_dict(), schedule.state_dict()
    second, _ = _pair(momentum=0.9)
    resumed = getattr(optim, name)(second, **kwargs)  # build the schedule first, then load (as in torch)
    second.load_state_dict(saved_optimizer)
    resumed.load_state_dict(saved_schedule)
    for _ in range(25):
        resumed.step()
    assert resumed.get_last_lr() == uninterrupted.get_last_lr()
    assert _lrs(second) == _lrs(straight)


def test_plateau_state_dict_round_trip():
    ours, _ = _pair()
    schedule = optim.ReduceLROnPlateau(ours, patience=1)
    for metric in (1.0, 0.9, 0.95, 0.97):
        schedule.step(metric)
    saved = schedule.state_dict()
    other = optim.ReduceLROnPlateau(_pair()[0], patience=1)
    other.load_state_dict(saved)
    assert (other.best, other.num_bad_epochs, other.last_epoch) == (0.9, 0, 4)


def _opt():
    return _pair()[0]


BAD_INPUTS = [
    (lambda: optim.StepLR(_opt(), step_size=0), ValueError, r"step_size must be >= 1"),
    (lambda: optim.StepLR(_opt(), step_size=1.5), TypeError, r"step_size must be an int"),
    (lambda: optim.StepLR(_opt(), step_size=2, gamma=-0.5), ValueError, r"gamma must be in"),
    (lambda: optim.ExponentialLR(_opt(), gamma=float("nan")), ValueError, r"gamma must be finite"),
    (lambda: optim.CosineAnnealingLR(_opt(), T_max=0), ValueError, r"T_max must be >= 1"),
    (lambda: optim.CosineAnnealingLR(_opt(), T_max=5, eta_min=-1), ValueError, r"eta_min must be in"),
    (lambda: optim.LinearLR(_opt(), start_factor=0), ValueError, r"Starting multiplicative factor"),
    (lambda: optim.LinearLR(_opt(), end_factor=1.5), ValueError, r"Ending multiplicative factor"),
    (lambda: optim.LinearLR(_opt(), total_iters=0), ValueError, r"total_iters must be >= 1"),
    (lambda: optim.StepLR(torch.optim.SGD([torch.zeros(1, requires_grad=True)]), 2), TypeError,
     r"depthlab Optimizer"),
    (lambda: optim.ReduceLROnPlateau([1, 2]), TypeError, r"depthlab Optimizer"),
    (lambda: optim.ReduceLROnPlateau(_opt(), factor=1.0), ValueError, r"Factor should be < 1.0"),
    (lambda: optim.ReduceLROnPlateau(_opt(), mode="avg"), ValueError, r"mode must be 'min' or 'max'"),
    (lambda: optim.ReduceLROnPlateau(_opt(), threshold_mode="pct"), ValueError, r"threshold_mode must be"),
    (lambda: optim.ReduceLROnPlateau(_opt(), min_lr=[0.1]), ValueError, r"expected 2 min_lrs"),
    (lambda: optim.ReduceLROnPlateau(_opt(), patience=-1), ValueError, r"patience must be >= 0"),
    (lambda: optim.ReduceLROnPlateau(_opt()).step(float("nan")), ValueError, r"metric is NaN"),
    (lambda: optim.ReduceLROnPlateau(_opt()).step("low"), TypeError, r"metric must be a real number"),
    (lambda: optim.StepLR(_opt(), 2).load_state_dict({"gamma_": 1}), ValueError, r"does not have"),
]


@pytest.mark.parametrize(("build", "error", "message"), BAD_INPUTS)
def test_bad_inputs(build, error, message):
    with pytest.raises(error, match=message):
        build()


def test_plateau_accepts_numpy_scalars_and_zero_dim_arrays():
    schedule = optim.ReduceLROnPlateau(_opt(), patience=0)
    schedule.step(np.float32(1.0))
    schedule.step(np.array(2.0))
    assert schedule.get_last_lr() == pytest.approx([0.01, 0.005])


@pytest.mark.parametrize("make, key, value, error", [
    (lambda o: optim.StepLR(o, 2), "last_epoch", "x", TypeError),
    (lambda o: optim.StepLR(o, 2), "step_size", 0, ValueError),
    (lambda o: optim.ExponentialLR(o, 0.5), "gamma", float("nan"), ValueError),
    (lambda o: optim.CosineAnnealingLR(o, 4), "base_lrs", ["a"], TypeError),
    (lambda o: optim.LinearLR(o), "start_factor", 2.0, ValueError),
    (lambda o: optim.ReduceLROnPlateau(o), "mode", "Min", ValueError),
    (lambda o: optim.ReduceLROnPlateau(o), "patience", -1, ValueError),
])
def test_load_state_dict_checks_values_and_a_refused_dict_changes_nothing(make, key, value, error):
    schedule = make(_opt())
    before = schedule.state_dict()
    saved = dict(before, **{key: value})
    with pytest.raises(error, match=key):
        schedule.load_state_dict(saved)
    assert schedule.state_dict() == before


def test_a_group_added_after_the_schedule_is_scheduled_from_its_own_rate():
    opt = optim.SGD([dl.Parameter(np.ones(1))], lr=1.0)
    torch_opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    ours, theirs = optim.CosineAnnealingLR(opt, T_max=2), torch.optim.lr_scheduler.CosineAnnealingLR(torch_opt, 2)
    opt.add_param_group({"params": [dl.Parameter(np.ones(1))], "lr": 0.5})
    for _ in range(6):  # through the minimum, where the rate is rebuilt from the base rates
        opt.step()
        torch_opt.step()
        ours.step()
        theirs.step()
        assert opt.param_groups[0]["lr"] == pytest.approx(torch_opt.param_groups[0]["lr"], rel=1e-12)
        assert opt.param_groups[1]["lr"] == pytest.approx(0.5 * torch_opt.param_groups[0]["lr"], rel=1e-12)
    assert ours.state_dict()["base_lrs"] == [1.0, 0.5]


@pytest.mark.parametrize("make, theirs", [
    (lambda o, e: optim.StepLR(o, 2, last_epoch=e), lambda o, e: torch.optim.lr_scheduler.StepLR(o, 2, last_epoch=e)),
    (lambda o, e: optim.CosineAnnealingLR(o, 4, last_epoch=e),
     lambda o, e: torch.optim.lr_scheduler.CosineAnnealingLR(o, 4, last_epoch=e)),
    (lambda o, e: optim.LinearLR(o, 0.5, 0.1, 3, last_epoch=e),
     lambda o, e: torch.optim.lr_scheduler.LinearLR(o, 0.5, 0.1, 3, last_epoch=e)),
])
@pytest.mark.parametrize("last_epoch", [-1, 0, 3])
def test_last_epoch_resumes_a_schedule_as_pytorch_does(make, theirs, last_epoch):
    ours_opt = optim.SGD([{"params": [dl.Parameter(np.zeros(1))], "lr": 1.0, "initial_lr": 2.0}])
    torch_opt = torch.optim.SGD([{"params": [torch.zeros(1, requires_grad=True)], "lr": 1.0, "initial_lr": 2.0}])
    ours, reference = make(ours_opt, last_epoch), theirs(torch_opt, last_epoch)
    for _ in range(6):
        assert ours_opt.param_groups[0]["lr"] == pytest.approx(torch_opt.param_groups[0]["lr"], rel=1e-12, abs=0)
        torch_opt.step()
        ours.step()
        reference.step()
    assert ours.last_epoch == reference.last_epoch


def test_last_epoch_without_initial_lr_or_of_the_wrong_type_is_refused():
    with pytest.raises(ValueError, match="initial_lr"):
        optim.StepLR(optim.SGD([dl.Parameter(np.zeros(1))]), 2, last_epoch=3)
    with pytest.raises(TypeError, match="last_epoch"):
        optim.StepLR(optim.SGD([dl.Parameter(np.zeros(1))]), 2, last_epoch=1.0)
    with pytest.raises(ValueError, match="last_epoch"):
        optim.StepLR(optim.SGD([dl.Parameter(np.zeros(1))]), 2, last_epoch=-2)
