"""The fixture replayers cannot be fooled: every broken file fails or is refused, on one line, and the others
are still reported.

Each broken file is made from a real fixture (copied, then mutated).  The command-line replayers run once over
all of them (one subprocess per replayer keeps this fast); each case then checks its own row of the output.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

import descend.optim  # noqa: F401  (registers every optimizer)
from descend._fixtures import Comparator, FixtureError
from descend.optim.replay import load_fixture, main, replay

from ..conftest import BILEVEL_FIXTURES, FIXTURES, ROOT, fixture_files

fixture_files()  # skips the module when the shared fixtures are absent
OPEN = FIXTURES / "lion__defaults.json"  # open loop, three parameters (weight 4x6, bias 4, conv)
CLOSED = FIXTURES / "salsa__logistic_use_mv.json"  # closed loop with per-step observables
UNREGISTERED = FIXTURES / "lion__defaults.json"  # renamed to an optimizer key nobody registers (see optimizer_run)
BILEVEL = BILEVEL_FIXTURES / "stocbio__n30_kappa100_K60.json"
BOME = BILEVEL_FIXTURES / "bome__coreset_eta0.1_k10_lr0.02.json"

Mutation = Callable[[dict[str, Any]], Any]


def _set_all(fx: dict[str, Any], key: str, value: float) -> None:
    for entry in fx[key]:
        for name in entry:
            if isinstance(entry[name], list):
                entry[name] = [value] * len(entry[name])


def _nest(depth: int) -> Any:
    v: Any = 0.0
    for _ in range(depth):
        v = [v]
    return v


def _wrong_values(fx: dict[str, Any]) -> None:
    """Move every trajectory value far outside any sane tolerance."""
    for entry in fx["trajectory"]:
        for name in fx["param_order"]:
            entry[name] = [x + 1.0 for x in entry[name]]


def _tol(**tol: Any) -> Mutation:
    def mutate(fx: dict[str, Any]) -> None:
        _wrong_values(fx)
        fx["tolerance"].update(tol)
    return mutate


class _Text:
    """A mutation of the file's text (the canonical ``json.dumps`` of the fixture) instead of its content."""

    def __init__(self, edit: Callable[[str], str | bytes]) -> None:
        self.edit = edit


# (case, source fixture, mutation of the parsed JSON or of the text, expected fragment of the REFUSED line)
OPTIMIZER_CASES: list[tuple[str, Path, Any, str]] = [
    ("all_nan_trajectory", OPEN, lambda fx: _set_all(fx, "trajectory", math.nan),
     r"trajectory\[0\]\.weight\[0\]: nan is not a finite number"),
    ("all_inf_trajectory", OPEN, lambda fx: _set_all(fx, "trajectory", math.inf),
     r"trajectory\[0\]\.weight\[0\]: inf is not a finite number"),
    ("nan_grads", OPEN, lambda fx: fx["grads"][3]["bias"].__setitem__(1, math.nan),
     r"grads\[3\]\.bias\[1\]: nan is not a finite number"),
    ("negative_rtol_wrong_values", OPEN, _tol(rtol=-1.0), r"tolerance\.rtol: -1\.0 is below the allowed minimum 0"),
    ("negative_atol_wrong_values", OPEN, _tol(atol=-1e-12), r"tolerance\.atol: -1e-12 is below the allowed minimum"),
    ("nan_tolerance_wrong_values", OPEN, _tol(rtol=math.nan, atol=math.nan),
     r"tolerance\.rtol: nan is not a finite number"),
    ("inf_tolerance_wrong_values", OPEN, _tol(atol=math.inf), r"tolerance\.atol: inf is not a finite number"),
    ("vacuous_atol_wrong_values", OPEN, _tol(atol=1e300), r"tolerance: atol 1e\+300 is not below the largest"),
    ("vacuous_rtol_wrong_values", OPEN, _tol(rtol=1.0), r"tolerance\.rtol: 1\.0 is not below 1"),
    ("empty_trajectory", OPEN, lambda fx: fx.update(trajectory=[], grads=[]), r"trajectory: is empty"),
    ("observable_list_too_short", CLOSED, lambda fx: fx["extra"]["step_size"].pop(),
     r"extra\.step_size: 39 entries, expected 40 \(one per trajectory step\)"),
    ("observable_list_nan", CLOSED, lambda fx: fx["extra"]["loss"].__setitem__(7, math.nan),
     r"extra\.loss\[7\]: nan is not a finite number"),
    ("observable_wrong_type", CLOSED, lambda fx: fx["extra"]["line_search"].__setitem__(0, 1.5),
     r"extra\.line_search\[0\]: expected true or false"),
    ("shape_mismatch", OPEN, lambda fx: fx["params"]["weight"].update(shape=[4, 5]),
     r"params\.weight\.init: 24 entries, expected 20 \(the size of shape \[4, 5\]\)"),
    ("trajectory_entry_too_short", OPEN, lambda fx: fx["trajectory"][3]["bias"].pop(),
     r"trajectory\[3\]\.bias: 3 entries, expected 4"),
    ("missing_parameter_in_trajectory", OPEN, lambda fx: fx["trajectory"][5].pop("bias"),
     r"trajectory\[5\]: missing parameter 'bias'"),
    ("missing_parameter_in_params", OPEN, lambda fx: fx["param_order"].append("ghost"),
     r"params: missing parameter 'ghost'"),
    ("unknown_parameter_in_grads", OPEN, lambda fx: fx["grads"][0].update(ghost=[0.0]),
     r"grads\[0\]: 'ghost' is not a parameter of param_order"),
    ("grads_count_mismatch", OPEN, lambda fx: fx["grads"].pop(), r"grads: 29 entries, expected 30"),
    ("string_for_number", OPEN, lambda fx: fx["trajectory"][2]["weight"].__setitem__(0, "0.5"),
     r"trajectory\[2\]\.weight\[0\]: expected a finite number, got a string '0\.5'"),
    ("boolean_for_number", OPEN, lambda fx: fx["params"]["bias"]["init"].__setitem__(0, True),
     r"params\.bias\.init\[0\]: expected a finite number, got a boolean"),
    ("string_for_shape", OPEN, lambda fx: fx["params"]["bias"].update(shape="4"),
     r"params\.bias\.shape: expected an array of integers, got a string"),
    ("non_utf8", OPEN, _Text(lambda s: s.replace('"description": "', '"description": "\udcff', 1)
                             .encode("utf-8", "surrogateescape")), r"not UTF-8 text \(byte 0xff at offset \d+\)"),
    ("deep_nesting", OPEN, lambda fx: fx.update(reference_patches=_nest(200)), r"nested more than 32 deep"),
    ("very_deep_nesting", OPEN, _Text(lambda s: s[:-1] + ', "x": ' + "[" * 200_000 + "]" * 200_000 + "}"),
     r"nested more than 32 deep"),
    ("params_wrong_type", OPEN, lambda fx: fx.update(params=[1, 2]), r"params: expected an object, got an array"),
    ("tolerance_wrong_type", OPEN, lambda fx: fx.update(tolerance=1e-10),
     r"tolerance: expected an object, got a number"),
    ("dtype_unknown", OPEN, lambda fx: fx.update(dtype="float16"), r"dtype: 'float16' is not one of"),
    ("missing_key", OPEN, lambda fx: fx.pop("tolerance"), r"top level: missing key 'tolerance'"),
    ("unknown_key", OPEN, lambda fx: fx.update(trajectroy=[]), r"top level: unknown key 'trajectroy'"),
    ("truncated_json", OPEN, _Text(lambda s: s[: len(s) // 2]), r"not valid JSON \(.* at line \d+ column \d+\)"),
    ("empty_file", OPEN, _Text(lambda s: ""), r"not valid JSON"),
    ("top_level_array", OPEN, _Text(lambda s: "[" + s + "]"), r"a fixture is a JSON object, this file holds an array"),
    ("huge_float", OPEN, _Text(lambda s: s.replace('"trajectory": [{"weight": [', '"trajectory": [{"weight": [1e999, ',
                                                  1)),
     r"trajectory\[0\]\.weight\[0\]: inf is not a finite number"),
    ("huge_int", OPEN, lambda fx: fx["params"]["bias"]["init"].__setitem__(0, 10**400),
     r"params\.bias\.init\[0\]: number with 401 digits is too large for a float"),
    ("int_beyond_parser_limit", OPEN,
     _Text(lambda s: s.replace('"trajectory": [', '"trajectory": [' + "9" * 5000 + ", ", 1)),
     r"not a usable JSON document"),
    ("huge_shape", OPEN, lambda fx: fx["params"]["bias"].update(shape=[2**40]),
     r"params\.bias\.shape\[0\]: 1099511627776 is not at most"),
    ("nan_hyperparameter", OPEN, lambda fx: fx["hyperparameters"].update(lr=math.nan),
     r"hyperparameters\.lr: nan is not a finite number"),
    ("duplicate_key", OPEN, _Text(lambda s: s.replace('"tolerance": {', '"tolerance": {"rtol": 1.0, ', 1)),
     r"duplicate key 'rtol' in one JSON object"),
    ("format_version", OPEN, lambda fx: fx.update(format="descend-optimizer-fixture/2"),
     r"format version 'descend-optimizer-fixture/2' is not supported \(this replayer reads "
     r"'descend-optimizer-fixture/1'\)"),
    ("other_format", OPEN, lambda fx: fx.update(format="descend-bilevel-fixture/1"), r"format 'descend-bilevel-"),
    ("batch_row_out_of_range", CLOSED, lambda fx: fx["problem"]["batches"][4].__setitem__(0, 999),
     r"problem\.batches\[4\]\[0\]: row 999 does not exist \(X has 64 rows\)"),
    ("label_not_binary", CLOSED, lambda fx: fx["problem"]["y"].__setitem__(2, 0.5),
     r"problem\.y\[2\]: 0\.5 is not a label 0 or 1"),
    ("replay_steps_disagree", CLOSED, lambda fx: fx["replay"].update(steps=41),
     r"replay\.steps: 41, but the trajectory has 40 steps"),
    ("hessian_update_repeated", FIXTURES / "sophia_g__k3_dead_row.json",
     lambda fx: fx["extra"]["hessian_updates"][1].update(after_step=3),
     r"extra\.hessian_updates: after_step values repeat"),
    ("hessian_update_beyond_steps", FIXTURES / "sophia_g__k3_dead_row.json",
     lambda fx: fx["extra"]["hessian_updates"][-1].update(after_step=31),
     r"extra\.hessian_updates\[9\]\.after_step: 31 is beyond the 30 recorded steps"),
    ("unregistered_and_malformed", UNREGISTERED, lambda fx: _set_all(fx, "trajectory", math.nan),
     r"trajectory\[0\]\.weight\[0\]: nan is not a finite number"),
]

BILEVEL_CASES: list[tuple[str, Path, Any, str]] = [
    ("all_nan_trajectory", BILEVEL, lambda fx: _set_all(fx, "trajectory", math.nan),
     r"trajectory\[0\]\.x\[0\]: nan is not a finite number"),
    ("negative_tolerance_wrong_values", BILEVEL,
     lambda fx: (_set_all(fx, "trajectory", 5.0), fx["tolerance"].update(rtol=-1.0)),
     r"tolerance\.rtol: -1\.0 is below the allowed minimum 0"),
    ("inf_tolerance_wrong_values", BILEVEL,
     lambda fx: (_set_all(fx, "trajectory", 5.0), fx["tolerance"].update(atol=math.inf)),
     r"tolerance\.atol: inf is not a finite number"),
    ("nan_observable_tolerance", BILEVEL, lambda fx: fx["observables_tolerance"]["float"]["g_opt"].update(
        rtol=math.nan), r"observables_tolerance\.float\.g_opt\.rtol: nan is not a finite number"),
    ("empty_trajectory", BILEVEL, lambda fx: fx.update(trajectory=[], trajectory_iterations=[]),
     r"trajectory_iterations: is empty"),
    ("observable_list_too_short", BILEVEL, lambda fx: fx["observables"]["g_opt"].pop(),
     r"observables\.g_opt: 59 entries, expected 60 \(one per iteration, hyperparameters\.K\)"),
    ("observable_nan", BILEVEL, lambda fx: fx["observables"]["f_value"].__setitem__(9, math.nan),
     r"observables\.f_value\[9\]: nan is not a finite number"),
    ("observable_tolerance_names_nothing", BILEVEL,
     lambda fx: fx["observables_tolerance"]["float"].update(nothing={"rtol": 1e-9}),
     r"observables_tolerance: 'nothing' names no recorded observable"),
    ("iterate_wrong_length", BILEVEL, lambda fx: fx["trajectory"][2]["v"].pop(),
     r"trajectory\[2\]\.v: 29 entries, expected 30 \(problem\.n\)"),
    ("missing_variable", BILEVEL, lambda fx: fx["trajectory"][1].pop("y"), r"trajectory\[1\]: missing variable 'y'"),
    ("k_mismatch", BILEVEL, lambda fx: fx["trajectory"][1].update(k=7), r"trajectory\[1\]\.k: 7"),
    ("problem_matrix_wrong_size", BILEVEL, lambda fx: fx["problem"]["G"].pop(),
     r"problem\.G: 899 entries, expected 900 \(an n x n matrix\)"),
    ("string_in_problem", BILEVEL, lambda fx: fx["problem"]["c"].__setitem__(0, "1"),
     r"problem\.c\[0\]: expected a finite number, got a string"),
    ("missing_iteration_count", BILEVEL, lambda fx: fx["hyperparameters"].pop("K"),
     r"hyperparameters: missing 'K'"),
    ("beyond_last_iteration", BILEVEL, lambda fx: fx["hyperparameters"].update(K=10),
     r"trajectory_iterations: \d+ is beyond the 10 iterations"),
    ("bome_xhat_row_string", BOME, lambda fx: fx["observables"]["xhat"][3].__setitem__(1, "x"),
     r"observables\.xhat\[3\]\[1\]: expected a finite number, got a string"),
    ("truncated_json", BILEVEL, _Text(lambda s: s[:1000]), r"not valid JSON"),
    ("non_utf8", BILEVEL, _Text(lambda s: s.replace('"description": "', '"description": "\udcfe', 1)
                                .encode("utf-8", "surrogateescape")), r"not UTF-8 text \(byte 0xfe"),
    ("duplicate_key", BILEVEL, _Text(lambda s: s.replace('"tolerance": {', '"tolerance": {"atol": 1.0, ', 1)),
     r"duplicate key 'atol'"),
    ("format_version", BILEVEL, lambda fx: fx.update(format="descend-bilevel-fixture/7"),
     r"format version 'descend-bilevel-fixture/7' is not supported"),
]


def _write(src: Path, mutate: Mutation | _Text, dst: Path) -> None:
    fx = json.loads(src.read_text(encoding="utf-8"))
    if isinstance(mutate, _Text):
        out = mutate.edit(json.dumps(fx))
    else:
        mutate(fx)
        out = json.dumps(fx)  # allow_nan: writes NaN / Infinity literals, as a careless recorder would
    dst.write_bytes(out if isinstance(out, bytes) else out.encode("utf-8"))


def _unregistered(d: Path) -> Path:
    """A well-formed fixture whose optimizer key no registered optimizer claims, written into ``d``."""
    dst = d / "unregistered.json"
    _write(UNREGISTERED, lambda fx: fx.update(optimizer="no_such_optimizer"), dst)
    return dst


def _run(module: str, files: list[Path], *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", module, *extra, *map(str, files)], capture_output=True, text=True,
                          check=False, env=env, timeout=600)


def _rows(stdout: str) -> dict[str, str]:
    """Output row of each fixture, keyed by file name (every row must be one line)."""
    rows: dict[str, str] = {}
    for line in stdout.splitlines()[1:-1]:
        name = line.split()[0]
        assert name not in rows, f"{name} reported twice"
        rows[name] = line
    return rows


@pytest.fixture(scope="module")
def optimizer_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    d = tmp_path_factory.mktemp("broken_optimizer_fixtures")
    files = []
    for case, src, mutate, _ in OPTIMIZER_CASES:
        _write(src, mutate, d / f"{case}.json")
        files.append(d / f"{case}.json")
    fails = d / "wrong_values.json"
    _write(OPEN, _wrong_values, fails)
    run = _run("descend.optim.replay", [*files, fails, OPEN, _unregistered(d)])
    return run, _rows(run.stdout)


@pytest.mark.parametrize("case, src, mutate, message", OPTIMIZER_CASES, ids=[c[0] for c in OPTIMIZER_CASES])
def test_optimizer_replayer_refuses_broken_file(optimizer_run: Any, case: str, src: Path, mutate: Any,
                                               message: str) -> None:
    _, rows = optimizer_run
    row = rows[f"{case}.json"]
    assert "REFUSED: " in row and re.search(message, row), row


def test_optimizer_replayer_reports_every_file_with_the_worst_status(optimizer_run: Any) -> None:
    run, rows = optimizer_run
    assert "Traceback" not in run.stdout + run.stderr, run.stderr
    assert len(rows) == len(OPTIMIZER_CASES) + 3
    assert re.search(r"\bFAIL \(first at step 1\)", rows["wrong_values.json"])
    assert rows[OPEN.name].endswith("ok")
    assert "skipped: no registered optimizer for fixture optimizer 'no_such_optimizer'" in rows["unregistered.json"]
    assert run.stdout.splitlines()[-1] == (f"1 passed, 1 failed, {len(OPTIMIZER_CASES)} refused (not valid "
                                           "fixtures), 1 skipped (nothing registered replays them), 0 errors")
    assert run.returncode == 2


@pytest.fixture(scope="module")
def bilevel_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    d = tmp_path_factory.mktemp("broken_bilevel_fixtures")
    files = []
    for case, src, mutate, _ in BILEVEL_CASES:
        _write(src, mutate, d / f"{case}.json")
        files.append(d / f"{case}.json")
    unknown = d / "unknown_solver.json"
    _write(BILEVEL, lambda fx: fx.update(solver="new_solver"), unknown)
    run = _run("descend.bilevel.replay", [*files, unknown], "--no-diagnostics")
    return run, _rows(run.stdout)


@pytest.mark.parametrize("case, src, mutate, message", BILEVEL_CASES, ids=[c[0] for c in BILEVEL_CASES])
def test_bilevel_replayer_refuses_broken_file(bilevel_run: Any, case: str, src: Path, mutate: Any,
                                             message: str) -> None:
    _, rows = bilevel_run
    row = rows[f"{case}.json"]
    assert "REFUSED: " in row and re.search(message, row), row


def test_bilevel_replayer_reports_every_file(bilevel_run: Any) -> None:
    run, rows = bilevel_run
    assert "Traceback" not in run.stdout + run.stderr, run.stderr
    assert len(rows) == len(BILEVEL_CASES) + 1
    assert "skipped: no registered solver for fixture solver 'new_solver'" in rows["unknown_solver.json"]
    assert run.returncode == 2


# ----------------------------------------------------------------------------------------------------
# exit statuses of single outcomes


def test_exit_status_of_each_outcome(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """In process (the subprocess runs above cover ``python -m``): one file of each outcome alone."""
    wrong = tmp_path / "wrong.json"
    _write(OPEN, _wrong_values, wrong)
    refused = tmp_path / "refused.json"
    _write(OPEN, lambda fx: fx.update(trajectory=[]), refused)
    assert main([str(OPEN)]) == 0
    assert main([str(wrong)]) == 1
    assert main([str(refused)]) == 2
    unregistered = _unregistered(tmp_path)
    assert main([str(unregistered)]) == 0
    assert "0 passed, 0 failed, 0 refused (not valid fixtures), 1 skipped" in capsys.readouterr().out
    assert main(["--strict", str(unregistered)]) == 3
    assert main([str(tmp_path / "missing.json")]) == 2
    assert "REFUSED: cannot read the file (No such file or directory)" in capsys.readouterr().out
    assert main([str(wrong), str(OPEN), str(unregistered)]) == 1  # the worst status wins


def test_a_replay_that_raises_is_one_error_line_and_the_others_still_run(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import descend.optim.replay as replay_mod

    real = replay_mod.replay_file

    def flaky(path: Any) -> Any:
        if Path(path).name == OPEN.name:
            raise RuntimeError("simulated bug\nwith a second line")
        return real(path)

    monkeypatch.setattr(replay_mod, "replay_file", flaky)
    other = FIXTURES / "lion__wd_dead_row.json"
    assert main([str(OPEN), str(other)]) == 2
    rows = _rows(capsys.readouterr().out)
    assert rows[OPEN.name].endswith("ERROR: the replay raised RuntimeError: simulated bug with a second line")
    assert rows[other.name].endswith("ok")


# ----------------------------------------------------------------------------------------------------
# in-process: the comparison itself


@pytest.mark.parametrize("actual, expected", [
    (math.nan, 1.0), (1.0, math.nan), (math.nan, math.nan), (math.inf, math.inf), (-math.inf, math.inf),
    (math.inf, 1.0), (1.0, math.inf),
])
def test_comparator_fails_on_non_finite_values(actual: float, expected: float) -> None:
    c = Comparator(rtol=1e-3, atol=1e-3)
    r = c.compare([0.5, actual], [0.5, expected], 1)
    assert r > 1 and c.first_fail == 1 and not c.passed


def test_comparator_passes_exact_and_within_tolerance() -> None:
    c = Comparator(rtol=0.0, atol=0.0)
    assert c.compare([0.0, 2.0], [0.0, 2.0], 1) == 0.0 and c.passed
    c = Comparator(rtol=1e-6, atol=0.0)
    assert c.compare([1.0 + 5e-7], [1.0], 1) <= 1.0 and c.passed
    assert c.compare([1.0 + 2e-6], [1.0], 2) > 1.0 and c.first_fail == 2


@pytest.mark.parametrize("rtol, atol", [(-1e-9, 0.0), (0.0, math.nan), (math.inf, 0.0)])
def test_comparator_refuses_a_tolerance_that_cannot_fail(rtol: float, atol: float) -> None:
    with pytest.raises(FixtureError):
        Comparator(rtol, atol)


def test_an_optimizer_that_diverges_fails() -> None:
    """NaN/inf on the replayed side: a learning rate of 1e300 sends Lion's parameters to inf (and NaN)."""
    fx = copy.deepcopy(load_fixture(OPEN))
    fx["hyperparameters"]["lr"] = 1e300
    fx["hyperparameters"]["weight_decay"] = 1e10
    result = replay(fx, "diverging")
    assert not result.passed and result.first_failing_step is not None and result.max_ratio > 1


def test_an_observable_the_optimizer_does_not_report_is_listed_unchecked() -> None:
    fx = copy.deepcopy(load_fixture(FIXTURES / "sls_armijo_sgd__least_squares_full_batch.json"))
    fx["extra"]["s_sum"] = [1.0] * len(fx["trajectory"])  # Mechanic's observable: SLS does not report it
    result = replay(fx, "sls")
    assert result.passed and result.unchecked == ["s_sum"] and "step_size" in result.observable_ratios


def test_nan_written_into_memory_is_refused_too() -> None:
    """The in-process API validates like the command line."""
    fx = copy.deepcopy(load_fixture(OPEN))
    fx["trajectory"][0]["weight"][0] = float("nan")
    with pytest.raises(FixtureError, match=r"trajectory\[0\]\.weight\[0\]: nan is not a finite number"):
        replay(fx, "nan")
    fx = copy.deepcopy(load_fixture(OPEN))
    fx["params"]["weight"]["init"] = torch.zeros(24).tolist()[:23]
    with pytest.raises(FixtureError, match="23 entries, expected 24"):
        replay(fx, "short")
