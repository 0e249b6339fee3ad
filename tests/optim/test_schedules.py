"""Tests of the logarithmic step size (Shamaee et al. 2025) and the schedule registry.

No reference implementation exists (spec section 6), so the tests check the closed form, the warm
restarts, the LRScheduler contract (state_dict resume, any optimizer, per-group base rates) and the
paper's claim: the ``O(1/sqrt(T))`` rate for smooth non-convex SGD with ``eta_0 = c ln T / sqrt(T)``.
"""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest
import torch

import descend.optim as do
from descend.optim import schedules
from descend.optim.schedules import LogarithmicLR, cycle_position, log_step_factor


def _sgd(lr: float = 1.0, n_groups: int = 1) -> torch.optim.SGD:
    groups = [{"params": [torch.nn.Parameter(torch.zeros(2))], "lr": lr * (i + 1)} for i in range(n_groups)]
    return torch.optim.SGD(groups, lr=lr)


def _lrs(opt: torch.optim.Optimizer, sched: LogarithmicLR, steps: int, group: int = 0) -> list[float]:
    out = []
    for _ in range(steps):
        out.append(float(opt.param_groups[group]["lr"]))
        opt.step()  # no gradients: a no-op that keeps torch's call-order check quiet
        sched.step()
    return out


# ------------------------------------------------------------------------------------------------ values


@pytest.mark.parametrize("T", [2, 3, 16, 100, 1000])
def test_closed_form_values(T: int) -> None:
    opt = _sgd(0.3)
    lrs = _lrs(opt, LogarithmicLR(opt, T), T)
    expected = [0.3 * (1 - math.log(t) / math.log(T)) for t in range(1, T + 1)]
    assert lrs == pytest.approx(expected, rel=1e-15, abs=1e-15)
    assert lrs[0] == 0.3  # eta_1 = eta_0
    assert lrs[-1] == pytest.approx(0.0, abs=1e-15)  # eta_T = 0: the last step of a cycle is a zero step
    assert all(a > b for a, b in itertools.pairwise(lrs))  # strictly decreasing within a cycle


@pytest.mark.parametrize("T", [4, 16, 100, 10000])
def test_half_step_at_sqrt_T(T: int) -> None:
    t = math.isqrt(T)
    assert log_step_factor(t, T) == pytest.approx(0.5, abs=1e-15)


def test_eta_min_and_tensor_lr() -> None:
    opt = _sgd(1.0)
    lrs = _lrs(opt, LogarithmicLR(opt, 10, eta_min=0.1), 10)
    assert lrs[0] == 1.0 and lrs[-1] == pytest.approx(0.1) and lrs[math.isqrt(9) - 1] > 0.55
    w = torch.nn.Parameter(torch.zeros(2))
    topt = torch.optim.SGD([w], lr=torch.tensor(0.5))
    sched = LogarithmicLR(topt, 4)
    topt.step()
    sched.step()
    assert isinstance(topt.param_groups[0]["lr"], torch.Tensor)
    assert float(topt.param_groups[0]["lr"]) == pytest.approx(0.5 * (1 - math.log(2) / math.log(4)))


def test_cycle_of_length_one_is_constant() -> None:
    # ln T = 0: eta_1 = eta_0 wins, so T_0 = 1 (no T_mult) is a constant step
    opt = _sgd(0.7)
    assert _lrs(opt, LogarithmicLR(opt, 1), 5) == [0.7] * 5
    assert log_step_factor(1, 1) == 1.0


# ---------------------------------------------------------------------------------------------- restarts


def test_warm_restarts_constant_length() -> None:
    opt = _sgd(1.0)
    lrs = _lrs(opt, LogarithmicLR(opt, 5), 15)
    assert lrs[0:5] == lrs[5:10] == lrs[10:15]
    assert lrs[5] == 1.0 and lrs[4] == pytest.approx(0.0, abs=1e-15)


def test_warm_restarts_growing_cycles() -> None:
    opt = _sgd(1.0)
    lrs = _lrs(opt, LogarithmicLR(opt, 3, T_mult=2), 3 + 6 + 12 + 1)
    starts = [i for i, lr in enumerate(lrs) if lr == 1.0]
    assert starts == [0, 3, 9, 21]
    ends = [i for i, lr in enumerate(lrs) if abs(lr) < 1e-15]
    assert ends == [2, 8, 20]
    assert lrs[9:21] == pytest.approx([1 - math.log(t) / math.log(12) for t in range(1, 13)], abs=1e-15)
    assert [cycle_position(k, 3, 2) for k in (0, 2, 3, 8, 9, 20, 21)] == [
        (1, 3), (3, 3), (1, 6), (6, 6), (1, 12), (12, 12), (1, 24)]


def test_large_step_index_is_exact() -> None:
    # integer cycle bookkeeping: no floating-point log of the step index
    T_0, T_mult = 7, 3
    start = sum(T_0 * T_mult**i for i in range(12))
    assert cycle_position(start - 1, T_0, T_mult) == (T_0 * T_mult**11, T_0 * T_mult**11)
    assert cycle_position(start, T_0, T_mult) == (1, T_0 * T_mult**12)


# ----------------------------------------------------------------------------------- scheduler contract


def test_per_group_base_lrs_and_any_optimizer() -> None:
    opt = _sgd(0.1, n_groups=3)
    sched = LogarithmicLR(opt, 8)
    for _ in range(3):
        opt.step()
        sched.step()
    f = log_step_factor(4, 8)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.1 * f, 0.2 * f, 0.3 * f], rel=1e-15)

    # with Adam and with a registered descend optimizer, parameters move by the scheduled amount
    for make in (lambda p: torch.optim.Adam(p, lr=0.01), lambda p: do.create("adamw", p, lr=0.01)):
        w = torch.nn.Parameter(torch.ones(4))
        opt = make([w])
        sched = LogarithmicLR(opt, 4)
        for _ in range(4):
            w.grad = torch.ones(4)
            opt.step()
            sched.step()
        assert float(opt.param_groups[0]["lr"]) == 0.01  # restarted
        assert torch.all(w < 1)


def test_state_dict_resume_is_exact() -> None:
    def make() -> tuple[torch.nn.Parameter, torch.optim.SGD, LogarithmicLR]:
        w = torch.nn.Parameter(torch.linspace(-1, 1, 5, dtype=torch.float64))
        opt = torch.optim.SGD([w], lr=0.2, momentum=0.9)
        return w, opt, LogarithmicLR(opt, 6, T_mult=2)

    def run(w: torch.nn.Parameter, opt: torch.optim.SGD, sched: LogarithmicLR, steps: int) -> list[float]:
        lrs = []
        for _ in range(steps):
            w.grad = w.detach() ** 3 - w.detach()
            opt.step()
            sched.step()
            lrs.append(sched.get_last_lr()[0])
        return lrs

    w_a, opt_a, sched_a = make()
    lrs_a = run(w_a, opt_a, sched_a, 20)

    w_b, opt_b, sched_b = make()
    lrs_b = run(w_b, opt_b, sched_b, 9)
    saved = (opt_b.state_dict(), sched_b.state_dict(), w_b.detach().clone())
    w_c, opt_c, sched_c = make()
    sched_c.load_state_dict(saved[1])
    opt_c.load_state_dict(saved[0])
    with torch.no_grad():
        w_c.copy_(saved[2])
    lrs_c = run(w_c, opt_c, sched_c, 11)
    assert lrs_b + lrs_c == lrs_a
    assert torch.equal(w_c, w_a)


def test_resume_via_last_epoch() -> None:
    opt = _sgd(1.0)
    full = _lrs(opt, LogarithmicLR(opt, 5, T_mult=2), 12)
    opt2 = _sgd(1.0)
    opt2.param_groups[0]["initial_lr"] = 1.0
    sched = LogarithmicLR(opt2, 5, T_mult=2, last_epoch=6)  # constructor takes one step: last_epoch 7
    assert _lrs(opt2, sched, 5) == full[7:]


def test_no_call_order_warning_in_normal_use() -> None:
    opt = _sgd(1.0)
    sched = LogarithmicLR(opt, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(4):
            opt.step()
            sched.step()


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"T_0": 0}, "T_0"), ({"T_0": 2.5}, "T_0"), ({"T_0": True}, "T_0"),
    ({"T_0": 4, "T_mult": 0}, "T_mult"), ({"T_0": 4, "T_mult": 1.5}, "T_mult"),
    ({"T_0": 4, "eta_min": -0.1}, "eta_min"), ({"T_0": 4, "eta_min": float("nan")}, "eta_min"),
])
def test_invalid_arguments(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        LogarithmicLR(_sgd(), **kwargs)


def test_log_step_factor_rejects_out_of_range() -> None:
    with pytest.raises(ValueError, match="t"):
        log_step_factor(0, 5)
    with pytest.raises(ValueError, match="t"):
        log_step_factor(6, 5)


# -------------------------------------------------------------------------------------------- registry


def test_registry() -> None:
    assert "logarithmic" in schedules.available()
    spec = schedules.get("logarithmic")
    assert set(spec.search_space) <= set(spec.defaults)
    assert "logarithmic" not in do.available()  # a schedule, not an optimizer

    opt = _sgd(0.5)
    lrs = _lrs(opt, schedules.create("logarithmic", opt, total_steps=50), 50)
    assert lrs[0] == 0.5 and lrs[-1] == pytest.approx(0.0, abs=1e-15)

    opt = _sgd(0.5)
    lrs = _lrs(opt, schedules.create("logarithmic", opt, total_steps=60, cycles=3), 60)
    assert [i for i, lr in enumerate(lrs) if lr == 0.5] == [0, 20, 40]

    opt = _sgd(0.5)
    sched = schedules.create("logarithmic", opt, total_steps=70, cycles=3, T_mult=2)  # 10 + 20 + 40
    lrs = _lrs(opt, sched, 70)
    assert [i for i, lr in enumerate(lrs) if lr == 0.5] == [0, 10, 30] and lrs[-1] == pytest.approx(0.0)

    with pytest.raises(ValueError, match="total_steps"):
        schedules.create("logarithmic", _sgd(), total_steps=0)
    with pytest.raises(ValueError, match="cycles"):
        schedules.create("logarithmic", _sgd(), total_steps=10, cycles=0)
    with pytest.raises(KeyError):
        schedules.get("nope")


# ------------------------------------------------------------------------------------- the paper's claim
#
# f(x) = sum_i x_i^2 / 2 + cos(1.5 x_i): smooth (L = 1 + 1.5^2 = 3.25), non-convex (f'' >= -1.25), bounded
# below.  Stochastic gradients: grad f(x) + N(0, sigma^2 I / d) (so E||noise||^2 = sigma^2).  R independent
# runs are simulated at once in NumPy (fast on a loaded 2-core machine) with the step sizes produced by
# LogarithmicLR on a torch optimizer.

_L, _SIGMA, _R, _D = 1 + 1.5**2, 1.0, 128, 4


def _grad(x: np.ndarray) -> np.ndarray:
    return x - 1.5 * np.sin(1.5 * x)


def _f(x: np.ndarray) -> np.ndarray:
    return (0.5 * x * x + np.cos(1.5 * x)).sum(-1)


def _sgd_run(T: int, eta0: float, schedule: str, seed: int = 0) -> dict[str, float]:
    """Run R independent SGD runs for T steps; return the theorem's quantities (averaged over runs)."""
    if schedule == "log":
        opt = _sgd(eta0)
        etas = schedules.lr_values(opt, LogarithmicLR(opt, T), T)
    else:
        etas = [eta0] * T
    rng = np.random.default_rng(seed)
    x = 3.0 * rng.standard_normal((_R, _D))
    f1 = float(_f(x).mean())
    weighted = 0.0
    for eta in etas:
        g = _grad(x)
        weighted += eta * float((g * g).sum(-1).mean())
        x -= eta * (g + _SIGMA / math.sqrt(_D) * rng.standard_normal((_R, _D)))
    g = _grad(x)
    grid = np.linspace(-4, 4, 80001)
    f_inf = _D * float((0.5 * grid**2 + np.cos(1.5 * grid)).min())
    weights, sq_weights = math.fsum(etas), math.fsum(e * e for e in etas)
    return {
        "weighted": weighted / weights,  # sum eta_t E||grad f(x_t)||^2 / sum eta_t (what the theorem bounds)
        "bound": (2 * (f1 - f_inf) + _L * _SIGMA**2 * sq_weights) / weights,  # standard bound, eta_t <= 1/L
        "final": float((g * g).sum(-1).mean()),  # E||grad f(x_{T+1})||^2
    }


def _slope(Ts: list[int], values: list[float]) -> float:
    return float(np.polyfit(np.log(Ts), np.log(values), 1)[0])


def test_paper_claim_one_over_sqrt_T_rate() -> None:
    Ts = [100, 400, 1600, 6400]
    c = 0.5  # eta_0 = c ln T / sqrt(T) <= 1/L for all T here
    runs = [_sgd_run(T, c * math.log(T) / math.sqrt(T), "log") for T in Ts]
    weighted = [r["weighted"] for r in runs]
    # the bound holds (eta_t <= 1/L) ...
    assert all(r["weighted"] <= r["bound"] for r in runs), runs
    # ... and the measured rate is the claimed O(1/sqrt(T)): fitted log-log slope about -1/2
    slope = _slope(Ts, weighted)
    assert -0.7 <= slope <= -0.35, (slope, weighted)
    # the last iterate (which the schedule's small late steps favour) improves at least as fast
    assert _slope(Ts, [r["final"] for r in runs]) <= -0.5

    # a constant step (same eta for every T) stalls at its noise floor: no rate in T
    const = [_sgd_run(T, 0.05, "constant") for T in (400, 6400)]
    assert abs(_slope([400, 6400], [r["final"] for r in const])) < 0.15
    assert runs[-1]["final"] < 0.1 * const[-1]["final"]
