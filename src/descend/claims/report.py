"""Claims ⇄ the shared results store (family ``"claims"``) and the HTML report (needs the ``bench`` extra).

One record per (claim, seed, setting): ``study`` = the claim id, ``method`` = ``"experiment"``, ``setting`` = the
full setting, ``curve`` = the claim's plot data, ``summary`` = verdict, checks, seconds, title.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import claim_ids, get_claim
from ._base import ClaimResult

__all__ = ["FAMILY", "METHOD", "check_rows", "from_record", "overview_rows", "to_record", "write_report"]

FAMILY = "claims"
METHOD = "experiment"


def to_record(result: ClaimResult) -> Any:
    from ..results import Record

    claim = get_claim(result.claim)
    summary = {"verdict": result.verdict, "title": claim.title, "seconds": round(result.seconds, 2),
               "checks": [c.as_dict() for c in result.checks]}
    return Record(FAMILY, result.claim, METHOD, result.seed, result.setting, result.curve, summary)


def from_record(record: Any) -> dict[str, Any]:
    """A stored record as ``{claim, seed, setting, curve, verdict, seconds, checks, created}``."""
    s = record.summary
    return {"claim": record.study, "seed": record.seed, "setting": dict(record.setting), "curve": dict(record.curve),
            "verdict": s.get("verdict", "?"), "seconds": s.get("seconds", float("nan")),
            "checks": list(s.get("checks", [])), "created": record.created}


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def check_rows(checks: list[dict[str, Any]]) -> list[dict[str, str]]:
    rows = []
    for c in checks:
        if c["kind"] == "close":
            expect = f"{c['predicted']:.4g} ± {c['tolerance']:.2g}"
        else:
            expect = f"{'≤' if c['kind'] == 'at_most' else '≥'} {c['predicted']:.4g}"
        rows.append({"check": c["name"], "predicted": expect, "measured": f"{c['measured']:.4g}",
                     "verdict": "PASS" if c["passed"] else "FAIL", "note": c.get("note", "")})
    return rows


def _setting_label(claim: Any, setting: dict[str, Any]) -> str:
    default = claim.Setting().as_dict()
    changed = {k: v for k, v in setting.items() if default.get(k) != v}
    return ", ".join(f"{k}={_fmt(v)}" for k, v in changed.items()) or "default setting"


def overview_rows(store: Any) -> list[dict[str, str]]:
    """One row per stored run — claim, setting (what differs from the default), seed, verdict, seconds — claims
    in id order, the latest run first (the report's overview table; ``descend claims report`` prints it)."""
    records = [from_record(r) for r in store.records(FAMILY)]
    rows = []
    for cid in claim_ids():
        claim = get_claim(cid)
        for r in [r for r in records if r["claim"] == cid][::-1]:
            rows.append({"claim": cid, "setting": _setting_label(claim, r["setting"]), "seed": str(r["seed"]),
                         "verdict": r["verdict"], "seconds": f"{r['seconds']:.1f}"})
    return rows


def write_report(store: Any, out: str | Path) -> Path:
    """One section per claim with stored results (the latest record of each setting/seed): paper, prediction,
    tolerance, the measured-vs-predicted plot and the checks."""
    import html

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..results.html import figure_html, table_html, write_page

    records = [from_record(r) for r in store.records(FAMILY)]
    overview = overview_rows(store)
    sections = []
    for cid in claim_ids():
        mine = [r for r in records if r["claim"] == cid]
        if not mine:
            continue
        claim = get_claim(cid)
        parts = [f"<h2 id='{cid}'>{cid} — {html.escape(claim.title)}</h2>",
                 f"<p><b>Paper.</b> {html.escape(claim.paper.cite())}<br><b>Prediction.</b> "
                 f"{html.escape(claim.prediction)}<br><b>Tolerance.</b> {html.escape(claim.tolerance_why)}</p>"]
        for r in mine[::-1]:
            label = _setting_label(claim, r["setting"])
            fig = plt.figure(figsize=(10, 3.6))
            try:
                claim.plot(r["curve"], r["setting"], fig)
                fig.suptitle(f"{cid} ({label}, seed {r['seed']}): {r['verdict']}", fontsize=10)
                fig.tight_layout()
            except Exception:
                plt.close(fig)
                raise
            parts.append(f"<h3>{html.escape(label)} · seed {r['seed']} · "
                         f"<span class={r['verdict'].lower()}>{r['verdict']}</span></h3>")
            parts.append(figure_html(fig, f"{cid}: measured vs predicted ({label})"))
            parts.append(table_html(check_rows(r["checks"]), classes={"PASS": "pass", "FAIL": "fail"}))
        sections.append("\n".join(parts))
    body = ("<p>Each claim: the paper's prediction computed from the setting, the experiment's measurement, and the "
            "verdict (PASS only if every check is within its stated tolerance). Reproduce with "
            "<code>descend claims run --all</code>.</p>"
            + table_html(overview, classes={"PASS": "pass", "FAIL": "fail"}) + "\n".join(sections))
    return write_page("descend claims", body, out)
