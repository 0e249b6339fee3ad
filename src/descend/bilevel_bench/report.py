"""The bilevel benchmark's HTML report (one self-contained file) and ``descend bilevel list``'s text."""

from __future__ import annotations

import html
import json
import math
import time
from pathlib import Path
from typing import Any

from .spec import GRIDS, PROBLEMS, SOLVERS
from .summary import BilevelSummary, _fmt, _median, band, edge_warnings, table_rows

__all__ = ["describe", "write_html"]


def _curve_figure(summary: BilevelSummary, x_key: str, colors: dict[str, Any]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..results.html import png_base64

    fig, ax = plt.subplots(figsize=(5.6, 3.6))
    positive = True
    for s, r in summary.results.items():
        xs, lo, mid, hi = band(r.histories, x_key, summary.metric)
        fin = [(x, a, m, b) for x, a, m, b in zip(xs, lo, mid, hi, strict=True) if math.isfinite(m)]
        if not fin:
            continue
        xs, lo, mid, hi = (list(t) for t in zip(*fin, strict=True))
        hi = [h if math.isfinite(h) else max(mid) for h in hi]
        positive &= all(v > 0 for v in lo + mid)
        ax.plot(xs, mid, label=s, color=colors[s])
        ax.fill_between(xs, lo, hi, color=colors[s], alpha=0.18)
    for k, vals in summary.references.items():
        ax.axhline(_median(vals), ls="--", lw=1, color="gray" if k.startswith("val") else "black",
                   label="clean validation only" if k.startswith("val") else "true labels")
    if math.isfinite(summary.target):
        ax.axhline(summary.target, ls=":", lw=1, color="red", label="target")
    ax.set_xlabel("solver wall time (s)" if x_key == "time" else "oracle calls (gradients + HVPs + JVPs)")
    ax.set_ylabel(summary.metric)
    if positive and summary.metric != "test_error":
        ax.set_yscale("log")
    ax.set_title(f"{summary.problem}: median, 20–80 % band over seeds", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return png_base64(fig)


def write_html(summary: BilevelSummary, path: str | Path) -> Path:
    """One self-contained HTML file (figures as base64 PNG, like ``descend bench report``)."""
    from ..results.html import colors, write_document

    esc = html.escape
    palette = colors(list(summary.results))
    figs = [(f"{summary.metric} vs solver wall time", _curve_figure(summary, "time", palette)),
            (f"{summary.metric} vs oracle calls", _curve_figure(summary, "oracle_calls", palette))]
    rows = table_rows(summary)
    table = "".join(f"<tr><td>{esc(r['solver'])}</td><td>{esc(r['final'])}</td><td>{esc(r['time_to_target'])}</td>"
                    f"<td>{esc(r['oracles_to_target'])}</td><td>{esc(r['config'])}</td><td>{esc(r['seeds'])}</td>"
                    "</tr>" for r in rows)
    images = "".join(f'<figure><img alt="{esc(t)}" src="data:image/png;base64,{b}"><figcaption>{esc(t)}'
                     "</figcaption></figure>" for t, b in figs)
    prov = "".join(f"<tr><td>{esc(str(k))}</td><td>{esc(str(v))}</td></tr>"
                   for k, v in sorted(summary.provenance.items()))
    plan = "".join(f"<tr><td>{esc(str(k))}</td><td>{esc(str(v))}</td></tr>" for k, v in sorted(summary.config.items()))
    spec = PROBLEMS[summary.problem]
    warns = edge_warnings(summary)
    warn = ("<p><strong>Grid edge:</strong> a configuration on the edge of the grid was selected; the best one may "
            "lie outside it (rerun with a larger grid):</p><ul>" + "".join(f"<li>{esc(w)}</li>" for w in warns)
            + "</ul>") if warns else ""
    doc = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>descend bilevel — {esc(summary.plan)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1300px}}table{{border-collapse:collapse;
font-size:13px}}td,th{{border:1px solid #ccc;padding:3px 6px;text-align:left}}
figure{{display:inline-block;margin:6px}}figcaption{{font-size:12px;color:#444}}</style></head>
<body><h1>descend bilevel: {esc(summary.plan)}</h1>
<p>{esc(spec.description)}. Every solver got the same grid over step size (× 1/L) × outer/inner step ratio and the
same budget ({esc(str(summary.config.get("budget")))}) on the same {summary.config.get("tune_seeds")} tuning seed(s)
({summary.tuned_runs} tuning runs); the configuration with the best median validation curve (outer objective,
{esc(str(summary.config.get("select")))}) was rerun on fresh seeds. Curves: median and 20–80 % band over those
seeds. Target = {_fmt(summary.target)} ({esc(spec.target)} of the best solver's median final value); time and oracle
calls to target are medians over seeds, misses counted as not reached. Evaluation is off the clock.</p>
{warn}
<h2>Results</h2>
<table><tr><th>solver</th><th>final {esc(summary.metric)} median [20 %, 80 %]</th><th>solver time to target (s)
</th><th>oracle calls to target</th><th>selected config</th><th>seeds</th></tr>{table}</table>
<h2>Figures</h2>{images}
<h2>Plan</h2><table>{plan}</table>
<h2>Provenance</h2><table>{prov}</table>
<p>Generated {time.strftime("%Y-%m-%d %H:%M:%S")} by descend.</p>
</body></html>
"""
    return write_document(doc, path)


def describe() -> str:
    """The text of ``descend bilevel list``."""
    lines = ["problems:"]
    lines += [f"  {n:<24} {p.description} (report: {p.report_key})" for n, p in PROBLEMS.items()]
    lines.append("solvers:")
    lines += [f"  {n:<12} {s.description}" for n, s in SOLVERS.items()]
    lines.append("grids (step × 1/L values; outer/inner ratio × problem base):")
    lines += [f"  {n:<8} {json.dumps(list(s))} × {json.dumps(list(r))}" for n, (s, r) in GRIDS.items()]
    return "\n".join(lines)
