"""``descend bilevel`` benchmark: storage, resumability, selection, report and CLI (tiny settings, < 60 s)."""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

import descend.bilevel_bench as bb
from descend.cli import app


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    db = bb.BilevelStorage(str(tmp_path_factory.mktemp("bl") / "bench.db"))
    plan = bb.Plan(problem="quadratic", solvers=["aid_cg", "soba"], grid="tiny", seeds=2, tune_seeds=1,
                   budget=bb.parse_budget("6it"), n_eval=3)
    n = bb.run_plan(plan, db)
    return db, plan, n


def test_tiny_run_stores_expected_rows_and_resumes(tiny):
    db, plan, n = tiny
    grid = len(plan.grid_configs())
    assert grid == 2
    expected = len(plan.solvers) * (grid * plan.tune_seeds + plan.seeds)
    assert n == expected
    runs = db.runs(plan.name)
    assert len(runs) == expected
    assert sum(r.phase == "final" for r in runs) == len(plan.solvers) * plan.seeds
    for r in runs:
        assert [row["iteration"] for row in r.history] == [0.0, 2.0, 4.0, 6.0]
        assert r.history[-1]["oracle_calls"] == sum(r.history[-1][k] for k in bb.ORACLE_KEYS) > 0
        assert "hypergrad_sq" in r.history[-1] and r.provenance["torch"]
        assert r.provenance["solver_kwargs"]["lr_inner"] > 0
    # the final runs use the configuration the selection picks
    for s in plan.solvers:
        best = bb.select_config(db.runs(plan.name, "tune", s))
        assert {r.config["ratio"] for r in db.runs(plan.name, "final", s)} == {best["ratio"]}
    assert bb.run_plan(plan, db) == 0  # resumable: nothing new
    assert len(db.runs(plan.name)) == expected
    plan3 = bb.Plan(problem="quadratic", solvers=["aid_cg"], grid="tiny", seeds=3, tune_seeds=1,
                    budget=bb.parse_budget("6it"), n_eval=3)
    assert bb.run_plan(plan3, db) == 1  # one more final seed only


def _run(config, values, diverged=False, seed=0):
    hist = [{"time": float(i), "oracle_calls": 10.0 * i, "outer_value": v} for i, v in enumerate(values)]
    return bb.BilevelRun("p", "quadratic", "s", "tune", config, seed, hist, diverged)


def test_selection_by_median_validation_value():
    a, b, c = {"step": 1, "ratio": 1}, {"step": 2, "ratio": 1}, {"step": 3, "ratio": 1}
    runs = [_run(a, [3, 0.5]), _run(a, [3, 1.0], seed=1), _run(a, [3, 1.2], seed=2),  # median 1.0, best mean
            _run(b, [3, 0.7]), _run(b, [3, 0.8], seed=1), _run(b, [3, 9.0], seed=2),  # median 0.8
            _run(c, [3, 0.1], diverged=True), _run(c, [3, 0.1], diverged=True, seed=1), _run(c, [3, 0.1], seed=2)]
    assert bb.select_config(runs) == b
    # area under the median curve: a's median curve is 3, 1.0 — b's 3, 0.8 (c: diverged median)
    assert bb.select_config(runs, "auc") == b
    assert bb.select_config([_run(a, [1, math.inf], diverged=True)]) is None


def test_band_and_budget():
    xs, lo, mid, hi = bb.band([_run({}, [4, 2, 1]).history, _run({}, [8, 4, 2]).history], "time", "outer_value",
                              points=3)
    assert xs == [0.0, 1.0, 2.0] and mid == [6.0, 3.0, 1.5]
    assert all(a <= m <= c for a, m, c in zip(lo, mid, hi, strict=True))
    assert bb.parse_budget("2s") == bb.Budget(2.0, "s") and bb.parse_budget("300it") == bb.Budget(300.0, "it")
    assert bb.parse_budget("500oracles") == bb.parse_budget("500oc") == bb.Budget(500.0, "oracles")
    for bad in ("fast", "10parsecs", "2.5it", "1.5oracles", "0oracles"):
        with pytest.raises(ValueError, match="budget"):
            bb.parse_budget(bad)


def _strip_clock(runs):
    """A stored run without what the clock measures (solver time, wall time) and the creation provenance."""
    return [(r.solver, r.phase, r.config, r.seed, r.diverged,
             [{k: v for k, v in row.items() if k != "time"} for row in r.history]) for r in runs]


def test_default_budget_counts_oracles_and_is_reproducible(tmp_path):
    # the default is an oracle-call budget, the same in the library and the CLI
    assert bb.Plan(problem="quadratic", solvers=["aid_cg"]).budget == bb.parse_budget(bb.DEFAULT_BUDGET)
    assert bb.parse_budget(bb.DEFAULT_BUDGET).unit == "oracles"
    import inspect

    from descend.cli.bilevel import bilevel_run
    assert inspect.signature(bilevel_run).parameters["budget"].default == bb.DEFAULT_BUDGET
    # two identical runs (a stochastic solver, whose mini-batches come from the seed) store identical results
    stored = []
    for i in range(2):
        db = bb.BilevelStorage(str(tmp_path / f"r{i}.db"))
        plan = bb.Plan(problem="quadratic", solvers=["soba", "aid_cg"], grid="tiny", seeds=1, tune_seeds=1,
                       budget=bb.parse_budget("60oracles"), n_eval=3)
        bb.run_plan(plan, db)
        stored.append(_strip_clock(db.runs(plan.name)))
        for r in db.runs(plan.name):  # stops at the first iteration that reaches the budget
            calls = [row["oracle_calls"] for row in r.history]
            assert calls[-1] >= 60 and calls[-2] < 60 and calls == sorted(calls)
    # bit-identical (json text, so that NaN fields, e.g. the first row's hypergrad_norm, compare equal)
    assert json.dumps(stored[0], sort_keys=True) == json.dumps(stored[1], sort_keys=True)
    assert len(stored[0]) == 2 * (2 + 1)


def _final(db, solver, config, seed, value):
    hist = [{"time": 0.0, "oracle_calls": 0.0, "iteration": 0.0, "hypergrad_sq": 1.0, "outer_value": 1.0},
            {"time": 1.0, "oracle_calls": 100.0, "iteration": 10.0, "hypergrad_sq": value, "outer_value": value}]
    db.add(bb.BilevelRun("edge", "quadratic", solver, "final", config, seed, hist))


def test_grid_edge_is_reported(tmp_path):
    steps, ratios = bb.GRIDS["medium"]
    assert bb.grid_edges("medium", {"step": steps[1], "ratio": ratios[1]}) == []
    assert bb.grid_edges("medium", {"step": steps[-1], "ratio": ratios[0]}) == [
        f"step at the largest grid value {steps[-1]:g}", f"ratio at the smallest grid value {ratios[0]:g}"]
    assert bb.grid_edges("tiny", {"step": 1.0, "ratio": 3.0}) == ["ratio at the largest grid value 3"]  # 1 step
    # a stored plan where one solver's selection sits in the corner of the grid, the other's inside it
    path = str(tmp_path / "e.db")
    db = bb.BilevelStorage(path)
    plan = bb.Plan(problem="quadratic", solvers=["aid_cg", "soba"], grid="medium", name="edge")
    db.save_plan("edge", plan.config())
    for seed in (1000, 1001):
        _final(db, "aid_cg", {"step": steps[0], "ratio": ratios[-1]}, seed, 0.01)
        _final(db, "soba", {"step": steps[1], "ratio": ratios[1]}, seed, 0.02)
    s = bb.summarize(db, "edge")
    assert s.results["aid_cg"].edges and not s.results["soba"].edges
    rows = {r["solver"]: r for r in bb.table_rows(s)}
    assert "grid edge: step at the smallest grid value 0.1; ratio at the largest grid value 10" in \
        rows["aid_cg"]["config"] and "edge" not in rows["soba"]["config"]
    out = tmp_path / "e.html"
    r = CliRunner().invoke(app, ["bilevel", "report", "--storage", path, "--out", str(out)])
    assert r.exit_code == 0, r.output
    warns = [line for line in r.output.splitlines() if line.startswith("warning:")]
    assert len(warns) == 1 and "aid_cg" in warns[0] and "edge of grid 'medium'" in warns[0]
    assert "Grid edge:" in out.read_text() and "aid_cg: selected configuration on the edge" in out.read_text()


def test_to_target_wording():
    inf = math.inf
    assert bb._to_target([0.2, 0.4]) == "0.3 (reached on all 2 seeds)"
    assert bb._to_target([0.2, 0.4, inf]) == "0.4 (reached on 2 of 3 seeds)"
    assert bb._to_target([0.2, inf]) == "median not reached; reached on 1 of 2 seeds"
    assert bb._to_target([inf, inf]) == "not reached on any of 2 seeds"
    assert bb._to_target([inf]) == "not reached on any of 1 seed"


def test_report_html(tiny, tmp_path):
    db, plan, _ = tiny
    s = bb.summarize(db, plan.name)
    assert set(s.results) == {"aid_cg", "soba"} and math.isfinite(s.target)
    rows = bb.table_rows(s)
    assert all("(" in r["time_to_target"] for r in rows)
    html = bb.write_html(s, tmp_path / "r.html").read_text()
    assert html.count("<img") >= 2 and "data-figures" in html and "data:image/png;base64," in html
    assert "| aid_cg |" in bb.markdown_table(s)


def test_cli_list_and_errors(tmp_path):
    r = CliRunner().invoke(app, ["bilevel", "list"])
    assert r.exit_code == 0 and "hyper_cleaning_digits" in r.output and "aid_cg" in r.output
    db = str(tmp_path / "x.db")
    r = CliRunner().invoke(app, ["bilevel", "run", "--problem", "nope", "--storage", db])
    assert r.exit_code == 2 and "unknown problem 'nope'" in r.output
    r = CliRunner().invoke(app, ["bilevel", "run", "--problem", "quadratic", "--solvers", "aid_cg,foo",
                                 "--storage", db])
    assert r.exit_code == 2 and "unknown solver(s) foo" in r.output
    r = CliRunner().invoke(app, ["bilevel", "run", "--problem", "quadratic", "--budget", "1.5oracles",
                                 "--storage", db])
    assert r.exit_code == 2 and "budget must be a positive integer of oracle calls" in r.output
    r = CliRunner().invoke(app, ["bilevel", "report", "--storage", db])
    assert r.exit_code == 2 and "no bilevel plan" in r.output


def test_cli_tiny_run_and_report(tmp_path):
    db, out = str(tmp_path / "b.db"), tmp_path / "rep.html"
    args = ["bilevel", "run", "--problem", "quadratic", "--solvers", "aid_cg", "--grid", "tiny", "--seeds", "1",
            "--tune-seeds", "1", "--budget", "3it", "--storage", db, "--quiet"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "3 runs done" in r.output
    # the tiny grid's ratio axis has two values, so the selection is on its edge and `run` says so
    assert "warning: aid_cg: selected configuration on the edge of grid 'tiny' (ratio at the" in r.output
    assert "reached on" in r.output
    assert "0 runs done" in CliRunner().invoke(app, args).output
    r = CliRunner().invoke(app, ["bilevel", "report", "--storage", db, "--out", str(out)])
    assert r.exit_code == 0 and out.exists()
    # the shared --format renderer: json parses back to the markdown table's rows; csv's header is the row keys
    import json

    from descend.cli._common import rows_text

    rj = CliRunner().invoke(app, ["bilevel", "report", "--storage", db, "--format", "json"])
    assert rj.exit_code == 0, rj.output
    rows = json.loads(rj.stdout)
    assert [r["solver"] for r in rows] == ["aid_cg"] and "grid edge" in rows[0]["config"]
    rc = CliRunner().invoke(app, ["bilevel", "report", "--storage", db, "--format", "csv"])
    assert rc.stdout.splitlines()[0] == rows_text(rows, "csv").splitlines()[0]
    bad = CliRunner().invoke(app, ["bilevel", "report", "--storage", db, "--format", "yaml"])
    assert bad.exit_code == 2 and "--format must be" in bad.output
