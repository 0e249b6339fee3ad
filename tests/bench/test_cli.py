"""``descend bench list | run | report | worker``: the happy paths and the clear errors (exit code 2)."""

from __future__ import annotations

import os
import sqlite3

import pytest
from typer.testing import CliRunner

from descend import optim as do
from descend.bench.storage import Storage
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


def test_report_on_a_missing_or_empty_database(runner, tmp_path):
    missing, out = tmp_path / "missing.db", tmp_path / "r.html"
    result = runner.invoke(app, ["bench", "report", "--storage", str(missing), "--out", str(out)])
    assert result.exit_code == 2, _output(result)
    assert "no benchmark database" in _output(result)
    assert not missing.exists() and not out.exists()  # no empty database left behind
    Storage(str(tmp_path / "empty.db"))  # a descend database with no plan in it
    result = runner.invoke(app, ["bench", "report", "--storage", str(tmp_path / "empty.db"), "--out", str(out)])
    assert result.exit_code == 2, _output(result)
    assert "no benchmark plan" in _output(result)
    assert not out.exists()


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
    assert result.exit_code == 2 and "no benchmark plan 'nope'" in _output(result)


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


# -------------------------------------------------------------------------------------------- every bad input: exit 2


def _one_clear_line(result, *needles: str) -> str:
    """Exit 2, no traceback, one ``error:`` line that contains each of ``needles``."""
    out = _output(result)
    assert result.exit_code == 2, out
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in out
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, out
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
    return errors[0]


RUN = ["bench", "run", "--workloads", "matrix_sensing:s", "--optimizers", "adamw", "--trials", "1", "--seeds", "1",
       "--quiet"]


@pytest.mark.parametrize(("storage", "needles"), [
    ("sqlite://", ["in-memory"]),
    (":memory:", ["in-memory"]),
    ("sqlite:///:memory:", ["in-memory"]),
    ("nosuchdialect://host/db", ["unknown database dialect", "nosuchdialect"]),
    ("mysql+nosuchdriver://host/db", ["unknown database dialect"]),
    ("postgresql://user:secret@127.0.0.1:1/db", ["127.0.0.1"]),  # nothing listens on port 1: refused
])
@pytest.mark.parametrize("command", ["run", "report", "worker"])
def test_bad_storage_urls(runner, tmp_path, monkeypatch, command, storage, needles):
    monkeypatch.chdir(tmp_path)
    args = RUN if command == "run" else ["bench", command]
    result = runner.invoke(app, [*args, "--storage", storage, *(["--report", "r.html"] if command == "run" else [])])
    line = _one_clear_line(result, *needles)
    assert "secret" not in line  # passwords are never printed
    assert list(tmp_path.iterdir()) == []  # nothing created


def test_missing_driver_names_the_extra(runner, tmp_path, monkeypatch):
    """PostgreSQL without its driver: say which extra to install (simulated by hiding psycopg)."""
    import sys

    monkeypatch.setitem(sys.modules, "psycopg", None)  # `import psycopg` now raises ImportError
    monkeypatch.setitem(sys.modules, "psycopg2", None)
    for command in ("run", "worker", "report"):
        args = RUN if command == "run" else ["bench", command]
        result = runner.invoke(app, [*args, "--storage", "postgresql://u@127.0.0.1/db"])
        _one_clear_line(result, "driver", "descend[postgres]")


@pytest.mark.parametrize("option", ["--storage", "--report", "--out"])
def test_a_directory_is_refused(runner, tmp_path, option):
    command = "report" if option == "--out" else "run"
    args = (RUN if command == "run" else ["bench", "report", "--storage", str(tmp_path / "x.db")])
    extra = {"--storage": ["--storage", str(tmp_path)], "--report": ["--storage", str(tmp_path / "b.db"),
                                                                     "--report", str(tmp_path)],
             "--out": ["--out", str(tmp_path)]}[option]
    _one_clear_line(runner.invoke(app, [*args, *extra]), option, "directory")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "0", "-1"])
def test_budget_scale_must_be_finite_and_positive(runner, tmp_path, value):
    db = tmp_path / "b.db"
    _one_clear_line(runner.invoke(app, [*RUN, "--storage", str(db), "--budget-scale", value]), "--budget-scale")
    assert not db.exists()


TINY = ["bench", "run", "--workloads", "matrix_sensing:s", "--optimizers", "adamw", "--trials", "2", "--seeds", "1",
        "--budget-scale", "0.02", "--name", "tiny", "--quiet"]


@pytest.fixture(scope="module")
def tiny_db(tmp_path_factory) -> str:
    """A small plan finished through the CLI (so that `run` with the same options finds the same plan)."""
    db = tmp_path_factory.mktemp("tiny") / "tiny.db"
    result = CliRunner().invoke(app, [*TINY, "--storage", str(db), "--report", str(db.with_suffix(".html"))])
    assert result.exit_code == 0, _output(result)
    return str(db)


@pytest.mark.parametrize(("table", "column", "value"), [
    ("descend_plan", "config", "{not json"),
    ("descend_plan", "config", '{"name": "tiny", "bogus": 1}'),
    ("descend_plan", "config", '["a", "list"]'),
    ("descend_runs", "curve", "[1, 2"),
    ("descend_runs", "final", '"a string"'),
    ("descend_runs", "hyperparameters", "null"),
])
@pytest.mark.parametrize("command", ["run", "report", "worker"])
def test_corrupt_or_tampered_database(runner, tiny_db, tmp_path, command, table, column, value):
    """A descend database whose plan or results were edited into garbage: a clear error, never a traceback."""
    import shutil

    import sqlalchemy as sa

    db = tmp_path / "tampered.db"
    shutil.copy(tiny_db, db)
    with sa.create_engine(f"sqlite:///{db}").begin() as conn:
        conn.execute(sa.text(f"UPDATE {table} SET {column} = :v"), {"v": value})
    out = tmp_path / "r.html"
    args = {"run": [*TINY, "--report", str(out)], "report": ["bench", "report", "--out", str(out)],
            "worker": ["bench", "worker"]}[command]
    result = runner.invoke(app, [*args, "--storage", str(db)])
    if command == "worker" and table == "descend_runs" and result.exit_code == 0:
        return  # the plan is finished: the worker has no reason to read the tampered rows
    if command == "run" and table == "descend_plan":
        _one_clear_line(result, "plan")  # unreadable, or not the plan these options describe
    else:
        _one_clear_line(result, "tampered")
    assert not out.exists()


PLUGIN = '''
from descend.bench.workloads import Workload
from descend.bench.workloads.synthetic import MatrixSensing


class {name}(MatrixSensing):
    name = "{reg}"


class NotAWorkload:
    pass
'''


def _write_plugin(directory, module: str, cls: str = "MyWorkload", reg: str | None = None) -> None:
    (directory / f"{module}.py").write_text(PLUGIN.format(name=cls, reg=reg or f"plugin_{module}"))


def test_top_level_plugin_module_is_accepted(runner, tmp_path, monkeypatch):
    """`my_module:MyWorkload` (no package) from the current directory works; worker and report on that
    database need the same --workloads again, and say so."""
    import sys

    monkeypatch.chdir(tmp_path)
    _write_plugin(tmp_path, "my_toplevel_wl")
    # as under the `descend` console script: the current directory is not on the path; the CLI puts it there
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".", str(tmp_path))])
    db = str(tmp_path / "b.db")
    result = runner.invoke(app, ["bench", "run", "--workloads", "my_toplevel_wl:MyWorkload:s", "--optimizers",
                                 "adamw", "--trials", "1", "--seeds", "1", "--budget-scale", "0.02", "--storage",
                                 db, "--name", "plug", "--quiet", "--report", str(tmp_path / "r.html"),
                                 "--ladder", "1", "--no-noise-floor", "--widen", "0"])  # 1 tuning + 1 final
    assert result.exit_code == 0, _output(result)
    assert "2 trials run" in result.output
    for command in (["worker"], ["report", "--out", str(tmp_path / "r2.html")]):
        result = runner.invoke(app, ["bench", *command, "--storage", db])
        _one_clear_line(result, "--workloads my_toplevel_wl:MyWorkload")
        result = runner.invoke(app, ["bench", *command, "--storage", db, "--workloads", "my_toplevel_wl:MyWorkload"])
        assert result.exit_code == 0, _output(result)


def test_a_stored_plan_never_imports_code(runner, finished_plan: Finished, tmp_path, monkeypatch):
    """A database naming a module in its plan (tampered, or written with a plug-in) does not get it imported:
    the planted module would leave a marker file if it ran."""
    import shutil

    import sqlalchemy as sa

    from descend.bench.storage import dumps, loads

    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "pwned"
    (tmp_path / "evil_plugin_mod.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    db = tmp_path / "tampered.db"
    shutil.copy(finished_plan.url.removeprefix("sqlite:///"), db)
    with sa.create_engine(f"sqlite:///{db}").begin() as conn:
        cfg = loads(conn.execute(sa.text("SELECT config FROM descend_plan")).scalar())
        cfg["workload_imports"] = ["evil_plugin_mod:Evil"]
        conn.execute(sa.text("UPDATE descend_plan SET config = :c"), {"c": dumps(cfg)})
    for command in (["worker"], ["report", "--out", str(tmp_path / "r.html")]):
        result = runner.invoke(app, ["bench", *command, "--storage", str(db)])
        _one_clear_line(result, "--workloads evil_plugin_mod:Evil")
    assert not marker.exists()
    assert "evil_plugin_mod" not in __import__("sys").modules


@pytest.mark.parametrize(("spec", "needles"), [
    ("no_such_module_xyz:MyWorkload", ["no module named 'no_such_module_xyz'"]),
    ("no_such_pkg_xyz.mod:MyWorkload", ["no module named 'no_such_pkg_xyz.mod'"]),
    ("good_plugin_mod:Missing", ["has no attribute 'Missing'"]),
    ("good_plugin_mod:NotAWorkload", ["not a subclass"]),
    ("no_such_workload:s", ["unknown workload 'no_such_workload'"]),
])
def test_bad_plugin_workloads(runner, tmp_path, monkeypatch, spec, needles):
    monkeypatch.chdir(tmp_path)
    _write_plugin(tmp_path, "good_plugin_mod", reg="plugin_good")
    monkeypatch.syspath_prepend(str(tmp_path))
    db = tmp_path / "b.db"
    result = runner.invoke(app, ["bench", "run", "--workloads", spec, "--optimizers", "adamw", "--storage", str(db),
                                 "--quiet"])
    _one_clear_line(result, "--workloads", *needles)
    assert not db.exists()
    result = runner.invoke(app, ["bench", "worker", "--workloads", spec, "--storage", str(db)])
    assert result.exit_code == 2 and not db.exists()


# -------------------------------------------------------------------------------------------- habits (issue 17)


def test_list_options_take_comma_lists_and_repeated_flags():
    from descend.cli._common import split_list

    assert split_list(["adamw,lion", "soap", " muon , adamw"]) == ["adamw", "lion", "soap", "muon"]
    assert split_list(None) is None and split_list([","]) == []


def test_default_plan_names_follow_the_whole_configuration():
    """Two different studies in one database never collide; the same command resumes its own plan."""
    from descend.cli.bench import default_plan_name

    from .conftest import small_plan

    a, b = small_plan(), small_plan(optimizers=("adamw", "lion"))
    assert default_plan_name(a, "quick") == default_plan_name(small_plan(name="other"), "quick")
    assert default_plan_name(a, "quick") != default_plan_name(b, "quick")
    assert default_plan_name(a, None).startswith("custom-t3-s2-tpe-")


def test_report_formats_for_pipes(runner, finished_plan: Finished, tmp_path):
    import csv
    import json

    out = str(tmp_path / "r.html")
    base = ["bench", "report", "--storage", finished_plan.url, "--out", out, "--format"]
    result = runner.invoke(app, [*base, "json"])
    assert result.exit_code == 0, _output(result)
    rows = json.loads(result.stdout)  # stdout is pure JSON: the "report: PATH" line goes to stderr
    assert {r["optimizer"] for r in rows} >= set(finished_plan.plan.optimizers)
    assert "report: " in result.stderr
    result = runner.invoke(app, [*base, "csv"])
    header = next(csv.reader([result.output.splitlines()[0]]))
    assert header[:3] == ["workload", "optimizer", "final val (mean [95% CI])"]
    result = runner.invoke(app, [*base, "markdown"])
    lines = result.output.splitlines()
    assert lines[0].startswith("| workload | optimizer |") and lines[1].startswith("|---|")
    assert "rest on 2 seed(s)" in result.output  # the small plan has 2 seeds: its CIs carry the caveat
    _one_clear_line(runner.invoke(app, [*base, "yaml"]), "--format", "table, csv, json or markdown")
