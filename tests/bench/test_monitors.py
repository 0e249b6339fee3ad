"""``descend bench run --monitor ... --monitor-every K``: curvature monitors stored with the final runs' curves and
plotted in the report (a tiny run: 1 tuning trial + 1 final run, no ladder)."""

from __future__ import annotations

import math

import pytest
from typer.testing import CliRunner

from descend.bench.storage import Storage
from descend.cli import app

ARGS = ["bench", "run", "--workloads", "matrix_sensing:s", "--optimizers", "adamw", "--trials", "1", "--seeds", "1",
        "--budget-scale", "0.05", "--ladder", "1", "--no-noise-floor", "--widen", "0", "--quiet"]


def test_monitors_are_stored_and_plotted(tmp_path):
    db, out = str(tmp_path / "m.db"), tmp_path / "r.html"
    result = CliRunner().invoke(app, [*ARGS, "--storage", db, "--name", "mon", "--report", str(out),
                                      "--monitor", "sharpness,param_change", "--monitor", "trace",
                                      "--monitor-every", "10"])
    assert result.exit_code == 0, result.output
    runs = Storage(db).runs("mon")
    final = [r for r in runs if r.phase == "final"]
    tune = [r for r in runs if r.phase != "final"]
    assert len(final) == 1 and tune
    assert not any("sharpness" in row for r in tune for row in r.curve)  # tuning trials are not monitored
    curve, steps = final[0].curve, final[0].steps
    monitored = [row for row in curve if "sharpness" in row]
    assert [int(row["step"]) for row in monitored] == sorted({*range(10, steps + 1, 10), steps})
    for row in monitored:
        assert math.isfinite(row["sharpness"]) and row["sharpness"] > 0  # matrix sensing near a minimum
        assert row["sharpness_hvp"] >= 1 and row["trace_hvp"] == 30 and row["param_change_hvp"] == 0
        assert "val_loss" in row  # monitor steps are full checkpoints
        assert row["sgd_stability"] == pytest.approx(row["trace"] / row["eos_threshold"], rel=1e-12, abs=1e-300)
    assert monitored[-1]["param_change"] > 0
    assert final[0].provenance["monitors"] == ["sharpness", "param_change", "trace"]
    html = out.read_text()
    assert "<h2>Curvature monitors</h2>" in html and "HVPs" in html
    assert html.count("<img") >= 2


def test_bad_monitor_options_exit_2(tmp_path):
    db = str(tmp_path / "b.db")
    for extra, needle in ((["--monitor", "curvy"], "--monitor must be one of"),
                          (["--monitor", "sharpness", "--monitor-every", "0"], "--monitor-every")):
        result = CliRunner().invoke(app, [*ARGS, "--storage", db, *extra])
        assert result.exit_code == 2 and needle in result.output, result.output
