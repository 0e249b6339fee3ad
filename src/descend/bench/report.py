"""From stored runs to numbers (:func:`summarize`) and to one self-contained HTML report (:func:`write_html`).

The report only reads the database.  For each cell (workload, scale):

* final validation metric per optimizer, mean and 95 % bootstrap CI over the final seeds;
* the **target** is the worst final validation value over tuned AdamW's seeds (so the baseline reaches it on
  every seed; without AdamW in the plan, the best optimizer's mean); steps- and wall-time-to-target on each
  seed's curve, misses counted as not reached;
* the **speedup over AdamW**: steps AdamW needs to reach this optimizer's final loss, interpolated on AdamW's
  mean curve, ÷ steps used (a lower bound, marked ``≥``, when AdamW never gets there), with a CI over seeds.

Across cells: AlgoPerf-style performance profiles of wall-time-to-target (τ ∈ [1, 4]) and the geometric mean
of speedups.  Figures are drawn with matplotlib and embedded as base64 PNG, so the file stands alone.
"""

from __future__ import annotations

import base64
import html
import io
import math
import statistics
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import metrics
from .storage import RunRow, Storage

__all__ = ["CellResult", "Summary", "summarize", "write_html"]

TAUS = [1 + 3 * i / 60 for i in range(61)]


@dataclass
class CellResult:
    """One optimizer on one cell."""

    optimizer: str
    final: list[float]  # final validation metric per seed
    steps_used: int
    steps_to_target: list[float]
    time_to_target: list[float]
    speedups: list[metrics.Speedup]
    hyperparameters: dict[str, Any]
    tune_trials: int
    train_time: float  # mean wall time of a final run's training steps
    overhead: float  # mean harness overhead fraction
    curves: list[list[dict[str, float]]] = field(default_factory=list)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.final) if self.final else math.nan

    @property
    def ci(self) -> tuple[float, float]:
        finite = [v for v in self.final if math.isfinite(v)]
        return metrics.bootstrap_ci(finite) if finite else (math.inf, math.inf)

    @property
    def speedup(self) -> float:
        vals = [s.value for s in self.speedups if s.value > 0]
        return metrics.geometric_mean(vals) if vals else math.nan

    @property
    def speedup_ci(self) -> tuple[float, float]:
        vals = [s.value for s in self.speedups if s.value > 0]
        return metrics.bootstrap_ci(vals, statistic="gmean") if vals else (math.nan, math.nan)

    @property
    def censored(self) -> bool:
        return any(s.censored for s in self.speedups)


@dataclass
class Summary:
    plan: str
    metric: dict[str, str]
    cells: dict[str, dict[str, CellResult]]  # cell -> optimizer -> result
    targets: dict[str, float]
    baseline: str | None
    provenance: dict[str, Any]
    missing: list[str]

    def profile(self) -> dict[str, list[float]]:
        times: dict[str, dict[str, float]] = defaultdict(dict)
        for cell, res in self.cells.items():
            for opt, r in res.items():
                finite = [t for t in r.time_to_target if math.isfinite(t)]
                times[opt][cell] = statistics.median(r.time_to_target) if len(finite) * 2 > len(r.time_to_target) \
                    else math.inf
        return metrics.performance_profile(times, TAUS) if times else {}


def _mean_curve(curves: list[list[dict[str, float]]], key: str) -> tuple[list[float], list[float]]:
    steps = sorted({row["step"] for c in curves for row in c})
    out_x, out_y = [], []
    for s in steps:
        vals = [row.get(key, math.inf) for c in curves for row in c if row["step"] == s]
        if len(vals) == len(curves):
            out_x.append(float(s))
            out_y.append(statistics.fmean(vals))
    return out_x, out_y


def summarize(storage: Storage, plan_name: str, baseline: str = "adamw") -> Summary:
    """Aggregate a plan's stored runs (see the module docstring)."""
    from .protocol import Plan, provenance  # local import: protocol pulls in optuna
    from .workloads import get_workload

    plans = storage.plans()
    if plan_name not in plans:
        raise KeyError(f"no plan named {plan_name!r} in {storage.url}; plans: {sorted(plans)}")
    plan = Plan.from_dict(plans[plan_name])
    finals: dict[str, dict[str, list[RunRow]]] = defaultdict(lambda: defaultdict(list))
    tunes: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for r in storage.runs(plan=plan_name):
        key = f"{r.workload}:{r.scale}"
        if r.phase == "final":
            finals[key][r.optimizer].append(r)
        else:
            tunes[key][r.optimizer] += 1
    cells: dict[str, dict[str, CellResult]] = {}
    targets: dict[str, float] = {}
    metric: dict[str, str] = {}
    missing: list[str] = []
    prov: dict[str, Any] = {}
    for w, s in plan.cells:
        key = f"{w}:{s}"
        m = get_workload(w).target_metric
        metric[key] = m
        by_opt = finals.get(key, {})
        for o in plan.optimizers:
            if len(by_opt.get(o, [])) < plan.seeds:
                missing.append(f"{key}:{o} ({len(by_opt.get(o, []))}/{plan.seeds} seeds)")
        if not by_opt:
            continue
        means = {o: statistics.fmean(r.final.get(m, math.inf) for r in rows) for o, rows in by_opt.items()}
        base_rows = by_opt.get(baseline)
        # the target: the worst final value over tuned AdamW's seeds, so the baseline reaches it on every seed
        # (AlgoPerf sets targets the baseline reliably reaches); without AdamW, the best optimizer's mean
        targets[key] = (max(r.final.get(m, math.inf) for r in base_rows) if base_rows else min(means.values()))
        base_curve = _mean_curve([r.curve for r in base_rows], m) if base_rows else None
        cells[key] = {}
        for o, rows in sorted(by_opt.items()):
            rows = sorted(rows, key=lambda r: r.seed)
            prov = prov or rows[0].provenance
            fin = [math.inf if r.diverged else r.final.get(m, math.inf) for r in rows]
            stt, ttt, sp = [], [], []
            for r, f in zip(rows, fin, strict=True):
                xs = [row["step"] for row in r.curve]
                ys = [row.get(m, math.inf) for row in r.curve]
                ts = [row["train_time"] for row in r.curve]
                stt.append(metrics.steps_to_target(xs, ys, targets[key]))
                ttt.append(metrics.steps_to_target(ts, ys, targets[key]))
                if o == baseline:
                    sp.append(metrics.Speedup(1.0))  # the baseline's speedup over itself, by definition
                elif base_curve and base_curve[0]:
                    sp.append(metrics.speedup(base_curve[0], base_curve[1], f, r.steps))
            cells[key][o] = CellResult(
                optimizer=o, final=fin, steps_used=rows[0].steps, steps_to_target=stt, time_to_target=ttt,
                speedups=sp, hyperparameters=rows[0].hyperparameters, tune_trials=tunes[key][o],
                train_time=statistics.fmean(r.train_time for r in rows),
                overhead=statistics.fmean(r.provenance.get("overhead", 0.0) for r in rows),
                curves=[r.curve for r in rows])
    return Summary(plan=plan_name, metric=metric, cells=cells, targets=targets,
                   baseline=baseline if any(baseline in c for c in cells.values()) else None,
                   provenance=prov or provenance(), missing=missing)


# -------------------------------------------------------------------------------------------- figures


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _colors(names: list[str]) -> dict[str, Any]:
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return {n: cmap(i % 10) for i, n in enumerate(sorted(names))}


def _curve_figure(cell: str, res: dict[str, CellResult], metric: str, x_key: str, colors: dict[str, Any]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    for o, r in res.items():
        xs, lo, mid, hi = [], [], [], []
        n = min(len(c) for c in r.curves) if r.curves else 0
        for i in range(n):
            vals = sorted(c[i].get(metric, math.inf) for c in r.curves)
            xs.append(statistics.fmean(c[i][x_key] for c in r.curves))
            mid.append(statistics.median(vals))
            lo.append(vals[0])
            hi.append(vals[-1])
        if xs:
            ax.plot(xs, mid, label=o, color=colors[o])
            ax.fill_between(xs, lo, hi, color=colors[o], alpha=0.15)
    ax.set_xlabel("step" if x_key == "step" else "training wall time (s)")
    ax.set_ylabel(metric)
    ax.set_yscale("log" if all(v > 0 for r in res.values() for c in r.curves for v in
                               (row.get(metric, 1.0) for row in c) if math.isfinite(v)) else "linear")
    ax.set_title(cell, fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _png(fig)


def _speedup_figure(summary: Summary, colors: dict[str, Any]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = list(summary.cells)
    opts = sorted({o for c in summary.cells.values() for o in c})
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * len(cells) + 2), 3.4))
    width = 0.8 / max(len(opts), 1)
    for j, o in enumerate(opts):
        xs, ys, err = [], [], [[], []]
        for i, cell in enumerate(cells):
            r = summary.cells[cell].get(o)
            if r is None or not r.speedups or math.isnan(r.speedup):
                continue
            lo, hi = r.speedup_ci
            xs.append(i + (j - (len(opts) - 1) / 2) * width)
            ys.append(r.speedup)
            err[0].append(max(r.speedup - lo, 0))
            err[1].append(max(hi - r.speedup, 0))
        if xs:
            ax.bar(xs, ys, width, yerr=err, label=o, color=colors[o], capsize=2)
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xticks(range(len(cells)))
    ax.set_xticklabels(cells, rotation=20, fontsize=7, ha="right")
    ax.set_ylabel("speedup over tuned AdamW")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, axis="y")
    return _png(fig)


def _profile_figure(summary: Summary, colors: dict[str, Any]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    for o, rho in summary.profile().items():
        ax.step(TAUS, rho, where="post", label=f"{o} ({metrics.profile_score(TAUS, rho):.2f})", color=colors[o])
    ax.set_xlabel("τ (wall time to target ÷ best)")
    ax.set_ylabel("fraction of workloads")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _png(fig)


# -------------------------------------------------------------------------------------------- html


def _fmt(x: float, digits: int = 4) -> str:
    if isinstance(x, float) and math.isinf(x):
        return "∞"
    if isinstance(x, float) and math.isnan(x):
        return "–"
    return f"{x:.{digits}g}"


def leaderboard_rows(summary: Summary) -> list[dict[str, str]]:
    """Rows of the leaderboard (also printed by the CLI)."""
    out = []
    for cell, res in summary.cells.items():
        ranked = sorted(res.values(), key=lambda r: r.mean)
        for r in ranked:
            lo, hi = r.ci
            slo, shi = r.speedup_ci
            reached = sum(math.isfinite(t) for t in r.steps_to_target)
            out.append({
                "cell": cell, "optimizer": r.optimizer,
                "final": f"{_fmt(r.mean)} [{_fmt(lo)}, {_fmt(hi)}]",
                "speedup": ("≥" if r.censored else "") + f"{_fmt(r.speedup, 3)} [{_fmt(slo, 3)}, {_fmt(shi, 3)}]"
                if r.speedups else "–",
                "steps_to_target": _fmt(statistics.median(r.steps_to_target), 4) + f" ({reached}/{len(r.final)})",
                "time_to_target": _fmt(statistics.median(r.time_to_target), 3),
                "trials": str(r.tune_trials),
                "hyperparameters": ", ".join(f"{k}={_fmt(v, 3) if isinstance(v, float) else v}"
                                             for k, v in sorted(r.hyperparameters.items())),
            })
    return out


#: After load, the page records how many of its figures rendered (``data-figures`` / ``data-rendered`` on
#: ``<body>``), so a headless browser can check the report.
RENDER_CHECK = """<script>
window.addEventListener("load", function () {
  var imgs = document.images, ok = 0;
  for (var i = 0; i < imgs.length; i++) if (imgs[i].complete && imgs[i].naturalWidth > 0) ok++;
  document.body.setAttribute("data-figures", imgs.length);
  document.body.setAttribute("data-rendered", ok);
});
</script>"""


def write_page(doc: str, path: str | Path) -> Path:
    """Write a self-contained HTML page, with the figure render check before ``</body>``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc.replace("</body>", RENDER_CHECK + "</body>", 1), encoding="utf-8")
    return path


def write_html(summary: Summary, path: str | Path) -> Path:
    """Write the self-contained HTML report and return its path."""
    names = sorted({o for c in summary.cells.values() for o in c})
    colors = _colors(names)
    figs: list[tuple[str, str]] = []
    for cell, res in summary.cells.items():
        figs.append((f"{cell}: {summary.metric[cell]} vs step", _curve_figure(cell, res, summary.metric[cell], "step",
                                                                              colors)))
        figs.append((f"{cell}: {summary.metric[cell]} vs training time",
                     _curve_figure(cell, res, summary.metric[cell], "train_time", colors)))
    if summary.baseline:
        figs.append(("Speedup over tuned AdamW (geometric mean over seeds, 95 % CI)", _speedup_figure(summary, colors)))
    if summary.cells:
        figs.append(("Performance profiles (wall time to target; score = normalised area)",
                     _profile_figure(summary, colors)))
    rows = leaderboard_rows(summary)
    esc = html.escape
    table = "".join(
        f"<tr><td>{esc(r['cell'])}</td><td>{esc(r['optimizer'])}</td><td>{esc(r['final'])}</td>"
        f"<td>{esc(r['speedup'])}</td><td>{esc(r['steps_to_target'])}</td><td>{esc(r['time_to_target'])}</td>"
        f"<td>{esc(r['trials'])}</td><td class=hp>{esc(r['hyperparameters'])}</td></tr>" for r in rows)
    prov = "".join(f"<tr><td>{esc(str(k))}</td><td>{esc(str(v))}</td></tr>"
                   for k, v in sorted(summary.provenance.items()) if k not in ("overhead", "n_params"))
    images = "".join(f'<figure><img alt="{esc(t)}" src="data:image/png;base64,{b}"><figcaption>{esc(t)}'
                     f"</figcaption></figure>" for t, b in figs)
    missing = (f"<p class=warn>Incomplete: {esc('; '.join(summary.missing))}</p>" if summary.missing else "")
    overhead = [r.overhead for c in summary.cells.values() for r in c.values()]
    doc = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>descend bench — {esc(summary.plan)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1300px}}table{{border-collapse:collapse;
font-size:13px}}td,th{{border:1px solid #ccc;padding:3px 6px;text-align:left}}td.hp{{font-size:11px}}
figure{{display:inline-block;margin:6px}}figcaption{{font-size:12px;color:#444}}.warn{{color:#a40}}</style></head>
<body><h1>descend bench: {esc(summary.plan)}</h1>
<p>Every optimizer got the same number of tuning trials from its registry search space, the same schedule
(5 % warm-up, cosine to zero) and the same seeds; the best configuration was retrained on fresh seeds and judged at
the end of training. Target per workload = the worst final value over the seeds of tuned
{esc(summary.baseline or "best optimizer")}.
Speedup = steps AdamW needs to reach the optimizer's final value (on AdamW's mean curve) ÷ steps used (≥ = AdamW
never reaches it: lower bound). Evaluation is off the clock; times are training-step wall time on the machine below.
Harness overhead (outside training steps and evaluation): median {_fmt(statistics.median(overhead) * 100 if overhead
else math.nan, 2)} % of a trial.</p>
{missing}
<h2>Leaderboard</h2>
<table><tr><th>workload</th><th>optimizer</th><th>final (mean [95 % CI])</th><th>speedup vs AdamW</th>
<th>steps to target (median, reached)</th><th>time to target (s)</th><th>tuning trials</th><th>tuned
hyperparameters</th></tr>{table}</table>
<h2>Figures</h2>{images}
<h2>Provenance</h2><table>{prov}</table>
<p>Generated {time.strftime("%Y-%m-%d %H:%M:%S")} by descend.</p>
</body></html>
"""
    return write_page(doc, path)
