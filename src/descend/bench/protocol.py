"""The fair protocol: equal tuning budgets from each optimizer's registry search space, then reruns on seeds.

For every cell (workload, scale, optimizer) of a :class:`Plan`:

1. **Tune** — exactly ``trials`` trials (Optuna; a seeded TPE sampler, or ``"cd"``: the coordinate-descent
   grid sweep of Wen et al. 2025 — start from the documented defaults, move along one hyperparameter at a time
   to the best grid value, stop when no single change helps or the budget is spent), each trained for
   ``tune_fraction`` of the full budget on the tuning seed 0, judged by the final validation loss.
   Diverged trials count toward the budget with value +inf.
2. **Final** — the best configuration is retrained at the full budget on seeds 1..K.

Every optimizer gets the same number of trials, the same construction of its search space, the same
schedule, the same seeds.  Work is idempotent: a finished trial is stored once (see :mod:`.storage`) and
never rerun, so re-running a plan resumes it, and several workers can share one database.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import platform
import subprocess
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from .. import optim as do
from ..optim.registry import Categorical, Dimension, FloatRange, IntRange
from .storage import RunRow, Storage, owner_id
from .trial import TrialResult, run_trial
from .workloads import get_workload

__all__ = ["SUITES", "Plan", "WorkItem", "cd_next", "pending_work", "provenance", "run_work", "suggest"]

#: Built-in suites: (workload, scale) cells.  ``quick`` fits the 10-minute quick start on 2 cores.
SUITES: dict[str, list[tuple[str, str]]] = {
    "quick": [("logreg_breast_cancer", "s"), ("mlp_mnist1d", "s"), ("icl_linear_regression", "s")],
    "full": [("logreg_breast_cancer", "s"), ("logreg_breast_cancer", "m"), ("logreg_digits", "s"),
             ("logreg_digits", "m"), ("mlp_mnist1d", "s"), ("mlp_mnist1d", "m"), ("cnn_mnist1d", "s"),
             ("cnn_mnist1d", "m"), ("charlm_stdlib", "s"), ("charlm_stdlib", "m"), ("charlm_stdlib", "l"),
             ("matrix_sensing", "s"), ("matrix_sensing", "m"), ("icl_linear_regression", "s"),
             ("icl_linear_regression", "m")],
}
TUNE_SEED = 0


@dataclass(frozen=True)
class Plan:
    """A benchmark study: cells × optimizers, the tuning budget and the seeds."""

    name: str
    cells: tuple[tuple[str, str], ...]
    optimizers: tuple[str, ...]
    trials: int = 8
    seeds: int = 3
    tune_fraction: float = 0.5
    sampler: str = "tpe"
    budget_scale: float = 1.0
    evaluations: int = 20
    seed: int = 0
    threads: int = 1
    workload_imports: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.trials < 1:
            raise ValueError(f"trials must be >= 1, got {self.trials}")
        if self.seeds < 1:
            raise ValueError(f"seeds must be >= 1, got {self.seeds}")
        if not 0 < self.tune_fraction <= 1:
            raise ValueError(f"tune_fraction must be in (0, 1], got {self.tune_fraction}")
        if self.sampler not in ("tpe", "cd"):
            raise ValueError(f"sampler must be 'tpe' or 'cd', got {self.sampler!r}")
        if not 0 < self.budget_scale < math.inf:
            raise ValueError(f"budget_scale must be a finite number > 0, got {self.budget_scale}")
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        if not self.cells or not self.optimizers:
            raise ValueError("a plan needs at least one workload and one optimizer")
        for name in self.optimizers:
            do.get(name)
        for w, s in self.cells:
            get_workload(w).settings(s)

    def steps(self, workload: str, scale: str) -> int:
        """Full training budget of a cell (the workload's default × ``budget_scale``)."""
        return max(1, round(get_workload(workload).budget[scale] * self.budget_scale))

    def tune_steps(self, workload: str, scale: str) -> int:
        return max(1, round(self.steps(workload, scale) * self.tune_fraction))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Plan:
        d = dict(d)
        d["cells"] = tuple(tuple(c) for c in d["cells"])
        d["optimizers"] = tuple(d["optimizers"])
        d["workload_imports"] = tuple(d.get("workload_imports", ()))
        d.setdefault("threads", 1)
        # never imports workload_imports: a stored plan is data (the CLI loads plug-ins named on its command line)
        return cls(**d)


@dataclass(frozen=True)
class WorkItem:
    """One unit of work: a tuning trial of a cell, or the final run of a cell on one seed."""

    workload: str
    scale: str
    optimizer: str
    phase: str  # "tune" | "final"
    seed: int

    @property
    def cell(self) -> str:
        return f"{self.workload}:{self.scale}:{self.optimizer}"


# -------------------------------------------------------------------------------------------- search space


def _choices(dim: Categorical) -> dict[str, Any]:
    return {repr(c): c for c in dim.choices}


def suggest(trial: Any, space: Mapping[str, Dimension]) -> dict[str, Any]:
    """Sample hyperparameters for an Optuna ``trial`` from a registry search space."""
    out: dict[str, Any] = {}
    for name in sorted(space):
        dim = space[name]
        if isinstance(dim, FloatRange):
            out[name] = trial.suggest_float(name, dim.low, dim.high, log=dim.log)
        elif isinstance(dim, IntRange):
            out[name] = trial.suggest_int(name, dim.low, dim.high, log=dim.log)
        else:
            mapping = _choices(dim)
            out[name] = mapping[trial.suggest_categorical(name, list(mapping))]
    return out


def _grid(dim: Dimension, points: int = 5) -> list[Any]:
    if isinstance(dim, FloatRange):  # clamped: exp(log(low)) can round just outside [low, high]
        return [min(max(v, dim.low), dim.high) for v in dim.grid(points)]
    if isinstance(dim, IntRange):
        if dim.high == dim.low:
            return [dim.low]
        return sorted({round(v) for v in FloatRange(dim.low, dim.high, log=dim.log and dim.low > 0).grid(points)})
    return list(dim.choices)


def _key(params: Mapping[str, Any]) -> str:
    return repr(sorted((k, repr(v)) for k, v in params.items()))


def cd_next(space: Mapping[str, Dimension], defaults: Mapping[str, Any],
            history: list[tuple[dict[str, Any], float]]) -> dict[str, Any] | None:
    """Next configuration of a coordinate-descent grid sweep, or ``None`` once no single change improves.

    Deterministic given the history: start at the defaults (snapped to each grid), then for each
    hyperparameter in name order try every other grid value, move to the best; repeat sweeps until a full
    sweep does not move.
    """
    seen = {_key(p): v for p, v in history}
    grids = {k: _grid(space[k]) for k in sorted(space)}

    def snap(k: str, v: Any) -> Any:
        g = grids[k]
        if isinstance(space[k], (FloatRange, IntRange)) and isinstance(v, (int, float)):
            if isinstance(space[k], FloatRange) and space[k].log and v > 0:
                return min(g, key=lambda x: abs(math.log(x) - math.log(v)))
            return min(g, key=lambda x: abs(x - v))
        return v if v in g else g[0]

    center = {k: snap(k, defaults.get(k, grids[k][len(grids[k]) // 2])) for k in grids}
    if _key(center) not in seen:
        return center
    for _ in range(100):
        moved = False
        for k in grids:
            for v in grids[k]:
                cand = {**center, k: v}
                if _key(cand) not in seen:
                    return cand
            best = min((dict(center, **{k: v}) for v in grids[k]), key=lambda c: seen[_key(c)])
            if seen[_key(best)] < seen[_key(center)]:
                center, moved = best, True
        if not moved:
            return None
    return None


# -------------------------------------------------------------------------------------------- provenance


@functools.lru_cache(maxsize=1)
def provenance() -> dict[str, Any]:
    """Machine, versions and code revision, stored with every result."""
    import torch

    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5, check=False).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        rev = None
    return {"machine": platform.node(), "platform": platform.platform(), "processor": platform.processor(),
            "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "torch": torch.__version__, "descend": __version__,
            "git": rev}


# -------------------------------------------------------------------------------------------- work


def _study_name(plan: Plan, item: WorkItem) -> str:
    return f"{plan.name}/{item.cell}"


def _sampler(plan: Plan, cell: str, slot: int = 0) -> Any:
    """The cell's TPE sampler, seeded by the plan seed, the cell and the budget ``slot`` being asked for.

    ``slot`` = completed + live running trials (failed ones, e.g. killed mid-run, do not count), so the
    suggestion is a function of the completed trials alone: a study resumed after a crash asks exactly what
    the uninterrupted one did.  A fresh seed per slot keeps one fresh sampler from replaying the same random
    draws (two identical start-up trials would waste the budget).
    """
    import optuna

    seed = int(hashlib.sha256(f"{plan.seed}/{cell}/{slot}".encode()).hexdigest()[:8], 16)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(2, min(5, plan.trials // 3)))


_STUDIES: dict[tuple[str, str], Any] = {}


def _study(storage: Storage, plan: Plan, item: WorkItem) -> Any:
    """The cell's Optuna study (created once per process and database, then reused)."""
    import optuna

    key = (storage.url, _study_name(plan, item))
    if key not in _STUDIES:
        _STUDIES[key] = optuna.create_study(study_name=key[1], storage=storage.optuna(),
                                            sampler=_sampler(plan, item.cell), direction="minimize",
                                            load_if_exists=True)
    return _STUDIES[key]


def _lease_key(plan: Plan, cell: str, number: int) -> str:
    """The lease held (and renewed by heartbeats) while tuning trial ``number`` of ``cell`` trains."""
    return f"{plan.name}/{cell}/tune/{number}"


def _reap_dead_trials(storage: Storage, plan: Plan, item: WorkItem, study: Any, orphans: bool = False) -> None:
    """Settle RUNNING trials whose lease is gone (expired, or held by a pid of this host that died), whatever
    host ran them, so they stop holding budget.

    A trial whose result was stored before its process died is completed with the stored value; any other
    is marked failed (it does not count toward the budget, and its work is redone).  With ``orphans`` (only
    while holding the cell's tune-ask claim) a RUNNING trial with no owner is settled too: its asker died
    between ``ask`` and recording its owner, both done under that claim (the lease is taken before the owner
    is recorded, so a trial with an owner and no live lease is dead).
    """
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    if not running:
        return
    leases = storage.leases(_lease_key(plan, item.cell, 0)[:-1])
    dead = [t for t in running if (orphans if "owner" not in t.user_attrs
                                   else not storage.lease_live(leases.get(_lease_key(plan, item.cell, t.number))))]
    if dead:
        stored = {r.trial_number: r for r in storage.runs(plan=plan.name, phase="tune", cell=item.cell)}
        for t in dead:
            row = stored.get(t.number)
            try:
                if row is not None:
                    value = math.inf if row.diverged else row.final.get(get_workload(item.workload).target_metric,
                                                                          math.inf)
                    storage.optuna().set_trial_state_values(t._trial_id, TrialState.COMPLETE, [value])
                else:
                    storage.optuna().set_trial_state_values(t._trial_id, TrialState.FAIL)
            except UpdateFinishedTrialError:  # it finished (and released its lease) while we looked
                continue
            gone = leases.get(_lease_key(plan, item.cell, t.number))
            if gone is not None:  # the dead holder's expired lease: clear it
                storage.release(_lease_key(plan, item.cell, t.number), owner=gone[0])


def tune_counts(storage: Storage, plan: Plan, item: WorkItem) -> tuple[int, int]:
    """(finished, running) tuning trials of a cell."""
    from optuna.trial import TrialState

    study = _study(storage, plan, item)
    _reap_dead_trials(storage, plan, item, study)
    done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    # a RUNNING trial without an owner is being asked right now or is an orphan (see _reap_dead_trials): not
    # counted, so the cell stays pending and run_work, under the claim, settles it or waits for the asker
    running = sum("owner" in t.user_attrs for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
    return done, running


def _objective(plan: Plan, result: TrialResult, workload: str) -> float:
    metric = get_workload(workload).target_metric
    value = result.final.get(metric, math.inf)
    return math.inf if result.diverged or not math.isfinite(value) else float(value)


def best_config(storage: Storage, plan: Plan, item: WorkItem) -> dict[str, Any]:
    """The best tuning configuration of a cell (lowest objective; ties to the earliest trial)."""
    rows = storage.runs(plan=plan.name, phase="tune", cell=item.cell)
    if not rows:
        raise RuntimeError(f"{item.cell}: no finished tuning trial")
    metric = get_workload(item.workload).target_metric

    def value(r: RunRow) -> float:
        v = r.final.get(metric, math.inf)
        return math.inf if r.diverged else v

    return min(rows, key=lambda r: (value(r), r.trial_number)).hyperparameters


@functools.cache
def not_applicable(workload: str, scale: str, optimizer: str) -> str | None:
    """Why ``optimizer`` is not run on ``workload:scale`` (e.g. ``"n/a: no hidden matrices"`` for Muon on
    logistic regression), or ``None``; such cells get no work and the report should show the reason."""
    return get_workload(workload).not_applicable(optimizer, scale)


def pending_work(storage: Storage, plan: Plan, finished: set[str] | None = None) -> Iterator[WorkItem]:
    """Work still to do, in order: for each cell its tuning trials, then its final seeds.

    ``finished`` (optional) caches what was found complete (``cell`` = everything, ``cell/tune`` = tuning;
    both only ever grow), so repeated scans skip it without queries.
    """
    for w, s in plan.cells:
        for o in plan.optimizers:
            if not_applicable(w, s, o):
                continue
            tune = WorkItem(w, s, o, "tune", TUNE_SEED)
            if finished is not None and tune.cell in finished:
                continue
            if finished is not None and f"{tune.cell}/tune" in finished:
                done, running = plan.trials, 0
            else:
                done, running = tune_counts(storage, plan, tune)
                if finished is not None and done >= plan.trials:
                    finished.add(f"{tune.cell}/tune")
            if done + running < plan.trials and not _cd_converged(storage, plan, tune):
                yield tune
                continue
            if done < plan.trials and not _cd_converged(storage, plan, tune):
                continue  # others are still tuning this cell
            todo = [k for k in range(1, plan.seeds + 1) if not storage.has_run(plan.name, tune.cell, "final", k, -1)]
            if not todo and finished is not None:
                finished.add(tune.cell)
            for k in todo:
                yield WorkItem(w, s, o, "final", k)


def _cd_history(storage: Storage, plan: Plan, item: WorkItem) -> list[tuple[dict[str, Any], float]]:
    metric = get_workload(item.workload).target_metric
    rows = storage.runs(plan=plan.name, phase="tune", cell=item.cell)
    return [(r.hyperparameters, math.inf if r.diverged else r.final.get(metric, math.inf)) for r in rows]


def _normalize(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in params.items()}


def _cd_converged(storage: Storage, plan: Plan, item: WorkItem) -> bool:
    if plan.sampler != "cd":
        return False
    spec = do.get(item.optimizer)
    hist = [(_normalize(p), v) for p, v in _cd_history(storage, plan, item)]
    return bool(hist) and cd_next(spec.search_space, spec.defaults, hist) is None


def run_work(storage: Storage, plan: Plan, item: WorkItem, *, progress: Callable[[int], None] | None = None,
             executor: Callable[..., TrialResult] | None = None) -> RunRow | None:
    """Do one work item and store it; returns ``None`` if someone else did (or is doing) it."""
    run = executor or run_trial
    w, s = item.workload, item.scale
    spec = do.get(item.optimizer)
    if item.phase == "final":
        key = f"{plan.name}/{item.cell}/final/{item.seed}"
        with storage.claimed(key) as ok:
            if not ok or storage.has_run(plan.name, item.cell, "final", item.seed, -1):
                return None
            hp = best_config(storage, plan, item)
            res = run(w, s, item.optimizer, hp, item.seed, plan.steps(w, s), evaluations=plan.evaluations,
                      threads=plan.threads, progress=progress)
            row = _row(plan, item, -1, plan.steps(w, s), hp, res)
            return row if storage.add_run(row) else None

    from optuna.trial import TrialState

    with storage.claimed(f"{plan.name}/{item.cell}/tune-ask") as ok:  # one asker at a time per cell
        if not ok:
            return None
        study = _study(storage, plan, item)
        _reap_dead_trials(storage, plan, item, study, orphans=True)
        done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
        running = len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
        if done + running >= plan.trials:
            return None
        if plan.sampler == "cd":
            hist = [(_normalize(p), v) for p, v in _cd_history(storage, plan, item)]
            nxt = cd_next(spec.search_space, spec.defaults, hist)
            if nxt is None:
                return None
            study.enqueue_trial({k: (repr(v) if isinstance(spec.search_space[k], Categorical) else v)
                                 for k, v in nxt.items()}, skip_if_exists=False)
        study.sampler = _sampler(plan, item.cell, done + running)  # not the failed trials: see _sampler
        trial = study.ask()
        lease, trial_id = _lease_key(plan, item.cell, trial.number), trial._trial_id
        if not storage.claim(lease, on_beat=lambda: storage.optuna().record_heartbeat(trial_id)):
            raise RuntimeError(f"{lease}: a lease on a trial number Optuna just handed out")  # cannot happen
        trial.set_user_attr("owner", owner_id())
    try:
        hp = {**suggest(trial, spec.search_space)}
        steps = plan.tune_steps(w, s)
        try:
            res = run(w, s, item.optimizer, hp, TUNE_SEED, steps, evaluations=plan.evaluations,
                      threads=plan.threads, progress=progress)
        except BaseException:
            study.tell(trial, state=TrialState.FAIL)
            raise
        if not storage.holds(lease):  # stalled past our lease: the trial was reclaimed (and redone) elsewhere
            return None
        row = _row(plan, item, trial.number, steps, hp, res)
        storage.add_run(row)
        study.tell(trial, _objective(plan, res, w))
    finally:
        storage.release(lease)
    return row


def _row(plan: Plan, item: WorkItem, number: int, steps: int, hp: dict[str, Any], res: TrialResult) -> RunRow:
    return RunRow(plan=plan.name, workload=item.workload, scale=item.scale, optimizer=item.optimizer,
                  phase=item.phase, trial_number=number, seed=item.seed, steps=steps, hyperparameters=hp,
                  final=res.final, diverged=res.diverged, train_time=res.train_time, eval_time=res.eval_time,
                  total_time=res.total_time, curve=res.curve,
                  provenance={**provenance(), "overhead": res.overhead, **res.info})
