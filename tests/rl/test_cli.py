"""``descend rl run | report``: stored curves, idempotent reruns, one-line errors with exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from descend.cli import app
from descend.results import ResultStore

runner = CliRunner()


def test_run_stores_curves_and_report(tmp_path: Path) -> None:
    db = tmp_path / "rl.db"
    args = ["rl", "run", "--env", "tabular", "--methods", "n_pg_igt,gpomdp", "--seeds", "2", "--budget", "40",
            "--eval-every", "10", "--storage", str(db)]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    recs = ResultStore(db).records("rl", study="tabular")
    assert sorted((r.method, r.seed) for r in recs) == [("gpomdp", 0), ("gpomdp", 1), ("n_pg_igt", 0),
                                                        ("n_pg_igt", 1)]
    for r in recs:
        assert r.curve["trajectories"] == [10.0, 20.0, 30.0, 40.0]
        assert r.curve["env_steps"] == [500.0, 1000.0, 1500.0, 2000.0]   # H = 50 steps per trajectory
        assert all(0.0 < j < 10.0 for j in r.curve["return"])          # exact J ∈ (0, 1/(1−γ))
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "0 runs added" in again.output
    out = tmp_path / "r.html"
    rep = runner.invoke(app, ["rl", "report", "--storage", str(db), "--out", str(out)])
    assert rep.exit_code == 0, rep.output
    assert out.read_text().count("<img") >= 1


def test_report_keeps_runs_of_different_settings_apart(tmp_path: Path) -> None:
    """Runs of one method at two budgets, or at one budget with two evaluation intervals, are separate rows (and
    curves) with distinct labels, not one row pooling their seeds; ``method`` stays the method's name."""
    from descend.rl.study import report_rows

    db = tmp_path / "rl.db"
    for budget, every in (("20", "10"), ("40", "10"), ("40", "20")):
        res = runner.invoke(app, ["rl", "run", "--env", "tabular", "--methods", "gpomdp", "--seeds", "2",
                                  "--budget", budget, "--eval-every", every, "--storage", str(db), "--quiet"])
        assert res.exit_code == 0, res.output
    rows = report_rows(ResultStore(db), "tabular")
    assert [(r["method"], r["setting"], r["budget"], r["every"], r["seeds"]) for r in rows] == [
        ("gpomdp", "gpomdp (budget 20, every 10)", 20, 10, 2), ("gpomdp", "gpomdp (budget 40, every 10)", 40, 10, 2),
        ("gpomdp", "gpomdp (budget 40, every 20)", 40, 20, 2)]
    rep = runner.invoke(app, ["rl", "report", "--storage", str(db), "--out", str(tmp_path / "r.html")])
    assert rep.exit_code == 0, rep.output
    assert "gpomdp (budget 40, every 20)" in (tmp_path / "r.html").read_text()   # the printed table wraps labels


def test_same_seed_same_curve(tmp_path: Path) -> None:
    from descend.rl.study import run_curve

    a = run_curve("tabular", "n_harpg", seed=3, budget=30, eval_every=10)
    b = run_curve("tabular", "n_harpg", seed=3, budget=30, eval_every=10)
    c = run_curve("tabular", "n_harpg", seed=4, budget=30, eval_every=10)
    assert a == b and a != c


@pytest.mark.parametrize("extra, message", [
    (["--methods", "sgd"], "--methods must be among"),
    (["--algos", "sgd"], "--methods must be among"),  # the old name, kept as a hidden alias
    (["--seeds", "0"], "--seeds must be ≥ 1"),
    (["--budget", "0"], "--budget must be ≥ 1"),
    (["--env", "NoSuchEnv-v9"], "--env must be 'tabular' or a registered Gymnasium id"),
    (["--env", "tabular", "--methods", "ppo"], "--methods ppo needs a Gymnasium --env"),
])
def test_bad_input_is_one_line_exit_2(tmp_path: Path, extra: list[str], message: str) -> None:
    res = runner.invoke(app, ["rl", "run", "--storage", str(tmp_path / "x.db"), *extra])
    assert res.exit_code == 2
    assert message in res.output and "Traceback" not in res.output
    assert not (tmp_path / "x.db").exists() or not ResultStore(tmp_path / "x.db").records("rl")


def test_report_without_results_is_exit_2(tmp_path: Path) -> None:
    res = runner.invoke(app, ["rl", "report", "--storage", str(tmp_path / "none.db")])
    assert res.exit_code == 2 and "error:" in res.output
