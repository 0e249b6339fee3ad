"""The benchmark report's newer sections, checked as Chromium lays them out: the verdict first, every section
visible and in order, each figure decoded in its own section, the leaderboard's rows, no id used twice."""

from __future__ import annotations

from descend.bench.report import summarize, write_html
from descend.bench.storage import Storage

from .conftest import Finished
from .test_report import _layout

SECTIONS = ["Verdict", "Leaderboard", "Curves", "AdamW's budget ladder", "Tuning-noise floor", "Scaling-law view",
            "Aggregates", "Protocol", "Provenance"]


def test_report_sections_in_the_browser(finished_plan: Finished, tmp_path):
    summary = summarize(Storage(finished_plan.url), finished_plan.plan.name)
    layout = _layout(write_html(summary, tmp_path / "report.html"), tmp_path)
    sections = {s["title"]: s for s in layout["sections"]}
    assert [s["title"] for s in layout["sections"]] == SECTIONS
    assert layout["duplicate_ids"] == [], f"ids used twice: {layout['duplicate_ids']}"
    verdict = sections["Verdict"]
    assert "reaches AdamW's final value" in verdict["text"] or "Within tuning noise" in verdict["text"]
    for arm in finished_plan.plan.arms():
        assert arm in verdict["text"] or arm == "adamw", (arm, verdict["text"])  # a line per optimizer vs AdamW
    board = sections["Leaderboard"]
    assert board["tables"] == 1 and board["rows"] == 1 + len(finished_plan.plan.arms())
    for title in ("Curves", "AdamW's budget ladder", "Aggregates"):  # figures sit in their sections and decode
        assert sections[title]["images"] >= 1 and sections[title]["rendered"] == sections[title]["images"], title
    assert sum(s["images"] for s in layout["sections"]) == layout["figures"] == layout["rendered"] > 0
