"""``descend claims|classic|rl|surrogate report --format table|csv|json|markdown``: one shared implementation
(descend.cli._common.print_rows); each command's csv and json parse back to the same rows, stdout holds only the
data (the ``report:`` line goes to stderr), and a bad value is one ``error:`` line with exit code 2."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from descend.cli import app

runner = CliRunner()

# the smallest real run of each family (seconds), and what its report's rows must hold
RUNS: dict[str, list[str]] = {
    "claims": ["claims", "run", "E3", "--set", "steps=2000 exact_steps=1500", "--set", "asym_steps=9000"],
    "classic": ["classic", "run", "gns", "--problem", "rosenbrock", "--quiet"],
    "rl": ["rl", "run", "--env", "tabular", "--methods", "n_pg_igt,gpomdp", "--seeds", "2", "--budget", "20",
           "--eval-every", "10"],
    "surrogate": ["surrogate", "run", "attack", "--seeds", "1", "--budget", "12"],
}


def _expect(group: str, rows: list[dict[str, Any]]) -> None:
    if group == "claims":
        assert [(r["claim"], r["setting"], r["seed"]) for r in rows] == [("E3", "asym_steps=9000, exact_steps=1500, "
                                                                          "steps=2000", "0")]
        assert rows[0]["verdict"] in ("PASS", "FAIL")
    elif group == "classic":
        assert {(r["study"], r["method"]) for r in rows} == {("gns/rosenbrock", "exact"),
                                                            ("gns/rosenbrock", "p5-inexact")}
        assert all(r["iterations"] for r in rows)
    elif group == "rl":
        assert {(r["env"], r["method"]) for r in rows} == {("tabular", "n_pg_igt"), ("tabular", "gpomdp")}
        assert all(str(r["seeds"]) == "2" for r in rows)
        assert all(0.0 < float(r["final return (median)"]) < 10.0 for r in rows)  # exact J ∈ (0, 1/(1−γ))
    else:
        assert {(r["study"], r["method"]) for r in rows} == {("attack", m) for m in ("hybrid", "cdsm", "coordinate")}
        assert all(r["starts"] == "1" for r in rows)


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("formats")
    out = {}
    for group, args in RUNS.items():
        db = root / f"{group}.db"
        res = runner.invoke(app, [*args, "--storage", str(db)])
        assert res.exit_code == 0, (group, res.output)
        out[group] = db
    return out


def _report(group: str, db: Path, tmp_path: Path, fmt: str) -> Any:
    html = tmp_path / f"{group}-{fmt}.html"
    res = runner.invoke(app, [group, "report", "--storage", str(db), "--out", str(html), "--format", fmt])
    assert res.exit_code == 0, res.output
    assert html.is_file() and f"report: {html}" in res.output
    return res


@pytest.mark.parametrize("group", list(RUNS))
def test_every_format_prints_the_same_rows(group: str, stores: dict[str, Path], tmp_path: Path) -> None:
    as_json = json.loads(_report(group, stores[group], tmp_path, "json").stdout)  # stdout is pure JSON
    as_csv = list(csv.DictReader(io.StringIO(_report(group, stores[group], tmp_path, "csv").stdout)))
    _expect(group, as_json)
    _expect(group, as_csv)
    assert len(as_json) == len(as_csv) > 0
    for j, c in zip(as_json, as_csv, strict=True):  # one set of rows: numbers in full in both
        assert list(j) == list(c)
        assert {k: "" if v is None else str(v) for k, v in j.items()} == c
    md = _report(group, stores[group], tmp_path, "markdown").stdout.splitlines()
    assert md[0] == "| " + " | ".join(as_json[0]) + " |" and md[1] == "|" + "---|" * len(as_json[0])
    assert len([line for line in md if line.startswith("| ")]) == 1 + len(as_json)
    table = _report(group, stores[group], tmp_path, "table").stdout
    assert f"descend {group}" in table  # the rich table's title
    short = [str(v) for v in as_json[0].values() if v is not None and len(str(v)) <= 6]  # long cells fold
    assert short and all(v in table for v in short), (short, table)


@pytest.mark.parametrize("group", list(RUNS))
def test_bad_format_is_one_line_exit_2(group: str, tmp_path: Path) -> None:
    html = tmp_path / "x.html"
    res = runner.invoke(app, [group, "report", "--storage", str(tmp_path / "none.db"), "--out", str(html),
                              "--format", "yaml"])
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert lines == ["error: --format must be table, csv, json or markdown, got 'yaml'"], res.output
    assert not html.exists() and not (tmp_path / "none.db").exists()


#: per family: the <h2> sections its report has for the stored runs above, and rows of each section's tables
#: (header + one per stored method/run; claims: the overview above the first section, then the checks)
SECTIONS = {
    "claims": (["E3 — "], None),
    "classic": (["gns/rosenbrock — "], 1 + 2),
    "rl": (["tabular"], 1 + 2),
    "surrogate": (["attack"], 1 + 3),
}


@pytest.mark.parametrize("group", list(RUNS))
def test_html_report_renders_in_the_browser(group: str, stores: dict[str, Path], tmp_path: Path) -> None:
    """Each family's page as Chromium lays it out: its sections, every figure decoded inside its section, the
    tables' rows (the same rows ``--format`` prints), no id used twice."""
    from tests.bench.test_report import _layout

    res = _report(group, stores[group], tmp_path, "json")
    rows = json.loads(res.stdout)
    layout = _layout(tmp_path / f"{group}-json.html", tmp_path)
    prefixes, table_rows = SECTIONS[group]
    titles = [s["title"] for s in layout["sections"]]
    assert len(titles) == len(prefixes) and all(t.startswith(p) for t, p in zip(titles, prefixes, strict=True)), titles
    assert layout["duplicate_ids"] == []
    for s in layout["sections"]:
        assert s["images"] >= 1 and s["rendered"] == s["images"], s
        if table_rows is not None:
            assert s["rows"] == table_rows == 1 + len(rows), s
    assert layout["figures"] == layout["rendered"] == sum(s["images"] for s in layout["sections"])
    if group == "claims":  # the overview (the rows printed above) sits above the first claim's section
        assert rows[0]["verdict"] in layout["preamble"] and rows[0]["setting"] in layout["preamble"]
