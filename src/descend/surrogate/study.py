"""The ``surrogate`` study family: run each method on a task, store curves in :class:`descend.results.ResultStore`
(family ``"surrogate"``), and build the HTML report (one figure per method).

Studies (``study`` column = the method family, ``method`` = the variant):

* ``ignite`` — methods ``baseline`` / ``ignite`` (optionally ``ignite-strong``) on an offline task; curve
  ``step, p100, p50`` (normalised oracle score per ascent step); summary the final scores.
* ``attack`` — methods ``hybrid`` / ``cdsm`` / ``coordinate`` on a trained-MLP problem; curve ``evals, best``
  (best feasible value per Φ evaluation); one record per start (the seed).
* ``lpn`` — methods ``prox`` / ``l2`` (training loss) on the 1-D Laplace task; curve ``y, f`` (the learned prox on
  a grid) and, for ``prox``, a PnP run's residuals.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from descend._validate import check_choice, check_int

__all__ = ["METHODS", "build_report", "report_rows", "run_study"]

FAMILY = "surrogate"
METHODS = ("ignite", "attack", "lpn")

#: IGNITE settings compared by ``descend surrogate run ignite``: the paper's defaults and a stronger multiplier
IGNITE_VARIANTS: dict[str, dict[str, Any] | None] = {
    "baseline": None,
    "ignite": {},
    "ignite-strong": {"lam0": 1.0, "lr_lambda": 0.1, "eps": 0.01},
}


def _ignite_records(task_name: str, seed: int, quick: bool) -> list[Any]:
    from descend.results import Record

    from .ignite import run_offline
    from .tasks import make_task

    task = make_task(task_name, n_pool=2000 if quick else 5000, seed=seed)
    kw: dict[str, Any] = {"epochs": 30 if quick else 100, "n_models": 2 if quick else 3, "steps": 100}
    out = []
    for name, ig in IGNITE_VARIANTS.items():
        res = run_offline(task, ignite=ig, seed=seed, **kw)
        setting = {"task": task_name, "quick": quick, "ignite": ig, **kw}
        out.append(Record(FAMILY, "ignite", name, seed, setting, res.curve, res.summary))
    return out


def _attack_records(task_name: str, seed: int, quick: bool, budget: int) -> list[Any]:
    from descend.results import Record

    from .attack import make_method
    from .tasks import trained_mlp_problem

    check_choice("task", task_name, ("mlp-whitebox", "mlp-blackbox"))
    dim = 20
    prob = trained_mlp_problem(0, dim=dim, white_box=task_name == "mlp-whitebox")
    x0 = feasible_start(prob, seed)
    out = []
    for name in ("hybrid", "cdsm", "coordinate"):
        tr = make_method(name, seed=seed).run(prob, x0, budget)
        feas = all(a[2] for a in tr.accepted)
        curve = {"evals": [float(i + 1) for i in range(len(tr.best))],
                 "best": [b if math.isfinite(b) else float("nan") for b in tr.best]}
        summary = {"best": tr.best[-1], "accepted": len(tr.accepted), "all_accepted_feasible": feas}
        out.append(Record(FAMILY, "attack", name, seed, {"task": task_name, "budget": budget, "dim": dim},
                          curve, summary))
    return out


def feasible_start(prob: Any, seed: int) -> torch.Tensor:
    """A uniform random feasible point of the box (rejection sampling; not charged to any method's budget)."""
    g = torch.Generator().manual_seed(40_000 + seed)
    for _ in range(10_000):
        x = prob.lower + (prob.upper - prob.lower) * torch.rand(prob.lower.numel(), generator=g, dtype=torch.float64)
        with torch.no_grad():
            _, feas = prob.objective(prob.phi(x.unsqueeze(0)))
        if bool(feas[0]):
            return x
    raise RuntimeError("no feasible start found in 10000 samples")


def _lpn_records(seed: int, quick: bool) -> list[Any]:
    from descend.results import Record

    from .lpn import train_laplace

    scale = 0.15 if quick else 1.0
    grid = torch.linspace(-4, 4, 81).unsqueeze(1)
    out = []
    for loss in ("prox", "l2"):
        model = train_laplace(loss, steps_scale=scale, seed=seed, batch_size=250 if quick else 1000)
        f = model(grid).detach().squeeze(1)
        pts = model(torch.tensor([-3.0, -2, -1, 0, 1, 2, 3]).unsqueeze(1)).detach().squeeze(1)
        target = torch.tensor([-2.0, -1, 0, 0, 0, 1, 2])
        summary = {"f_at_-3..3": [float(v) for v in pts], "max_abs_err_vs_soft_threshold":
                   float((pts - target).abs().max())}
        out.append(Record(FAMILY, "lpn", loss, seed, {"task": "laplace1d", "steps_scale": scale},
                          {"y": grid.squeeze(1).tolist(), "f": f.tolist()}, summary))
    return out


def run_study(method: str, task: str | None, seeds: int, store: Any, *, quick: bool = False, budget: int = 150,
              progress: Any = None) -> int:
    """Run ``method`` on ``task`` for seeds ``0..seeds-1``; add the records to ``store`` (idempotent); returns how
    many records were new."""
    check_choice("method", method, METHODS)
    check_int("seeds", seeds, 1, 1000)
    check_int("budget", budget, 10)
    new = 0
    for seed in range(seeds):
        if method == "ignite":
            from .tasks import TASKS

            check_choice("task", task or "teacher", TASKS)
            recs = _ignite_records(task or "teacher", seed, quick)
        elif method == "attack":
            recs = _attack_records(task or "mlp-whitebox", seed, quick, budget)
        else:
            check_choice("task", task or "laplace1d", ("laplace1d",))
            recs = _lpn_records(seed, quick)
        for r in recs:
            added = store.add(r)
            new += int(added)
            if progress is not None:
                progress(f"{r.study} {r.method} seed {r.seed}: {_brief(r.summary)}{'' if added else ' (cached)'}")
    return new


def _brief(summary: Any) -> str:
    keys = [k for k in ("p100", "best", "max_abs_err_vs_soft_threshold") if k in summary]
    return ", ".join(f"{k}={summary[k]:.4g}" for k in keys)


def bootstrap_ci(values: list[float], *, n_boot: int = 2000, level: float = 0.95, seed: int = 0
                 ) -> tuple[float, float, float]:
    """Mean and percentile-bootstrap CI of ``values``."""
    t = torch.tensor(values, dtype=torch.float64)
    if t.numel() < 2:
        v = float(t.mean())
        return v, v, v
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, t.numel(), (n_boot, t.numel()), generator=g)
    means = t[idx].mean(1)
    lo, hi = torch.quantile(means, torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64))
    return float(t.mean()), float(lo), float(hi)


def _study_rows(study: str, recs: list[Any]) -> list[dict[str, str]]:
    rows = []
    for m in sorted({r.method for r in recs}):
        rs = [r for r in recs if r.method == m]
        if study == "ignite":
            mean, lo, hi = bootstrap_ci([r.summary["p100"] for r in rs])
            rows.append({"method": m, "runs": str(len(rs)), "p100 mean [95% CI]": f"{mean:.4f} [{lo:.4f}, "
                         f"{hi:.4f}]", "task": str(sorted({r.setting['task'] for r in rs}))})
        elif study == "attack":
            finals = sorted(r.summary["best"] for r in rs)
            rows.append({"method": m, "starts": str(len(rs)),
                         "median best feasible": f"{finals[len(finals) // 2]:.4f}",
                         "all accepted feasible": str(all(r.summary["all_accepted_feasible"] for r in rs))})
        else:
            errs = [r.summary["max_abs_err_vs_soft_threshold"] for r in rs]
            rows.append({"loss": m, "seeds": str(len(rs)), "f(-3..3) (seed 0)":
                         " ".join(f"{v:.2f}" for v in rs[0].summary["f_at_-3..3"]),
                         "max |f − soft-thr| at -3..3": f"{max(errs):.3f}"})
    return rows


def report_rows(store: Any) -> list[dict[str, str]]:
    """The report's tables as one list of rows, each led by its ``study`` (ignite, attack, lpn); a column
    another study lacks is absent from that row (``descend surrogate report`` prints them)."""
    return [{"study": study, **row} for study in store.studies(FAMILY)
            for row in _study_rows(study, store.records(FAMILY, study))]


def build_report(store: Any, out: Any) -> Any:
    """One section (figure + table) per stored study of the family; returns the written path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from descend.results.html import figure_html, table_html, write_page

    body = []
    studies = store.studies(FAMILY)
    if not studies:
        raise ValueError("no surrogate results in this storage: run `descend surrogate run METHOD` first")
    for study in studies:
        recs = store.records(FAMILY, study)
        methods = sorted({r.method for r in recs})
        fig, ax = plt.subplots(figsize=(6, 3.6))
        for m in methods:
            rs = [r for r in recs if r.method == m]
            if study == "ignite":
                curves = torch.tensor([r.curve["p100"] for r in rs])
                ax.plot(rs[0].curve["step"], curves.median(0).values, label=m)
                ax.set_xlabel("gradient-ascent step")
                ax.set_ylabel("normalised 100th-pct score")
            elif study == "attack":
                curves = torch.tensor([r.curve["best"] for r in rs])
                ax.plot(rs[0].curve["evals"], curves.nanmedian(0).values, label=m)
                ax.set_xlabel("Φ evaluations")
                ax.set_ylabel("best feasible f(Φ(x)) (median)")
            else:
                ax.plot(rs[0].curve["y"], rs[0].curve["f"], label=f"LPN ({m})")
                ax.set_xlabel("y")
                ax.set_ylabel("f_θ(y)")
        rows = _study_rows(study, recs)
        if study == "lpn":
            y = torch.linspace(-4, 4, 81)
            ax.plot(y, torch.sign(y) * torch.clamp(y.abs() - 1, min=0), "k--", lw=1, label="soft-threshold")
        ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        body.append(f"<h2>{study}</h2>" + figure_html(fig) + table_html(rows))
        plt.close(fig)
    return write_page("descend surrogate report", "\n".join(body), out)
