"""``descend surrogate run attack --problem``: which trained surrogates to attack; bad values exit 2 (one line, no
traceback, nothing stored)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from descend.cli import app
from descend.results import ResultStore
from descend.surrogate.attack import make_method
from descend.surrogate.study import feasible_start
from descend.surrogate.tasks import trained_mlp_problem

runner = CliRunner()


def test_problem_selects_the_surrogate(tmp_path: Path) -> None:
    db, html = tmp_path / "p.db", tmp_path / "p.html"
    args = ["surrogate", "run", "attack", "--problem", "0,2", "--seeds", "1", "--budget", "20", "--storage", str(db)]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    recs = ResultStore(str(db)).records("surrogate", "attack")
    assert sorted((r.setting.get("problem", 0), r.method) for r in recs) == [
        (p, m) for p in (0, 2) for m in ("cdsm", "coordinate", "hybrid")]
    # the stored curve is the method's run on that surrogate (problem 2 differs from the default problem 0)
    prob = trained_mlp_problem(2, dim=20, white_box=True)
    tr = make_method("hybrid", seed=0).run(prob, feasible_start(prob, 0), 20)
    (rec,) = [r for r in recs if r.setting.get("problem") == 2 and r.method == "hybrid"]
    assert rec.curve["best"] == tr.best
    # problem 0 is stored as before the option existed: a plain rerun of the old command finds it cached
    again = runner.invoke(app, ["surrogate", "run", "attack", "--seeds", "1", "--budget", "20", "--storage", str(db)])
    assert again.exit_code == 0 and "0 new records" in again.output, again.output
    rep = runner.invoke(app, ["surrogate", "report", "--storage", str(db), "--out", str(html)])
    assert rep.exit_code == 0, rep.output
    page = html.read_text()
    assert "<img" in page and page.count("<td>2</td>") >= 3   # a figure; a table row per method on problem 2


@pytest.mark.parametrize("extra, message", [
    (["attack", "--problem", "mlp"], "--problem must be trained-surrogate seeds"),
    (["attack", "--problem", "-1"], "--problem must be trained-surrogate seeds"),
    (["attack", "--problem", "1,x"], "got x"),
    (["attack", "--problem", "2000000"], "integers in [0, 1000000]"),
    (["attack", "--problem", ","], "got nothing"),
    (["ignite", "--problem", "1"], "--problem applies to METHOD attack only"),
])
def test_bad_problem_exits_2(tmp_path: Path, extra: list[str], message: str) -> None:
    res = runner.invoke(app, ["surrogate", "run", *extra, "--storage", str(tmp_path / "x.db")])
    assert res.exit_code == 2, res.output
    assert message in res.output and "Traceback" not in res.output
    assert not (tmp_path / "x.db").exists()
