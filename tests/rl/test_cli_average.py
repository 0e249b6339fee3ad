"""``descend rl run --env tabular-average``: the average-reward methods through the CLI (stored curves with the
exact average reward and cumulative regret; bad options exit 2 with one line, before anything is stored)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from descend.cli import app
from descend.results import ResultStore
from descend.rl import AverageRewardHessianPG, AverageRewardIGT, Power, TabularMDP, TabularSoftmaxPolicy
from descend.rl.study import regret_slope, run_average_curve

runner = CliRunner()


def test_average_methods_store_exact_curves(tmp_path: Path) -> None:
    db = tmp_path / "avg.db"
    args = ["rl", "run", "--env", "tabular-average", "--seeds", "1", "--budget", "24", "--eval-every", "4",
            "--epoch-length", "50", "--window", "5", "--storage", str(db)]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    recs = ResultStore(db).records("rl", study="tabular-average")
    assert sorted(r.method for r in recs) == ["avg_hessian", "avg_igt"]        # both by default
    with_mdp = TabularMDP.random(5, 2, gamma=1.0, horizon=1, seed=0)
    rho_star = with_mdp.optimal_average_reward()
    for r in recs:
        # the default --lr is not stored: runs stored before the option existed still match
        assert r.setting["defaults"] == {"epoch_length": 50, "window": 5}
        assert r.curve["trajectories"] == [4.0, 8.0, 12.0, 16.0, 20.0, 24.0]  # epochs
        # 50 steps per epoch; the Hessian method plays 2 epochs per iteration (1 at the first), so a point lands
        # at the first iteration end at or past its epoch count, as the discounted curves do for 2-trajectory HARPG
        expected = [200.0 * k + (0.0 if r.method == "avg_igt" else 50.0) for k in range(1, 7)]
        assert r.curve["env_steps"] == expected
        assert all(0.0 < rho <= rho_star + 1e-12 for rho in r.curve["return"])
        assert all(b >= a for a, b in zip(r.curve["regret"], r.curve["regret"][1:], strict=False))
        assert r.summary["regret"] == r.curve["regret"][-1]
        assert r.summary["regret_slope"] == regret_slope(r.curve) is not None   # fit over the points ≥ 10³ steps
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "0 runs added" in again.output
    rep = runner.invoke(app, ["rl", "report", "--storage", str(db), "--out", str(tmp_path / "r.html"),
                              "--format", "csv"])  # csv: the header is not wrapped by a terminal-width table
    assert rep.exit_code == 0 and "regret slope (median)" in rep.output.splitlines()[0], rep.output


@pytest.mark.parametrize("cls, name", [(AverageRewardIGT, "avg_igt"), (AverageRewardHessianPG, "avg_hessian")])
def test_curve_is_the_algorithm_run(cls: type, name: str) -> None:
    """The CLI's curve is the algorithm's own run: same regret (bitwise) at the same seed and sizes."""
    curve = run_average_curve(name, seed=2, budget=10, eval_every=10, epoch_length=40, window=4)
    alg = cls(TabularSoftmaxPolicy(5, 2), TabularMDP.random(5, 2, gamma=1.0, horizon=1, seed=0),
              epoch_length=40, window=4, seed=2)
    alg.run(400)
    assert curve["regret"] == [alg.regret] and curve["env_steps"] == [float(alg.steps)]


def test_lr_scales_the_step_and_is_stored(tmp_path: Path) -> None:
    """``--lr 2.5``: the stored run is the algorithm's own run with ``γ_k = 2.5 · 2/(k+2)`` (bitwise), the setting
    records it, and it is a different stored setting from the default one (so both can live in one store)."""
    db = tmp_path / "lr.db"
    base = ["rl", "run", "--env", "tabular-average", "--methods", "avg_igt", "--seeds", "1", "--budget", "6",
            "--eval-every", "6", "--epoch-length", "40", "--window", "4", "--storage", str(db)]
    res = runner.invoke(app, [*base, "--lr", "2.5"])
    assert res.exit_code == 0, res.output
    (rec,) = ResultStore(db).records("rl", study="tabular-average")
    assert rec.setting["defaults"] == {"epoch_length": 40, "window": 4, "lr": 2.5}
    alg = AverageRewardIGT(TabularSoftmaxPolicy(5, 2), TabularMDP.random(5, 2, gamma=1.0, horizon=1, seed=0),
                           epoch_length=40, window=4, lr=Power(2.5, 1.0), seed=0)
    alg.run(6 * 40)
    assert rec.curve["regret"] == [alg.regret]
    default = AverageRewardIGT(TabularSoftmaxPolicy(5, 2), TabularMDP.random(5, 2, gamma=1.0, horizon=1, seed=0),
                               epoch_length=40, window=4, seed=0)
    default.run(6 * 40)
    assert default.regret != alg.regret          # the option changes the run (the first step already differs)
    again = runner.invoke(app, base)             # default --lr: a new setting, run and stored beside it
    assert again.exit_code == 0 and "1 runs added" in again.output, again.output
    stored = ResultStore(db).records("rl", study="tabular-average")
    assert sorted(r.setting["defaults"].get("lr", 1.0) for r in stored) == [1.0, 2.5]


def test_regret_slope_is_the_log_log_fit() -> None:
    curve = {"env_steps": [10.0, 1e3, 1e4, 1e5], "regret": [1.0, 2.0, 2.0 * 10 ** 0.6, 2.0 * 10 ** 1.2]}
    slope = regret_slope(curve)
    # an exact power law from 10³ on (the 10-step point is left out): the fit is exact up to round-off
    assert slope is not None and math.isclose(slope, 0.6, rel_tol=1e-12)
    assert regret_slope({"env_steps": [1e3], "regret": [1.0]}) is None


@pytest.mark.parametrize("extra, message", [
    (["--env", "tabular-average", "--methods", "n_pg_igt"], "--env tabular-average runs only avg_igt, avg_hessian"),
    (["--env", "tabular", "--methods", "avg_igt"], "--methods avg_igt: needs --env tabular-average"),
    (["--env", "tabular", "--epoch-length", "100"],
     "--epoch-length and --window apply only to --env tabular-average"),
    (["--env", "tabular-average", "--epoch-length", "1"], "--epoch-length must be ≥ 2"),
    (["--env", "tabular-average", "--window", "0"], "--window must be in [1, --epoch-length=200]"),
    (["--env", "tabular-average", "--epoch-length", "20", "--window", "21"],
     "--window must be in [1, --epoch-length=20]"),
    (["--env", "tabular-average", "--lr", "0"], "--lr must be a finite number > 0, got 0.0"),
    (["--env", "tabular-average", "--lr", "-1"], "--lr must be a finite number > 0, got -1.0"),
    (["--env", "tabular-average", "--lr", "nan"], "--lr must be a finite number > 0, got nan"),
    (["--env", "tabular-average", "--lr", "inf"], "--lr must be a finite number > 0, got inf"),
    (["--env", "tabular", "--lr", "2"], "--lr applies only to --env tabular-average"),
    (["--env", "tabular-average", "--methods", ","], "--methods must name at least one of"),
])
def test_bad_average_options_exit_2(tmp_path: Path, extra: list[str], message: str) -> None:
    res = runner.invoke(app, ["rl", "run", "--storage", str(tmp_path / "x.db"), *extra])
    assert res.exit_code == 2, res.output
    assert message in res.output and "Traceback" not in res.output
    assert not (tmp_path / "x.db").exists()
