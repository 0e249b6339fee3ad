"""From stored runs to numbers (:func:`summarize`) and to one self-contained HTML report (:func:`write_html`).

The report only reads the database.  For each cell (workload, scale):

* final validation metric per optimizer, mean and 95 % bootstrap CI over the final seeds (a diverged seed is
  ``inf``: a miss, never dropped);
* the **speedup over AdamW** read off AdamW's **budget ladder** (separate tuned-AdamW runs at 0.25…4 × T, each
  with its own schedule; :func:`metrics.ladder_speedup`): the budget AdamW needs to match the optimizer's mean
  final value ÷ T, with a bootstrap CI over seeds; ``>4×`` / ``<0.25×`` outside the ladder; refused, with the
  reason, when the ladder is not monotone.  AdamW itself is measured against its own ladder like every other
  optimizer (≈ 1 by construction of the 1× rung; its CI shows the seed noise);
* the **tuning-noise floor**: the second, independently tuned AdamW (``adamw#2``) against the same ladder;
* the **target** of steps- and time-to-target: the worst final value over tuned AdamW's seeds;
* the **scaling-law view**: ``L = E + A·budget^(−α)`` fitted to each ladder (and to model size across a
  workload's scales), with the asymptote's CI and the fit's problems.

Across cells: performance profiles of *steps* to target (hardware-independent, the default) and, separately,
of wall time to target (τ ∈ [1, 4]), and the geometric mean of speedups (bounds propagate).  Figures are drawn
with matplotlib and embedded as base64 PNG, so the file stands alone.
"""

from __future__ import annotations

import html
import math
import statistics
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..results.html import colors, png_base64, write_document
from . import metrics
from .storage import RunRow, Storage

__all__ = ["CellResult", "Ladder", "Summary", "leaderboard_rows", "summarize", "verdicts", "write_html"]

TAUS = [1 + 3 * i / 60 for i in range(61)]


@dataclass
class CellResult:
    """One optimizer (arm) on one cell."""

    optimizer: str
    final: list[float]  # final validation metric per seed (inf = diverged)
    seeds: list[int]
    steps_used: int
    steps_to_target: list[float]
    time_to_target: list[float]
    speedup: metrics.LadderSpeedup | None
    hyperparameters: dict[str, Any]
    tune_trials: int
    train_time: float  # mean wall time of a final run's training steps
    overhead: float  # mean harness overhead fraction
    curves: list[list[dict[str, float]]] = field(default_factory=list)
    widened: list[Any] = field(default_factory=list)  # protocol.Widening
    test: list[float] = field(default_factory=list)  # held-out test metric per seed (never used for selection)
    #: data-constrained ensembles: the members' (first K final seeds) mean metrics and the ensemble's
    ensemble: dict[str, float] = field(default_factory=dict)
    ensemble_members: dict[str, float] = field(default_factory=dict)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.final) if self.final else math.nan

    @property
    def ci(self) -> tuple[float, float]:
        if any(not math.isfinite(v) for v in self.final):
            finite = [v for v in self.final if math.isfinite(v)]
            return (min(finite) if finite else math.inf, math.inf)
        return metrics.bootstrap_ci(self.final) if self.final else (math.nan, math.nan)

    @property
    def diverged(self) -> int:
        return sum(not math.isfinite(v) for v in self.final)


@dataclass
class Ladder:
    """A laddered arm's runs: ``values[k][i]`` = seed ``seeds[k]`` at ``budgets[i]``."""

    arm: str
    budgets: list[int]
    seeds: list[int]
    values: list[list[float]]
    fit: metrics.PowerLawFit | None = None
    problem: str | None = None

    @property
    def means(self) -> list[float]:
        return [statistics.fmean(v[i] for v in self.values) for i in range(len(self.budgets))]


@dataclass
class Summary:
    plan: str
    metric: dict[str, str]
    cells: dict[str, dict[str, CellResult]]  # cell -> optimizer -> result
    targets: dict[str, float]
    baseline: str | None
    provenance: dict[str, Any]
    missing: list[str]
    ladders: dict[str, dict[str, Ladder]] = field(default_factory=dict)  # cell -> arm -> ladder
    size_fits: dict[str, dict[str, metrics.PowerLawFit]] = field(default_factory=dict)  # workload -> arm -> fit
    settings: dict[str, Any] = field(default_factory=dict)

    def profile(self, axis: str = "steps") -> dict[str, list[float]]:
        """Performance profiles on ``"steps"`` (default, hardware-independent) or ``"time"`` to target."""
        if axis not in ("steps", "time"):
            raise ValueError(f"axis must be 'steps' or 'time', got {axis!r}")
        times: dict[str, dict[str, float]] = defaultdict(dict)
        for cell, res in self.cells.items():
            for opt, r in res.items():
                vals = r.steps_to_target if axis == "steps" else r.time_to_target
                finite = [t for t in vals if math.isfinite(t)]
                # the median over seeds, a miss (inf) where half the seeds or more miss
                times[opt][cell] = statistics.median(vals) if len(finite) * 2 > len(vals) else math.inf
        return metrics.performance_profile(times, TAUS) if times else {}

    def geometric_mean_speedup(self, arm: str) -> metrics.Speedup | None:
        """Geometric mean over cells of an arm's point speedups (refused cells left out and counted as such)."""
        vals = [r.speedup.point for c in self.cells.values() if (r := c.get(arm)) and r.speedup
                and not r.speedup.refused]
        if not vals:
            return None
        return metrics.Speedup(metrics.geometric_mean([v.value for v in vals]),
                               metrics.aggregate_bound([v.bound for v in vals]))


def _mean_curve(curves: list[list[dict[str, float]]], key: str) -> tuple[list[float], list[float]]:
    steps = sorted({row["step"] for c in curves for row in c})
    out_x, out_y = [], []
    for s in steps:
        vals = [row.get(key, math.inf) for c in curves for row in c if row["step"] == s]
        if len(vals) == len(curves):
            out_x.append(float(s))
            out_y.append(statistics.fmean(vals))
    return out_x, out_y


def _final(r: RunRow, m: str) -> float:
    v = math.inf if r.diverged else r.final.get(m, math.inf)
    return float(v) if math.isfinite(v) else math.inf


def summarize(storage: Storage, plan_name: str, baseline: str | None = None) -> Summary:
    """Aggregate a plan's stored runs (see the module docstring)."""
    from .protocol import Arm, Plan, provenance, widenings  # local import: protocol pulls in optuna
    from .workloads import get_workload

    plans = storage.plans()
    if plan_name not in plans:
        raise KeyError(f"no plan named {plan_name!r} in {storage.url}; plans: {sorted(plans)}")
    plan = Plan.from_dict(plans[plan_name])
    baseline = baseline or plan.baseline
    finals: dict[str, dict[str, list[RunRow]]] = defaultdict(lambda: defaultdict(list))
    rungs: dict[str, dict[str, dict[tuple[int, int], RunRow]]] = defaultdict(lambda: defaultdict(dict))
    tunes: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for r in storage.runs(plan=plan_name):
        key = f"{r.workload}:{r.scale}"
        if r.phase == "final":
            finals[key][r.optimizer].append(r)
        elif r.phase == "ladder":
            rungs[key][r.optimizer][(r.seed, r.trial_number)] = r
        else:
            tunes[key][r.optimizer] += 1
    cells: dict[str, dict[str, CellResult]] = {}
    ladders: dict[str, dict[str, Ladder]] = {}
    targets: dict[str, float] = {}
    metric: dict[str, str] = {}
    missing: list[str] = []
    prov: dict[str, Any] = {}
    for w, s in plan.cells:
        key = f"{w}:{s}"
        m = get_workload(w).target_metric
        metric[key] = m
        by_opt = finals.get(key, {})
        for o in plan.arms():
            if len(by_opt.get(o, [])) < plan.seeds:
                missing.append(f"{key}:{o} ({len(by_opt.get(o, []))}/{plan.seeds} seeds)")
        if not by_opt:
            continue
        ladders[key] = {}
        for o in plan.arms():
            lad = _ladder(plan, key, w, s, o, by_opt, rungs.get(key, {}), m)
            if lad is not None:
                ladders[key][o] = lad
        base_ladder = ladders[key].get(baseline)
        base_rows = by_opt.get(baseline)
        means = {o: statistics.fmean(_final(r, m) for r in rows) for o, rows in by_opt.items()}
        # the target: the worst final value over tuned AdamW's seeds, so the baseline reaches it on every seed
        # (AlgoPerf sets targets the baseline reliably reaches); without AdamW, the best optimizer's mean
        targets[key] = (max(_final(r, m) for r in base_rows) if base_rows else min(means.values()))
        cells[key] = {}
        for o, rows in sorted(by_opt.items()):
            if Arm.parse(o).factor != 1.0:
                continue  # a retuned ladder rung, shown in the ladder
            rows = sorted(rows, key=lambda r: r.seed)
            prov = prov or rows[0].provenance
            fin = [_final(r, m) for r in rows]
            test_key = get_workload(w).test_metric
            stt, ttt = [], []
            for r in rows:
                xs = [row["step"] for row in r.curve]
                ys = [row.get(m, math.inf) for row in r.curve]
                ts = [row["train_time"] for row in r.curve]
                stt.append(metrics.steps_to_target(xs, ys, targets[key]) if xs else math.inf)
                ttt.append(metrics.steps_to_target(ts, ys, targets[key]) if xs else math.inf)
            sp = None
            if base_ladder is not None and base_ladder.values:
                by_seed = dict(zip(base_ladder.seeds, base_ladder.values, strict=True))
                paired = [k for k, r in enumerate(rows) if r.seed in by_seed]
                if len(paired) == len(rows):
                    sp = metrics.ladder_speedup(base_ladder.budgets, [by_seed[r.seed] for r in rows], fin,
                                                rows[0].steps, paired=True)
                else:
                    sp = metrics.ladder_speedup(base_ladder.budgets, base_ladder.values, fin, rows[0].steps,
                                                paired=False)
            ens, members = _ensemble(plan, rows)
            cells[key][o] = CellResult(
                optimizer=o, final=fin, seeds=[r.seed for r in rows], steps_used=rows[0].steps,
                steps_to_target=stt, time_to_target=ttt, speedup=sp, hyperparameters=rows[0].hyperparameters,
                tune_trials=tunes[key][o], train_time=statistics.fmean(r.train_time for r in rows),
                overhead=statistics.fmean(r.provenance.get("overhead", 0.0) for r in rows),
                curves=[r.curve for r in rows], widened=widenings(storage, plan, w, s, o),
                test=[float(r.final.get(test_key, math.nan)) if test_key else math.nan for r in rows],
                ensemble=ens, ensemble_members=members)
    return Summary(plan=plan_name, metric=metric, cells=cells, targets=targets,
                   baseline=baseline if any(baseline in c for c in cells.values()) else None,
                   provenance=prov or provenance(), missing=missing, ladders=ladders,
                   size_fits=_size_fits(plan, finals, metric),
                   settings={"ladder": plan.ladder, "ladder_retune": plan.ladder_retune, "sampler": plan.sampler,
                             "trials": plan.trials, "trial_scaling": plan.trial_scaling, "seeds": plan.seeds,
                             "mode": plan.mode, "tune_fraction": plan.tune_fraction, "widen": plan.widen,
                             "ensemble": plan.ensemble})


def _ensemble(plan: Any, rows: list[RunRow]) -> tuple[dict[str, float], dict[str, float]]:
    """The ensemble of the first ``plan.ensemble`` final seeds (their stored held-out predictions) and those
    members' mean metrics; empty while a member is missing or diverged (a diverged member has no predictions,
    and an ensemble without it would be a smaller one under the same name)."""
    k = getattr(plan, "ensemble", 0)
    members = [r for r in rows if r.seed <= k]
    if not k or len(members) < k or any(r.diverged or "predictions" not in r.provenance for r in members):
        return {}, {}
    ens = metrics.ensemble_metrics([r.provenance["predictions"] for r in members])
    means = {key: statistics.fmean(float(r.final.get(key, math.nan)) for r in members) for key in ens}
    return ens, means


def _ladder(plan: Any, key: str, w: str, s: str, arm: str, by_opt: dict[str, list[RunRow]],
            rungs: dict[str, dict[tuple[int, int], RunRow]], m: str) -> Ladder | None:
    """The complete-seed ladder of an arm (its 1× rung is its final runs), or ``None`` if it has none."""
    if plan.ladder_retune and arm == plan.baseline:
        sources = [by_opt.get(arm if f == 1.0 else f"{arm}@{f:g}", []) for f in plan.ladder]
        per_rung = [{r.seed: r for r in rows} for rows in sources]
    elif plan.laddered(arm):
        base = {r.seed: r for r in by_opt.get(arm, [])}
        got = rungs.get(arm, {})
        per_rung = [base if f == 1.0 else {sd: r for (sd, i), r in got.items() if i == idx}
                    for idx, f in enumerate(plan.ladder)]
    else:
        return None
    seeds = sorted(set.intersection(*(set(d) for d in per_rung))) if per_rung else []
    budgets = [plan.steps(w, s, f) for f in plan.ladder]
    if not seeds or len(set(budgets)) != len(budgets):
        return None
    values = [[_final(per_rung[i][k], m) for i in range(len(budgets))] for k in seeds]
    lad = Ladder(arm=arm, budgets=budgets, seeds=seeds, values=values, problem=metrics.ladder_problem(budgets, values))
    if len(budgets) >= 3 and all(math.isfinite(v) for row in values for v in row):
        try:
            lad.fit = metrics.fit_power_law(budgets, values)
        except (ValueError, RuntimeError) as exc:  # pragma: no cover - scipy failure: reported, not fatal
            lad.problem = lad.problem or f"power-law fit failed: {exc}"
    return lad


def _size_fits(plan: Any, finals: dict[str, dict[str, list[RunRow]]],
               metric: dict[str, str]) -> dict[str, dict[str, metrics.PowerLawFit]]:
    """Model-size axis: for a workload run at ≥ 3 scales, fit its final values against the parameter count."""
    by_workload: dict[str, list[str]] = defaultdict(list)
    for w, s in plan.cells:
        by_workload[w].append(s)
    out: dict[str, dict[str, metrics.PowerLawFit]] = {}
    for w, scales in by_workload.items():
        if len(scales) < 3:
            continue
        for arm in plan.arms():
            xs, rows_per_scale = [], []
            for s in scales:
                rows = {r.seed: r for r in finals.get(f"{w}:{s}", {}).get(arm, [])}
                n = next((r.provenance.get("n_params") for r in rows.values()), None)
                if not rows or not n:
                    break
                xs.append(float(n))
                rows_per_scale.append(rows)
            else:
                seeds = sorted(set.intersection(*(set(d) for d in rows_per_scale)))
                order = sorted(range(len(xs)), key=lambda i: xs[i])
                if seeds and len(set(xs)) == len(xs):
                    vals = [[_final(rows_per_scale[i][k], metric[f"{w}:{scales[i]}"]) for i in order] for k in seeds]
                    out.setdefault(w, {})[arm] = metrics.fit_power_law([xs[i] for i in order], vals)
    return out


# -------------------------------------------------------------------------------------------- verdict


def noise_band(summary: Summary, cell: str) -> tuple[float, float] | None:
    """The tuning-noise band of a cell: the hull of 1 and the second tuned AdamW's speedup CI."""
    rep = summary.cells.get(cell, {}).get(f"{summary.baseline}#2")
    if rep is None or rep.speedup is None or rep.speedup.refused:
        return None
    return (min(1.0, rep.speedup.low.value), max(1.0, rep.speedup.high.value))


def verdicts(summary: Summary) -> list[str]:
    """One sentence per (cell, optimizer): the answer, first."""
    out: list[str] = []
    for cell, res in summary.cells.items():
        base = summary.baseline
        m = summary.metric[cell]
        lad = summary.ladders.get(cell, {}).get(base or "")
        if base is None or lad is None:
            out.append(f"On {cell}: no AdamW ladder in this plan, so no speedup.")
            continue
        if lad.problem:
            out.append(f"On {cell}: no speedup — AdamW's budget ladder is {lad.problem}.")
            continue
        band = noise_band(summary, cell)
        for o, r in sorted(res.items(), key=lambda kv: -(kv[1].speedup.value if kv[1].speedup else 0)):
            if o == base or "#" in o or r.speedup is None:
                continue
            sp = r.speedup
            lo, hi = sp.low.value, sp.high.value
            if sp.point.bound == "<":
                what = f"does not reach AdamW's shortest-run {m} (speedup {sp})"
            elif sp.point.value >= 1:
                what = f"reaches AdamW's final {m} {sp} faster"
            else:
                what = f"is slower: AdamW needs only {sp} of its budget to match it"
            if band is None:
                noise = "tuning noise not measured"
            elif lo > band[1]:
                noise = f"beyond tuning noise (AdamW retuned: [{band[0]:.3g}, {band[1]:.3g}]×)"
            elif hi < band[0]:
                noise = f"worse beyond tuning noise (AdamW retuned: [{band[0]:.3g}, {band[1]:.3g}]×)"
            else:
                noise = f"within tuning noise (AdamW retuned: [{band[0]:.3g}, {band[1]:.3g}]×)"
            div = f"; {r.diverged}/{len(r.final)} seeds diverged" if r.diverged else ""
            out.append(f"On {cell}, {o} {what}; {noise}{div}.")
        own = res.get(base)
        if own is not None and own.speedup is not None:
            out.append(f"On {cell}, AdamW against its own ladder: {own.speedup} (the metric's self-check, ≈ 1).")
    k = summary.settings.get("ensemble", 0)
    for cell, res in summary.cells.items():
        for o, r in sorted(res.items()):
            if r.ensemble and "#" not in o:
                out.append(f"On {cell}, an ensemble of {k} {o} runs: held-out test loss "
                           f"{_fmt(r.ensemble.get('test_loss', math.nan))} against its members' mean "
                           f"{_fmt(r.ensemble_members.get('test_loss', math.nan))} ({k}× the training compute).")
    return out


# -------------------------------------------------------------------------------------------- figures


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
    return png_base64(fig)


# -- curvature monitors (``descend bench run --monitor ...``; values in the final runs' curve rows) ----------------
#: (curve key, axis label, reference line) of each monitor panel, in display order
MONITOR_PANELS = (
    ("sharpness_ratio", "eta lambda_max / 2  (edge of stability: 1)", 1.0),
    ("sgd_stability", "eta tr(H) / 2  (SGD stability bound: 1)", 1.0),
    ("sharpness", "lambda_max(H)", None),
    ("trace", "tr(H)", None),
    ("param_change", "||theta_t - theta_0|| / ||theta_0||", None),
)


def _monitor_series(curves: list[list[dict[str, float]]], key: str) -> tuple[list[float], list[float]]:
    """Median over seeds of ``key`` at each step where every seed's curve has it."""
    by_step: dict[float, list[float]] = defaultdict(list)
    for c in curves:
        for row in c:
            if key in row:
                by_step[row["step"]].append(row[key])
    xs = [s for s in sorted(by_step) if len(by_step[s]) == len(curves)]
    return xs, [statistics.median(by_step[s]) for s in xs]


def monitor_figure(cell: str, res: dict[str, CellResult], colors: dict[str, Any]) -> tuple[str, str] | None:
    """One figure of the monitored quantities of a cell (caption with the mean cost per reading), or ``None``."""
    keys = [p for p in MONITOR_PANELS if any(p[0] in row for r in res.values() for c in r.curves for row in c)]
    if not keys:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.3), squeeze=False)
    for ax, (key, label, ref) in zip(axes[0], keys, strict=True):
        for o, r in res.items():
            xs, ys = _monitor_series(r.curves, key)
            if xs:
                ax.plot(xs, ys, marker=".", label=o, color=colors[o])
        if ref is not None:
            ax.axhline(ref, color="k", ls="--", lw=0.8)
        ax.set_xlabel("step")
        ax.set_ylabel(label, fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(cell, fontsize=10)
    fig.tight_layout()
    costs = []
    for name in ("sharpness", "trace", "param_change"):
        hv = [row[f"{name}_hvp"] for r in res.values() for c in r.curves for row in c if f"{name}_hvp" in row]
        sec = [row[f"{name}_seconds"] for r in res.values() for c in r.curves for row in c if f"{name}_seconds" in row]
        if hv:
            costs.append(f"{name}: {statistics.fmean(hv):.1f} HVPs, {statistics.fmean(sec):.3f} s per reading")
    caption = (f"{cell}: curvature monitors on the final runs (median over seeds; curvature of the training loss "
               f"on the step-0 mini-batch; eta = the scheduled learning rate). Cost: {'; '.join(costs)}")
    return caption, png_base64(fig)


def _speedup_figure(summary: Summary, colors: dict[str, Any]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    cells = list(summary.cells)
    opts = sorted({o for c in summary.cells.values() for o in c})
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * len(cells) + 2), 3.6))
    width = 0.8 / max(len(opts), 1)
    for j, o in enumerate(opts):
        for i, cell in enumerate(cells):
            r = summary.cells[cell].get(o)
            if r is None or r.speedup is None or r.speedup.refused:
                continue
            sp = r.speedup
            x = i + (j - (len(opts) - 1) / 2) * width
            y = sp.point.value
            err = [[max(y - sp.low.value, 0)], [max(sp.high.value - y, 0)]]
            bound = sp.point.bound != "="
            ax.bar(x, y, width, yerr=err, color=colors[o], capsize=2, hatch="//" if bound else None,
                   edgecolor="k" if bound else None, label=o if i == 0 or o not in ax.get_legend_handles_labels()[1]
                   else None)
            if bound:  # a bound: an arrow pointing where the true value lies
                ax.annotate(sp.point.bound, (x, y), ha="center", va="bottom" if sp.point.bound == ">" else "top",
                            fontsize=9, fontweight="bold")
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_yscale("log", base=2)
    ticks = [2.0**k for k in range(-4, 5)]
    bars = [b for b in ax.patches if isinstance(b, Rectangle)]  # ``ax.bar``'s patches are all Rectangles
    lo = min([b.get_height() for b in bars if b.get_height() > 0] + [1.0])
    hi = max([b.get_height() for b in bars] + [1.0])
    ax.set_ylim(lo / 1.6, hi * 1.6)
    ax.set_yticks([t for t in ticks if lo / 1.6 <= t <= hi * 1.6])
    ax.set_yticklabels([f"{t:g}×" for t in ticks if lo / 1.6 <= t <= hi * 1.6])
    ax.minorticks_off()
    ax.set_xticks(range(len(cells)))
    ax.set_xticklabels(cells, rotation=20, fontsize=7, ha="right")
    ax.set_ylabel("speedup over tuned AdamW (ladder)")
    handles, labels = ax.get_legend_handles_labels()
    uniq = dict(zip(labels, handles, strict=True))
    ax.legend(uniq.values(), uniq.keys(), fontsize=7)
    ax.grid(alpha=0.3, axis="y")
    return png_base64(fig)


def _ladder_figure(summary: Summary, cell: str, colors: dict[str, Any]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    for arm, lad in summary.ladders.get(cell, {}).items():
        c = colors.get(arm, "k")
        for row in lad.values:
            ax.plot(lad.budgets, row, "o", color=c, alpha=0.3, ms=3)
        ax.plot(lad.budgets, metrics.isotonic_decreasing(lad.means), "-o", color=c,
                label=f"{arm} ladder (monotone fit)")
        if lad.fit is not None and math.isfinite(lad.fit.E):
            xs = [lad.budgets[0] * (lad.budgets[-1] / lad.budgets[0]) ** (i / 40) for i in range(41)]
            ax.plot(xs, [lad.fit(x) for x in xs], ":", color=c,
                    label=f"E + A·x^-α: E = {lad.fit.E:.3g}" + ("" if lad.fit.reliable else " (unreliable)"))
    base = summary.ladders.get(cell, {}).get(summary.baseline or "")
    for o, r in summary.cells.get(cell, {}).items():
        if r.speedup is None or r.speedup.refused or not all(math.isfinite(v) for v in r.final):
            continue
        c = colors.get(o, "k")
        ax.axhline(r.mean, color=c, lw=0.7, ls="--")
        if base is not None:
            x = r.speedup.point.value * r.steps_used
            ax.plot([x], [r.mean], marker={"=": "*", ">": ">", "<": "<"}.get(r.speedup.point.bound, "x"), color=c,
                    ms=10, label=f"{o}: {r.speedup}")
    ax.set_xscale("log")
    if base is not None:
        ax.set_xticks(base.budgets)
        ax.set_xticklabels([str(b) for b in base.budgets])
        ax.minorticks_off()
    ax.set_xlabel("AdamW budget (steps; each rung a full run with its own schedule)")
    ax.set_ylabel(summary.metric[cell])
    ax.set_title(f"{cell}: AdamW budget ladder", fontsize=10)
    ax.legend(fontsize=6)
    ax.grid(alpha=0.3)
    return png_base64(fig)


def _profile_figure(summary: Summary, colors: dict[str, Any], axis: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    for o, rho in summary.profile(axis).items():
        ax.step(TAUS, rho, where="post", label=f"{o} ({metrics.profile_score(TAUS, rho):.2f})", color=colors[o])
    ax.set_xlabel("τ (" + ("steps" if axis == "steps" else "training wall time") + " to target ÷ best)")
    ax.set_ylabel("fraction of workloads")
    ax.set_title("on steps (hardware-independent)" if axis == "steps" else "on wall time (this machine only)",
                 fontsize=10)
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return png_base64(fig)


# -------------------------------------------------------------------------------------------- html


def _fmt(x: float, digits: int = 4) -> str:
    if isinstance(x, float) and math.isinf(x):
        return "∞"
    if isinstance(x, float) and math.isnan(x):
        return "–"
    return f"{x:.{digits}g}"


def _sp_text(sp: metrics.LadderSpeedup | None) -> str:
    if sp is None:
        return "–"
    return f"refused ({sp.refused})" if sp.refused else str(sp)


def leaderboard_rows(summary: Summary) -> list[dict[str, str]]:
    """Rows of the leaderboard (also printed by the CLI)."""
    out = []
    for cell, res in summary.cells.items():
        ranked = sorted(res.values(), key=lambda r: r.mean)
        for r in ranked:
            lo, hi = r.ci
            reached = sum(math.isfinite(t) for t in r.steps_to_target)
            out.append({
                "cell": cell, "optimizer": r.optimizer,
                "final": f"{_fmt(r.mean)} [{_fmt(lo)}, {_fmt(hi)}]" + (f" ({r.diverged} diverged)" if r.diverged
                                                                       else ""),
                "speedup": _sp_text(r.speedup),
                "test": _fmt(statistics.fmean(r.test)) if r.test and all(math.isfinite(v) for v in r.test) else "–",
                "steps_to_target": _fmt(statistics.median(r.steps_to_target), 4) + f" ({reached}/{len(r.final)})",
                "time_to_target": _fmt(statistics.median(r.time_to_target), 3),
                "trials": str(r.tune_trials) + (" (widened)" if r.widened else ""),
                "hyperparameters": ", ".join(f"{k}={_fmt(v, 3) if isinstance(v, float) else v}"
                                             for k, v in sorted(r.hyperparameters.items())),
            })
    return out


def write_html(summary: Summary, path: str | Path) -> Path:
    """Write the self-contained HTML report and return its path: the verdict first, then the evidence."""
    names = sorted({o for c in summary.cells.values() for o in c} | {a for c in summary.ladders.values() for a in c})
    palette = colors(names)
    esc = html.escape
    curve_figs: list[tuple[str, str]] = []
    for cell, res in summary.cells.items():
        curve_figs.append((f"{cell}: {summary.metric[cell]} vs step",
                           _curve_figure(cell, res, summary.metric[cell], "step", palette)))
        curve_figs.append((f"{cell}: {summary.metric[cell]} vs training time",
                           _curve_figure(cell, res, summary.metric[cell], "train_time", palette)))
    ladder_figs = [(f"{cell}: AdamW's budget ladder, each optimizer's final value and the budget AdamW needs for it",
                    _ladder_figure(summary, cell, palette)) for cell in summary.cells if summary.ladders.get(cell)]
    agg_figs: list[tuple[str, str]] = []
    if any(r.speedup is not None for c in summary.cells.values() for r in c.values()):
        agg_figs.append(("Speedup over tuned AdamW from its ladder (95 % bootstrap CI over seeds; hatched = bound)",
                         _speedup_figure(summary, palette)))
    if summary.cells:
        agg_figs.append(("Performance profiles on steps to target (hardware-independent; score = normalised area)",
                         _profile_figure(summary, palette, "steps")))
        agg_figs.append(("Performance profiles on training wall time to target (this machine only)",
                         _profile_figure(summary, palette, "time")))

    def images(figs: list[tuple[str, str]]) -> str:
        return "".join(f'<figure><img alt="{esc(t)}" src="data:image/png;base64,{b}"><figcaption>{esc(t)}'
                       f"</figcaption></figure>" for t, b in figs)

    monitor_figs = [mf for cell, res in summary.cells.items() if (mf := monitor_figure(cell, res, palette)) is not None]
    monitor_html = f"<h2>Curvature monitors</h2>{images(monitor_figs)}" if monitor_figs else ""

    rows = leaderboard_rows(summary)
    table = "".join(
        f"<tr><td>{esc(r['cell'])}</td><td>{esc(r['optimizer'])}</td><td>{esc(r['final'])}</td><td>{esc(r['test'])}</td>"
        f"<td>{esc(r['speedup'])}</td><td>{esc(r['steps_to_target'])}</td><td>{esc(r['time_to_target'])}</td>"
        f"<td>{esc(r['trials'])}</td><td class=hp>{esc(r['hyperparameters'])}</td></tr>" for r in rows)
    verdict = "".join(f"<li>{esc(v)}</li>" for v in verdicts(summary))
    gm = []
    for arm in names:
        g = summary.geometric_mean_speedup(arm)
        if g is not None and "@" not in arm:
            arm_res = [c[arm] for c in summary.cells.values() if arm in c and c[arm].speedup is not None]
            refused = sum(bool(r.speedup and r.speedup.refused) for r in arm_res)
            gm.append(f"{esc(arm)}: {esc(str(g))} over {len(arm_res) - refused} workload(s)"
                      + (f", {refused} refused (left out)" if refused else ""))
    noise = []
    for cell, res in summary.cells.items():
        a, b = res.get(summary.baseline or ""), res.get(f"{summary.baseline}#2")
        if a is not None and b is not None:
            band = noise_band(summary, cell)
            noise.append(f"<tr><td>{esc(cell)}</td><td>{_fmt(a.mean)}</td><td>{_fmt(b.mean)}</td>"
                         f"<td>{esc(_sp_text(b.speedup))}</td><td>"
                         f"{esc(f'[{band[0]:.3g}, {band[1]:.3g}]×') if band else '–'}</td>"
                         f"<td class=hp>{esc(str(a.hyperparameters))}<br>{esc(str(b.hyperparameters))}</td></tr>")
    noise_html = (("<table><tr><th>workload</th><th>tuned AdamW final</th><th>AdamW tuned again (another sampler "
                   "and tuning seed)</th><th>its speedup vs the ladder</th><th>tuning-noise band</th><th>the two "
                   "configurations</th></tr>" + "".join(noise) + "</table>") if noise else
                  "<p>Not measured (run with the noise floor on).</p>")
    fits = []
    for cell, lads in summary.ladders.items():
        for arm, arm_lad in lads.items():
            f = arm_lad.fit
            if f is None:
                continue
            fits.append(f"<tr><td>{esc(cell)}</td><td>{esc(arm)} (budget)</td><td>{_fmt(f.E)} [{_fmt(f.E_ci[0])}, "
                        f"{_fmt(f.E_ci[1])}]</td><td>{_fmt(f.alpha, 3)} [{_fmt(f.alpha_ci[0], 3)}, "
                        f"{_fmt(f.alpha_ci[1], 3)}]</td><td>{esc('; '.join(f.problems) or 'ok')}</td></tr>")
    for cell, lads in summary.ladders.items():
        lad = lads.get(summary.baseline or "")
        if lad is None or lad.fit is None or not math.isfinite(lad.fit.E):
            continue
        for o, r in summary.cells.get(cell, {}).items():
            if o == summary.baseline or not all(math.isfinite(v) for v in r.final):
                continue
            mult = metrics.data_efficiency(lad.fit, r.mean, r.steps_used)
            beyond = mult * r.steps_used > lad.budgets[-1] or mult * r.steps_used < lad.budgets[0]
            fits.append(f"<tr><td>{esc(cell)}</td><td>{esc(o)}: data efficiency from AdamW's fitted law</td>"
                        f"<td colspan=2>{_fmt(mult, 3)}× the budget" + (" (extrapolated beyond the ladder)" if beyond
                                                                         else "") +
                        "</td><td>point value; the interpolated ladder speedup above carries the CI" +
                        ("; the fit is unreliable" if not lad.fit.reliable else "") + "</td></tr>")
    for w, by_arm in summary.size_fits.items():
        for arm, f in by_arm.items():
            fits.append(f"<tr><td>{esc(w)}</td><td>{esc(arm)} (model size)</td><td>{_fmt(f.E)} [{_fmt(f.E_ci[0])}, "
                        f"{_fmt(f.E_ci[1])}]</td><td>{_fmt(f.alpha, 3)} [{_fmt(f.alpha_ci[0], 3)}, "
                        f"{_fmt(f.alpha_ci[1], 3)}]</td><td>{esc('; '.join(f.problems) or 'ok')}</td></tr>")
    st = summary.settings
    ens_rows = [f"<tr><td>{esc(cell)}</td><td>{esc(o)}</td>" + "".join(
        f"<td>{_fmt(r.ensemble_members.get(k, math.nan))}</td><td>{_fmt(r.ensemble.get(k, math.nan))}</td>"
        for k in ("val_loss", "test_loss", "test_acc")) + "</tr>"
        for cell, res in summary.cells.items() for o, r in sorted(res.items()) if r.ensemble]
    ensemble_html = (f"<h2>Ensembles</h2><p>Each optimizer's first {esc(str(st.get('ensemble')))} final seeds, their "
                     "class probabilities averaged (data-constrained mode; Kim et al. 2025): the members' mean "
                     "against the ensemble, at that many times the training compute.</p><table><tr><th>workload"
                     "</th><th>optimizer</th><th>val loss, members</th><th>val loss, ensemble</th><th>test loss, "
                     "members</th><th>test loss, ensemble</th><th>test accuracy, members</th><th>test accuracy, "
                     "ensemble</th></tr>" + "".join(ens_rows) + "</table>") if ens_rows else ""
    fits_html = ("<table><tr><th>workload</th><th>fit</th><th>asymptote E [95 % CI]</th><th>α [95 % CI]</th>"
                 "<th>reliability</th></tr>" + "".join(fits) + "</table>") if fits else "<p>No ladder to fit.</p>"
    widened = [f"<li>{esc(cell)} {esc(o)}: {esc(w.parameter)} best {w.best:.3g} within 10 % of an edge of "
               f"[{w.old[0]:.3g}, {w.old[1]:.3g}] → widened to [{w.new[0]:.3g}, {w.new[1]:.3g}] and retuned "
               f"(round {w.round})</li>" for cell, res in summary.cells.items() for o, r in res.items()
               for w in r.widened]
    widened_html = f"<ul>{''.join(widened)}</ul>" if widened else "<p>No best value sat near a range edge.</p>"
    prov = "".join(f"<tr><td>{esc(str(k))}</td><td>{esc(str(v))}</td></tr>"
                   for k, v in sorted(summary.provenance.items()) if k not in ("overhead", "n_params"))
    missing = (f"<p class=warn>Incomplete: {esc('; '.join(summary.missing))}</p>" if summary.missing else "")
    overhead = [r.overhead for c in summary.cells.values() for r in c.values()]
    ladder_txt = ", ".join(f"{f:g}" for f in st.get("ladder", ())) or "none"
    doc = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>descend bench — {esc(summary.plan)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1300px}}table{{border-collapse:collapse;
font-size:13px}}td,th{{border:1px solid #ccc;padding:3px 6px;text-align:left}}td.hp{{font-size:11px}}
figure{{display:inline-block;margin:6px}}figcaption{{font-size:12px;color:#444}}.warn{{color:#a40}}
ul.verdict li{{margin:3px 0}}</style></head>
<body><h1>descend bench: {esc(summary.plan)}</h1>
{missing}
<h2 id="verdict">Verdict</h2>
<ul class="verdict">{verdict or "<li>No finished cell yet.</li>"}</ul>
<p>Geometric mean of speedups over workloads: {"; ".join(gm) or "–"}.
Read: "X reaches AdamW's final value S× [lo, hi] faster" means AdamW, rerun with its tuned configuration and its own
full schedule, needs S × the budget X used to end as well as X ends (95 % bootstrap CI over seeds).
"&gt;4×" / "&lt;0.25×" are bounds: outside AdamW's ladder. "Within tuning noise" means the speedup's CI
overlaps the band that a second, independent tuning of AdamW itself lands in.</p>
<h2>Leaderboard</h2>
<table><tr><th>workload</th><th>optimizer</th><th>final (mean [95 % CI])</th><th>held-out test (mean)</th>
<th>speedup vs AdamW ladder</th>
<th>steps to target (median, reached)</th><th>time to target (s)</th><th>tuning trials</th><th>tuned
hyperparameters</th></tr>{table}</table>
<h2>Curves</h2>{images(curve_figs)}
{monitor_html}<h2>AdamW's budget ladder</h2>
<p>Rungs at {esc(ladder_txt)} × the budget T, each a full run with its own warm-up and cosine schedule, on the
final seeds{", each rung tuned on its own" if st.get("ladder_retune") else ", with AdamW's configuration tuned at T"};
the seed means are made monotone (isotonic regression) and interpolated linearly in log budget.</p>
{images(ladder_figs)}
<h2>Tuning-noise floor</h2>{noise_html}
<h2>Scaling-law view</h2>
<p>L = E + A·x<sup>−α</sup> fitted to each ladder (x = budget) and, for workloads run at three or more scales, to
model size; E is the asymptote (bootstrap CI over seeds).</p>{fits_html}
{ensemble_html}<h2>Aggregates</h2>{images(agg_figs)}
<h2>Protocol</h2>
<p>Mode {esc(str(st.get("mode", "standard")))}. Every optimizer's trial 0 is its documented default; trials:
{esc(str(st.get("trials")))} for AdamW's search space, {"grown in proportion to each space's dimension" if
st.get("trial_scaling") == "dim" else "the same for every optimizer"} (sampler {esc(str(st.get("sampler")))},
{esc(str(st.get("tune_fraction")))} of the budget per trial); the same schedule (5 % warm-up, cosine to zero) and the
same {esc(str(st.get("seeds")))} final seeds for every optimizer; judged at the end of training. Target of the
steps/time-to-target columns = the worst final value over the seeds of tuned
{esc(summary.baseline or "best optimizer")}. Evaluation is off the clock; times are training-step wall time on the
machine below. Harness overhead (outside training steps and evaluation): median {_fmt(statistics.median(overhead)
* 100 if overhead else math.nan, 2)} % of a trial.</p>
<h3>Ranges widened</h3>{widened_html}
<h2>Provenance</h2><table>{prov}</table>
<p>Generated {time.strftime("%Y-%m-%d %H:%M:%S")} by descend.</p>
</body></html>
"""
    return write_document(doc, path)
