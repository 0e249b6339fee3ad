"""``descend claims``: list, run (overrides validated, results stored), report rendered in headless Chromium."""

from __future__ import annotations

from typer.testing import CliRunner

from descend.cli import app
from descend.results import ResultStore
from tests.bench.test_report import _render

FAST_E3 = ["--set", "steps=2000 exact_steps=1500", "--set", "asym_steps=9000"]


def test_list():
    r = CliRunner().invoke(app, ["claims", "list"])
    assert r.exit_code == 0, r.output
    assert "E1" in r.output and "E3" in r.output and "√(k−r)/(2η)" in r.output
    r = CliRunner().invoke(app, ["claims", "list", "E3"])
    assert r.exit_code == 0 and "asym_alpha" in r.output and "[0.0001, 0.5]" in r.output


def test_user_errors_exit_2_with_one_line(tmp_path):
    db = tmp_path / "c.db"
    for args, message in [
        (["claims", "run", "E3", "--set", "k=0"], "error: k must be in [1, 200], got 0"),
        (["claims", "run", "E3", "--set", "bogus=1"], "error: unknown setting 'bogus'"),
        (["claims", "run", "E3", "--set", "k"], "error: --set expects key=value"),
        (["claims", "run", "E42"], "error: unknown claim 'E42'"),
        (["claims", "run"], "error: give claim ids"),
        (["claims", "run", "E3", "--all"], "error: give claim ids or --all"),
    ]:
        r = CliRunner().invoke(app, [*args, "--storage", str(db)])
        assert r.exit_code == 2, (args, r.output)
        lines = [ln for ln in r.output.splitlines() if ln.strip()]
        assert lines == [lines[0]] and lines[0].startswith(message), (args, r.output)
        assert "Traceback" not in r.output
    assert not db.exists()  # rejected before any state changed
    r = CliRunner().invoke(app, ["claims", "report", "--storage", str(db), "--out", str(tmp_path / "x.html")])
    assert r.exit_code == 2 and r.output.startswith("error:")


def test_run_stores_and_report_renders(tmp_path):
    db = tmp_path / "claims.db"
    r = CliRunner().invoke(app, ["claims", "run", "E3", *FAST_E3, "--storage", str(db)])
    assert r.exit_code == 0, r.output
    assert "PASS" in r.output and "errT_limit=14.14" in r.output
    r = CliRunner().invoke(app, ["claims", "run", "E3", *FAST_E3, "--set", "k=6", "--storage", str(db)])
    assert "errT_limit=20" in r.output  # the prediction √(k−r)/(2η) recomputed for k=6
    recs = ResultStore(db).records("claims", "E3")
    assert [rec.setting["k"] for rec in recs] == [4, 6]
    assert recs[0].summary["verdict"] == "PASS" and recs[0].curve["errT"]
    out = tmp_path / "report" / "claims.html"
    r = CliRunner().invoke(app, ["claims", "report", "--storage", str(db), "--out", str(out)])
    assert r.exit_code == 0, r.output
    text = out.read_text(encoding="utf-8")
    assert text.count("<img ") == 2 and "k=6" in text and "Xiong, Lijun Ding" in text
    attrs = _render(out, tmp_path)
    assert int(attrs["data-figures"]) == 2 == int(attrs["data-rendered"])
