"""``descend bench list | run | report | worker``: the happy paths and the clear errors (exit code 2)."""

from __future__ import annotations

import os
import sqlite3

import pytest
from typer.testing import CliRunner

from descend import optim as do
from descend.bench.workloads import available_workloads
from descend.cli import app

from .conftest import Finished


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def _output(result) -> str:
    """What the user sees: stdout and stderr interleaved (Click >= 8.2)."""
    return result.output


def test_list(runner):
    result = runner.invoke(app, ["bench", "list"])
    assert result.exit_code == 0, _output(result)
    for w in available_workloads():
        assert w in result.output
    for o in do.available():
        assert o in result.output
    assert "suites:" in result.output and "quick" in result.output and "full" in result.output


def test_run_refuses_a_foreign_sqlite_database(runner, tmp_path):
    db = tmp_path / "foreign.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
    before = db.read_bytes()
    result = runner.invoke(app, ["bench", "run", "--workloads", "matrix_sensing:s", "--optimizers", "adamw",
                                 "--storage", str(db), "--quiet", "--report", str(tmp_path / "r.html")])
    assert result.exit_code == 2, _output(result)
    assert "error:" in _output(result) and "something else" in _output(result)
    assert db.read_bytes() == before
    assert not (tmp_path / "r.html").exists()


@pytest.mark.parametrize("command", ["run", "report", "worker"])
def test_commands_refuse_a_garbage_file(runner, tmp_path, command):
    db = tmp_path / "garbage.db"
    db.write_bytes(os.urandom(2048))
    args = ["bench", command, "--storage", str(db)]
    if command == "run":
        args += ["--workloads", "matrix_sensing:s", "--optimizers", "adamw", "--quiet"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, _output(result)
    assert "not an SQLite database" in _output(result)
    assert result.exception is None or isinstance(result.exception, SystemExit)  # no traceback


def test_report_on_an_empty_database(runner, tmp_path):
    result = runner.invoke(app, ["bench", "report", "--storage", str(tmp_path / "empty.db"),
                                 "--out", str(tmp_path / "r.html")])
    assert result.exit_code == 2, _output(result)
    assert "no benchmark plan" in _output(result)
    assert not (tmp_path / "r.html").exists()


def test_bad_options_exit_2(runner, tmp_path):
    db = str(tmp_path / "b.db")
    for args in (["--workloads", "no_such_workload:s", "--optimizers", "adamw"],
                 ["--workloads", "matrix_sensing:s", "--optimizers", "no_such_optimizer"],
                 ["--workloads", "matrix_sensing:xl", "--optimizers", "adamw"],
                 ["--suite", "no_such_suite"],
                 ["--workloads", "matrix_sensing:s", "--optimizers", "adamw", "--trials", "0"]):
        result = runner.invoke(app, ["bench", "run", "--storage", db, "--quiet", *args])
        assert result.exit_code == 2, (args, _output(result))


def test_report_of_a_finished_plan(runner, finished_plan: Finished, tmp_path):
    out = tmp_path / "report.html"
    result = runner.invoke(app, ["bench", "report", "--storage", finished_plan.url, "--out", str(out)])
    assert result.exit_code == 0, _output(result)
    assert "leaderboard" in result.output
    for o in finished_plan.plan.optimizers:
        assert o in result.output
    assert out.exists() and "<img" in out.read_text()
    result = runner.invoke(app, ["bench", "report", "--storage", finished_plan.url, "--plan", "nope",
                                 "--out", str(out)])
    assert result.exit_code == 2 and "no plan 'nope'" in _output(result)


def test_run_then_worker_with_nothing_left(runner, tmp_path):
    """A tiny end-to-end run through the CLI; a worker on the finished database finds nothing to do."""
    db, out = str(tmp_path / "b.db"), tmp_path / "r.html"
    args = ["bench", "run", "--workloads", "matrix_sensing:s", "--optimizers", "adamw", "--trials", "2",
            "--seeds", "1", "--budget-scale", "0.02", "--storage", db, "--name", "tiny", "--report", str(out)]
    result = runner.invoke(app, [*args, "--quiet"])
    assert result.exit_code == 0, _output(result)
    # 2 tuning trials (+ a widening round if the best lr sits on an edge) and 1 final each for AdamW and its
    # noise-floor replica, and AdamW's ladder: 4 rungs besides 1x on 1 seed
    import re

    n = int(re.search(r"(\d+) trials run", result.output).group(1))
    assert n in (2 * 3 + 4, 2 * 3 + 4 + 2, 2 * 3 + 4 + 4) and out.exists()
    result = runner.invoke(app, args)  # again, with progress bars: resumes a finished plan, runs nothing
    assert result.exit_code == 0, _output(result)
    assert "0 trials run" in result.output
    result = runner.invoke(app, ["bench", "worker", "--storage", db])
    assert result.exit_code == 0, _output(result)
    assert "worker done: 0 trials" in result.output
