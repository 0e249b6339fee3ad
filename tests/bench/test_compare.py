"""``descend.bench.compare``: the documented example runs as written, at tiny size."""

from __future__ import annotations

import math

import pytest

import descend.bench
from descend.bench import compare as compare_fn
from descend.bench import compare as compare_module_attr


def _example() -> str:
    doc = __import__("descend.bench.compare", fromlist=["x"]).__doc__
    block = doc.split("Example (runs in a few seconds; see ``tests/bench/test_compare.py``)::", 1)[1]
    lines = [ln[4:] if ln.startswith("    ") else ln for ln in block.splitlines()]
    return "\n".join(lines).strip().replace("\\\\n", "\\n")


def test_the_documented_example_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = _example()
    assert "compare(build" in code and "result.report" in code
    scope: dict = {}
    exec(compile(code, "compare-example", "exec"), scope)  # the docstring's code, verbatim
    result = scope["result"]
    assert (tmp_path / "compare.html").exists()
    rows = result.rows
    assert {r["optimizer"] for r in rows} == {"adamw", "adamw#2", "lion"}
    out = capsys.readouterr().out
    assert "lion" in out and "AdamW against its own ladder" in out
    assert result.summary.missing == []
    sp = result.summary.cells[f"{result.plan.cells[0][0]}:s"]["lion"].speedup
    assert sp is not None and (sp.refused or math.isfinite(sp.point.value))
    board = result.leaderboard
    try:
        import pandas  # noqa: F401
    except ImportError:
        assert board == rows
    else:
        assert list(board["optimizer"]) == [r["optimizer"] for r in rows]


def test_compare_is_the_package_attribute_and_rejects_bad_input():
    assert descend.bench.compare is compare_fn is compare_module_attr and callable(compare_fn)
    with pytest.raises(ValueError, match="steps"):
        compare_fn(lambda seed: None, optimizers=["adamw"])
    with pytest.raises(ValueError, match="trials"):
        compare_fn("logreg_breast_cancer", trials=0)
    with pytest.raises(TypeError, match="workload"):
        compare_fn(42)  # type: ignore[arg-type]
    with pytest.raises(KeyError):
        compare_fn("no_such_workload")
