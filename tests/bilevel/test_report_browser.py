"""The bilevel report as Chromium lays it out: the grid-edge note (a tiny grid has two values per axis, so every
selected configuration is on its edge) shown before the results, the results table with a row per solver, and
both figures decoded in the Figures section.  Driven through the CLI, as a user makes the report."""

from __future__ import annotations

from typer.testing import CliRunner

from descend.cli import app
from tests.bench.test_report import _layout


def test_bilevel_report_sections_and_grid_edge_note(tmp_path):
    out = tmp_path / "bilevel.html"
    r = CliRunner().invoke(app, ["bilevel", "run", "--problem", "quadratic", "--solvers", "aid_cg,soba", "--grid",
                                 "tiny", "--seeds", "2", "--tune-seeds", "1", "--budget", "6it", "--quiet",
                                 "--storage", str(tmp_path / "b.db"), "--report", str(out)])
    assert r.exit_code == 0, r.output
    assert "on the edge of grid 'tiny'" in r.output  # the warning on the terminal, too
    layout = _layout(out, tmp_path)
    titles = [s["title"] for s in layout["sections"]]
    assert titles[:2] == ["Results", "Figures"], titles
    assert layout["duplicate_ids"] == []
    sections = {s["title"]: s for s in layout["sections"]}
    assert sections["Results"]["tables"] == 1 and sections["Results"]["rows"] == 1 + 2
    assert "grid edge:" in sections["Results"]["text"]  # the selected-config cell names the edge
    figures = sections["Figures"]
    assert figures["images"] == 2 == figures["rendered"] == layout["rendered"] == layout["figures"]
    # the note is laid out above the first section, visible, naming each solver
    note = layout["preamble"]
    assert "Grid edge:" in note and "aid_cg" in note and "soba" in note, note
