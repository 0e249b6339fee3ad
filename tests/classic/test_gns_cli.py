"""`descend classic run | report | list` end to end on the fast GNS problem, and its exit-2 user errors."""

from typer.testing import CliRunner

from descend.cli import app
from descend.results import ResultStore


def test_run_stores_curves_and_report_draws_them(tmp_path):
    db = str(tmp_path / "c.db")
    r = CliRunner().invoke(app, ["classic", "run", "gns", "--problem", "rosenbrock", "--storage", db])
    assert r.exit_code == 0, r.output
    assert "curves stored" in r.output and "iterations" in r.output
    recs = ResultStore(db).records("classic", "gns/rosenbrock")
    assert {rec.method for rec in recs} == {"exact", "p5-inexact"}
    assert all(rec.curve["gap"][-1] < 1e-8 for rec in recs)
    again = CliRunner().invoke(app, ["classic", "run", "gns", "--problem", "rosenbrock", "--storage", db])
    assert "0 curves stored (2 already there)" in again.output  # reruns are idempotent
    out = tmp_path / "classic.html"
    r = CliRunner().invoke(app, ["classic", "report", "--storage", db, "--out", str(out)])
    assert r.exit_code == 0, r.output
    text = out.read_text()
    assert "gns/rosenbrock" in text and "data:image/png;base64" in text


def test_user_errors_exit_2_without_traceback(tmp_path):
    db = str(tmp_path / "c.db")
    for args, msg in [(["classic", "run", "gns", "--problem", "nope"], "--problem must be one of"),
                      (["classic", "run", "nope", "--problem", "x"], "SOLVER must be one of"),
                      (["classic", "run", "gns", "--problem", "logistic", "--set", "bogus=1"], "--set key must be"),
                      (["classic", "run", "gns", "--problem", "logistic", "--set", "tol"], "--set takes key=value")]:
        r = CliRunner().invoke(app, [*args, "--storage", db])
        assert r.exit_code == 2 and msg in r.output and "Traceback" not in r.output, r.output
    r = CliRunner().invoke(app, ["classic", "list"])
    assert r.exit_code == 0 and "bcd" in r.output and "adasketch" in r.output
