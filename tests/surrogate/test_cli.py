"""``descend surrogate run | report`` end to end on a temporary database; user errors exit 2 without a traceback."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from descend.cli import app
from descend.results import ResultStore


def test_run_attack_then_report(tmp_path: Path) -> None:
    db, html = tmp_path / "s.db", tmp_path / "s.html"
    runner = CliRunner()
    args = ["surrogate", "run", "attack", "--seeds", "1", "--budget", "30", "--storage", str(db)]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    recs = ResultStore(str(db)).records("surrogate", "attack")
    assert {r.method for r in recs} == {"hybrid", "cdsm", "coordinate"}
    assert all(len(r.curve["best"]) == 30 for r in recs)
    again = runner.invoke(app, args)  # idempotent rerun
    assert again.exit_code == 0 and "0 new records" in again.output
    rep = runner.invoke(app, ["surrogate", "report", "--storage", str(db), "--out", str(html)])
    assert rep.exit_code == 0, rep.output
    assert "<img" in html.read_text()


def test_user_errors_exit_2(tmp_path: Path) -> None:
    runner = CliRunner()
    bad = runner.invoke(app, ["surrogate", "run", "annealing", "--storage", str(tmp_path / "a.db")])
    assert bad.exit_code == 2 and "METHOD must be one of" in bad.output
    bad = runner.invoke(app, ["surrogate", "run", "ignite", "--task", "rosen", "--storage", str(tmp_path / "a.db")])
    assert bad.exit_code == 2 and "task must be one of" in bad.output
    bad = runner.invoke(app, ["surrogate", "report", "--storage", str(tmp_path / "none.db")])
    assert bad.exit_code == 2 and "Traceback" not in bad.output
