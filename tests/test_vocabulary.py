"""One vocabulary across command groups: the renamed options (an audit of every group's --help) take the common
word, and the old spelling still works as a hidden alias (absent from --help)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from descend.cli import app

runner = CliRunner()


def _help(*group: str) -> str:
    res = runner.invoke(app, [*group, "--help"], env={"COLUMNS": "200"}, terminal_width=200)
    assert res.exit_code == 0, res.output
    return res.output


@pytest.fixture
def rl_calls(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    from descend.rl import study

    calls: list[list[str]] = []

    def fake_run_study(store: Any, env: str, methods: list[str], *args: Any, **kwargs: Any) -> int:
        calls.append(list(methods))
        return 0

    monkeypatch.setattr(study, "run_study", fake_run_study)
    monkeypatch.setattr(study, "report_rows", lambda store, env=None: [])
    return calls


@pytest.mark.parametrize("flag", ["--methods", "--algos"])
def test_rl_methods_and_its_old_name(flag: str, rl_calls: list[list[str]], tmp_path: Path) -> None:
    res = runner.invoke(app, ["rl", "run", "--env", "tabular", flag, "gpomdp,n_harpg", flag, "reinforce",
                              "--storage", str(tmp_path / "x.db")])
    assert res.exit_code == 0, res.output
    assert rl_calls == [["gpomdp", "n_harpg", "reinforce"]]


def test_rl_methods_and_algos_together_and_help(rl_calls: list[list[str]], tmp_path: Path) -> None:
    res = runner.invoke(app, ["rl", "run", "--env", "tabular", "--methods", "gpomdp", "--algos", "reinforce",
                              "--storage", str(tmp_path / "x.db")])
    assert res.exit_code == 0, res.output
    assert rl_calls == [["gpomdp", "reinforce"]]
    text = _help("rl", "run")
    assert "--methods" in text and "--algos" not in text


@pytest.mark.parametrize("args, quick", [([], True), (["--quick"], True), (["--full"], False)])
def test_classic_quick_and_full(args: list[str], quick: bool, monkeypatch: pytest.MonkeyPatch,
                                tmp_path: Path) -> None:
    from descend.classic import report

    seen: list[bool] = []

    def fake_run_and_store(spec: Any, request: Any, store: Any) -> tuple[int, int]:
        seen.append(request.quick)
        return 0, 0

    monkeypatch.setattr(report, "run_and_store", fake_run_and_store)
    res = runner.invoke(app, ["classic", "run", "gns", "--problem", "rosenbrock", *args,
                              "--storage", str(tmp_path / "c.db")])
    assert res.exit_code == 0, res.output
    assert seen == [quick]


@pytest.mark.parametrize("args, quick", [([], False), (["--quick"], True), (["--full"], False),
                                         (["--no-quick"], False), (["--quick", "--no-quick"], False)])
def test_surrogate_quick_full_and_old_no_quick(args: list[str], quick: bool, monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:
    from descend.surrogate import study

    seen: list[bool] = []

    def fake_run_study(method: str, task: Any, seeds: int, store: Any, *, quick: bool, **kwargs: Any) -> int:
        seen.append(quick)
        return 0

    monkeypatch.setattr(study, "run_study", fake_run_study)
    res = runner.invoke(app, ["surrogate", "run", "attack", *args, "--storage", str(tmp_path / "s.db")])
    assert res.exit_code == 0, res.output
    assert seen == [quick]


def test_help_shows_the_common_words_only() -> None:
    text = _help("surrogate", "run")
    assert "--quick" in text and "--full" in text and "--no-quick" not in text
    text = _help("classic", "run")
    assert "--quick" in text and "--full" in text


@pytest.mark.parametrize("group, args, progress", [
    ("rl", ["rl", "run", "--env", "tabular", "--methods", "gpomdp", "--seeds", "1", "--budget", "20",
            "--eval-every", "10"], "tabular gpomdp seed 0: final return"),
    ("surrogate", ["surrogate", "run", "attack", "--seeds", "1", "--budget", "12"], "attack hybrid seed 0:"),
])
def test_quiet_drops_progress_lines(group: str, args: list[str], progress: str, tmp_path: Path) -> None:
    """``--quiet``, as in bench/bilevel/classic run: the progress lines go, the summary stays."""
    loud = runner.invoke(app, [*args, "--storage", str(tmp_path / "a.db")])
    quiet = runner.invoke(app, [*args, "--storage", str(tmp_path / "b.db"), "--quiet"])
    assert loud.exit_code == 0 == quiet.exit_code, (loud.output, quiet.output)
    assert progress in loud.output and progress not in quiet.output
    assert ("1 runs added" if group == "rl" else "3 new records") in quiet.output


@pytest.mark.parametrize("flag", ["--plan", "--name"])
def test_bilevel_run_names_its_plan_with_plan_as_report_does(flag: str, tmp_path: Path) -> None:
    """`run --plan NAME` (the word `report` and `worker` use), and the former `--name`, name the stored plan."""
    db = str(tmp_path / "b.db")
    res = runner.invoke(app, ["bilevel", "run", "--problem", "quadratic", "--solvers", "aid_cg", "--grid", "tiny",
                              "--seeds", "1", "--tune-seeds", "1", "--budget", "3it", "--storage", db, "--quiet",
                              flag, "mine"])
    assert res.exit_code == 0, res.output
    rep = runner.invoke(app, ["bilevel", "report", "--storage", db, "--plan", "mine", "--format", "json",
                              "--out", str(tmp_path / "r.html")])
    assert rep.exit_code == 0, rep.output


@pytest.mark.parametrize("flag", ["--plan", "--name"])
def test_bench_run_takes_plan_and_its_former_name(flag: str, tmp_path: Path) -> None:
    """Both spellings parse (a bad --ladder then stops the run with its own message, before any storage)."""
    res = runner.invoke(app, ["bench", "run", flag, "mine", "--ladder", "abc", "--storage", str(tmp_path / "b.db")])
    assert res.exit_code == 2 and "--ladder must be" in res.output, res.output
    assert not (tmp_path / "b.db").exists()
