"""descend.results: the results table every family shares, and the HTML page writer."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from descend.bench.storage import Storage
from descend.results import Record, ResultStore, StorageError
from descend.results.html import figure_html, table_html, write_page


def _rec(**kw: object) -> Record:
    base: dict[str, object] = dict(family="claims", study="E7", method="min_norm", seed=0, setting={"n": 40, "p": 80},
                                   curve={"p": [50, 80], "risk": [0.5, float("inf")]}, summary={"verdict": "PASS"})
    base.update(kw)
    return Record(**base)  # type: ignore[arg-type]


def test_add_is_idempotent_and_round_trips(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "r.db")
    assert store.add(_rec())
    assert not store.add(_rec(summary={"verdict": "FAIL"}))  # same key: nothing written, the first one kept
    assert store.add(_rec(seed=1)) and store.add(_rec(setting={"n": 40, "p": 90}))
    got = ResultStore(str(tmp_path / "r.db"), create=False).records("claims", study="E7")
    assert len(got) == 3 and got[0].summary == {"verdict": "PASS"}
    assert got[0].curve == {"p": [50.0, 80.0], "risk": [0.5, float("inf")]}  # infinities survive JSON
    assert got[0].provenance and "torch" in got[0].provenance
    assert store.has("claims", "E7", "min_norm", 1, {"n": 40, "p": 80})
    assert not store.has("claims", "E7", "min_norm", 2, {"n": 40, "p": 80})
    assert store.records("claims", method="other") == [] and store.studies("claims") == ["E7"]


def test_shares_a_database_with_the_benchmark(tmp_path: Path) -> None:
    db = tmp_path / "bench.db"
    Storage(str(db)).save_plan("p", {"x": 1})
    store = ResultStore(str(db))
    assert store.add(_rec())
    assert Storage(str(db), create=False).plans() == {"p": {"x": 1}}  # the benchmark still opens it
    db2 = tmp_path / "results-first.db"
    ResultStore(str(db2)).add(_rec())
    Storage(str(db2)).save_plan("p", {"x": 1})  # and the other way round
    assert len(ResultStore(str(db2)).records("claims")) == 1


@pytest.mark.parametrize(("kw", "message"), [
    ({"family": ""}, "Record.family must be a non-empty string"),
    ({"seed": -1}, r"Record.seed must be an int in \[0, 2\*\*31\)"),
    ({"seed": True}, "Record.seed"),
    ({"curve": {"loss": ["a"]}}, r"Record.curve\['loss'\] must be a sequence of numbers"),
    ({"setting": {"f": object()}}, "Record.setting must be JSON-serialisable"),
    ({"summary": [1]}, "Record.summary must be a mapping"),
])
def test_bad_records_are_refused_before_anything_is_written(tmp_path: Path, kw: dict[str, object],
                                                            message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _rec(**kw)


def test_bad_databases_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="no benchmark database at"):
        ResultStore(str(tmp_path / "missing.db"), create=False)
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("create table users (id integer)")
    with pytest.raises(StorageError, match="database of something else"):
        ResultStore(str(foreign))
    with pytest.raises(StorageError, match="in-memory"):
        ResultStore(":memory:")
    good = tmp_path / "r.db"
    ResultStore(str(good)).add(_rec())
    with sqlite3.connect(good) as conn:  # tampered JSON: reported, never evaluated
        conn.execute("update descend_results set summary = '[1, 2'")
    with pytest.raises(StorageError, match="corrupt or was tampered with"):
        ResultStore(str(good)).records("claims")


def test_html_page_escapes_and_embeds(tmp_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    body = figure_html(fig, "a <b> caption") + table_html([{"claim": "<E1>", "verdict": "PASS"}],
                                                           classes={"PASS": "pass"})
    doc = write_page("t & t", body, tmp_path / "sub" / "p.html").read_text()
    assert "<title>t &amp; t</title>" in doc and "&lt;E1&gt;" in doc and "<td class=pass>PASS</td>" in doc
    assert 'src="data:image/png;base64,' in doc and "data-rendered" in doc
    assert table_html([]) == "<p>No results.</p>"
