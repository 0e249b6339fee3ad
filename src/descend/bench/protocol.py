"""The fair protocol: equal tuning budgets from each optimizer's registry search space, reruns on seeds, and a
budget ladder of the baseline to measure speedups.

For every cell (workload, scale, optimizer) of a :class:`Plan`:

1. **Tune** — trial 0 is the optimizer's documented default (its registry defaults), then Optuna (a seeded TPE
   sampler, or ``"cd"``: the coordinate-descent grid sweep of Wen et al. 2025 — from the defaults, move along one
   hyperparameter at a time to the best grid value, stop when no single change helps or the budget is spent),
   each trial trained for ``tune_fraction`` of the full budget on a tuning seed, judged by the final validation
   metric.  The number of trials grows with the dimension of the search space (``trial_scaling="dim"``:
   ``ceil(trials × d / d_baseline)``, so the baseline gets exactly ``trials``).  Diverged trials count toward the
   budget with value +inf.  **Edge widening**: when the best value of a log-scaled range lies within 10 % (of the
   range, in log space) of an edge, that edge moves out by half the range's width and ``widen_trials`` more
   trials are run in the widened space (at most ``widen`` rounds); the report lists every widening.
2. **Final** — the best configuration is retrained at the full budget T on seeds 1..K.
3. **Ladder** — the baseline's (AdamW's) tuned configuration is rerun at ``ladder`` × T (default 0.25, 0.5, 1,
   2, 4), each a full run with its own schedule, on the same seeds 1..K (the 1× rung is the final run).  With
   ``ladder_retune`` every rung other than 1× is tuned on its own (a cell ``adamw@f``: ``trials`` more tuning
   trials at f × the tuning budget, so the ladder then costs about (1 + Σ f·tune_fraction·trials/K) times more).
4. **Noise floor** — with ``noise_floor`` a second AdamW (the arm ``adamw#2``) is tuned with another sampler
   seed and another tuning seed, and run on the same final seeds: how far two honest tunings of the same
   optimizer land apart.

Every optimizer gets the same construction of its search space, the same schedule, the same seeds.  Work is
idempotent: a finished trial is stored once (see :mod:`.storage`) and never rerun, so re-running a plan resumes
it, and several workers can share one database.

**Data-constrained mode** (``mode="data-constrained"``, after Kim et al. 2025): the data are fixed (use a small
workload such as MNIST-1D at 4000 samples), the weight-decay range reaches 30 × the usual value (0.1, or the
default when larger), and tuning selects,
among the trials whose validation curve is monotone (no over-fitting), the lowest final value; the report fits
the ladder's asymptote.  With ``ensemble=K`` (K ≥ 2, at most ``seeds``) the final runs also store their
held-out class probabilities, and the report scores the ensemble of each optimizer's first K final seeds
(:func:`descend.bench.metrics.ensemble_metrics`): Kim et al.'s observation that ensembling independently
trained models lowers the loss further, at K times the training compute.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from .. import optim as do
from ..optim.registry import Categorical, Dimension, FloatRange, IntRange
from ..results.provenance import provenance
from . import metrics
from .storage import RunRow, Storage, owner_id
from .trial import TrialResult, check_monitors, run_trial
from .workloads import get_workload

__all__ = ["LADDER", "SUITES", "Arm", "Plan", "Widening", "WorkItem", "best_config", "cd_next", "pending_work",
           "provenance", "run_work", "suggest", "tuning_space", "widenings"]

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
#: tuning seed of the replica arms (``adamw#2``...): not a final seed, not the primary tuning seed
REPLICA_TUNE_SEED = 1000
#: the default budget ladder, as multiples of the full budget T
LADDER = (0.25, 0.5, 1.0, 2.0, 4.0)
EDGE_FRACTION = 0.1  # a best value this close (in log-range fraction) to an edge widens the range
MODES = ("standard", "data-constrained")
DATA_CONSTRAINED_WD = 30.0  # data-constrained mode: weight decay searched up to this × its default


@dataclass(frozen=True)
class Arm:
    """What a plan's cell optimizer name means: ``name`` (registry), ``name#k`` (an independent k-th tuning: the
    tuning-noise floor), ``name@f`` (a baseline rung at f × T tuned on its own: ``ladder_retune``)."""

    spec: str
    replica: int = 1
    factor: float = 1.0

    @classmethod
    def parse(cls, arm: str) -> Arm:
        name, _, rest = arm.partition("@")
        factor = float(rest) if rest else 1.0
        name, _, rep = name.partition("#")
        return cls(name, int(rep) if rep else 1, factor)


@dataclass(frozen=True)
class Plan:
    """A benchmark study: cells × optimizers, the tuning budget, the seeds and the baseline ladder."""

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
    baseline: str = "adamw"
    ladder: tuple[float, ...] = LADDER
    ladder_all: bool = False
    ladder_retune: bool = False
    noise_floor: bool = True
    trial_scaling: str = "dim"
    widen: int = 1
    widen_trials: int = 0  # 0: half the cell's trials (at least 2)
    mode: str = "standard"
    monitors: tuple[str, ...] = ()  # curvature monitors on the final runs (descend.bench.trial.MONITORS)
    monitor_every: int = 0
    ensemble: int = 0  # data-constrained mode: score ensembles of this many final seeds (0: none)

    def __post_init__(self) -> None:
        check_monitors(self.monitors, self.monitor_every)
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
        if self.ladder and (1.0 not in self.ladder or any(not (f > 0 and math.isfinite(f)) for f in self.ladder)
                            or list(self.ladder) != sorted(set(self.ladder))):
            raise ValueError(f"ladder must be increasing positive budget factors including 1, got {self.ladder}")
        if self.trial_scaling not in ("dim", "fixed"):
            raise ValueError(f"trial_scaling must be 'dim' or 'fixed', got {self.trial_scaling!r}")
        if self.widen < 0 or self.widen_trials < 0:
            raise ValueError(f"widen and widen_trials must be >= 0, got {self.widen}, {self.widen_trials}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.ensemble:
            if self.mode != "data-constrained" or not 2 <= self.ensemble <= self.seeds:
                raise ValueError(f"ensemble must be 0 or in [2, seeds={self.seeds}] with mode 'data-constrained', "
                                 f"got {self.ensemble} with mode {self.mode!r}")
            for w, _ in self.cells:
                if not get_workload(w).predicts:
                    raise ValueError(f"ensemble needs held-out predictions; workload {w!r} gives none "
                                     "(Workload.predicts)")
        for name in self.optimizers:
            if "#" in name or "@" in name:
                raise ValueError(f"optimizer names may not contain '#' or '@' (reserved for arms), got {name!r}")
            do.get(name)
        do.get(self.baseline)
        for w, s in self.cells:
            get_workload(w).settings(s)

    # ---------------------------------------------------------------------------------------- arms and budgets
    def expected_finals(self) -> set[tuple[str, int]]:
        """The (cell, seed) of every final run the plan must end with: every arm of every cell where the
        optimizer applies (a matrix-only optimizer on a workload without hidden matrices gets no cell)."""
        return {(f"{w}:{s}:{o}", k) for w, s in self.cells for o in self.arms()
                if not not_applicable(w, s, Arm.parse(o).spec) for k in range(1, self.seeds + 1)}

    def arms(self) -> tuple[str, ...]:
        """The cell optimizers: the plan's optimizers, the noise-floor replica of the baseline, retuned rungs."""
        out = list(self.optimizers)
        if self.baseline in self.optimizers:
            if self.noise_floor:
                out.append(f"{self.baseline}#2")
            if self.ladder_retune:
                out.extend(f"{self.baseline}@{f:g}" for f in self.ladder if f != 1.0)
        return tuple(out)

    def laddered(self, arm: str) -> bool:
        """Whether ``arm`` gets a (non-retuned) budget ladder of its own."""
        a = Arm.parse(arm)
        if not self.ladder or a.replica != 1 or a.factor != 1.0:
            return False
        return (arm == self.baseline and not self.ladder_retune) or (self.ladder_all and arm != self.baseline)

    def steps(self, workload: str, scale: str, factor: float = 1.0) -> int:
        """Full training budget of a cell (the workload's default × ``budget_scale``, × a ladder ``factor``)."""
        return max(1, round(get_workload(workload).budget[scale] * self.budget_scale * factor))

    def tune_steps(self, workload: str, scale: str, factor: float = 1.0) -> int:
        return max(1, round(self.steps(workload, scale, factor) * self.tune_fraction))

    def search_space(self, arm: str) -> dict[str, Dimension]:
        """The round-0 search space of an arm: the registry's, with the data-constrained weight-decay range."""
        spec = do.get(Arm.parse(arm).spec)
        space = dict(spec.search_space)
        wd = space.get("weight_decay")
        if self.mode == "data-constrained" and isinstance(wd, FloatRange):
            usual = max(float(spec.defaults.get("weight_decay") or 0.0), 0.1)  # Kim et al.: the usual 0.1
            space["weight_decay"] = FloatRange(wd.low, max(wd.high, DATA_CONSTRAINED_WD * float(usual)), log=wd.log)
        return space

    def trials_for(self, arm: str, round_: int = 0) -> int:
        """Tuning trials of an arm: grows with its search-space dimension (``trial_scaling="dim"``)."""
        if round_ > 0:
            return self.widen_trials or max(2, math.ceil(self.trials_for(arm) / 2))
        if self.trial_scaling == "fixed":
            return self.trials
        d = max(len(self.search_space(arm)), 1)
        d_ref = max(len(self.search_space(self.baseline)), 1)
        return max(1, math.ceil(self.trials * d / d_ref))

    def total_work(self) -> int:
        """Trials of the whole plan when no range is widened (an estimate for progress bars)."""
        n = 0
        for _ in self.cells:
            for arm in self.arms():
                n += self.trials_for(arm) + self.seeds
                if self.laddered(arm):
                    n += self.seeds * sum(f != 1.0 for f in self.ladder)
        return n

    def cost(self) -> float:
        """Training steps of the whole plan in units of the cells' full budgets T (no widening)."""
        total = 0.0
        for _ in self.cells:
            for arm in self.arms():
                f = Arm.parse(arm).factor
                total += f * (self.trials_for(arm) * self.tune_fraction + self.seeds)
                if self.laddered(arm):
                    total += self.seeds * sum(x for x in self.ladder if x != 1.0)
        return total

    def tune_seed(self, arm: str) -> int:
        r = Arm.parse(arm).replica
        return TUNE_SEED if r == 1 else REPLICA_TUNE_SEED + r

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if not self.monitors:  # plans without monitors keep the dict (and default name digest) they always had
            del d["monitors"], d["monitor_every"]
        if not self.ensemble:  # nor do plans without ensembles
            del d["ensemble"]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Plan:
        d = dict(d)
        d["cells"] = tuple(tuple(c) for c in d["cells"])
        d["optimizers"] = tuple(d["optimizers"])
        d["workload_imports"] = tuple(d.get("workload_imports", ()))
        d["ladder"] = tuple(float(f) for f in d.get("ladder", LADDER))
        d.setdefault("threads", 1)
        d["monitors"] = tuple(d.get("monitors", ()))
        # never imports workload_imports: a stored plan is data (the CLI loads plug-ins named on its command line)
        return cls(**d)


@dataclass(frozen=True)
class WorkItem:
    """One unit of work: a tuning trial of a cell (in tuning round ``round``), the final run of a cell on one
    seed, or one ladder rung (``rung`` = index into the plan's ladder) on one seed."""

    workload: str
    scale: str
    optimizer: str  # an arm (see :class:`Arm`)
    phase: str  # "tune" | "final" | "ladder"
    seed: int
    rung: int = -1
    round: int = 0

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

    Deterministic given the history: start at the defaults (added to each numeric grid when inside the range,
    else snapped to it), then for each hyperparameter (``lr`` first, then in name order) try every other grid
    value, move to the best; repeat sweeps until a full sweep does not move.
    """
    seen = {_key(p): v for p, v in history}
    grids = {k: _grid(space[k]) for k in sorted(space)}
    for k, g in grids.items():  # the start (the documented default) is a grid point itself, so trial 0 is exact
        dim, v = space[k], defaults.get(k)
        if isinstance(dim, (FloatRange, IntRange)) and isinstance(v, (int, float)) and not isinstance(v, bool) \
                and dim.low <= v <= dim.high and v not in g:
            grids[k] = sorted([*g, type(g[0])(v)])

    def snap(k: str, v: Any) -> Any:
        g, dim = grids[k], space[k]
        if isinstance(dim, (FloatRange, IntRange)) and isinstance(v, (int, float)):
            if isinstance(dim, FloatRange) and dim.log and v > 0:
                return min(g, key=lambda x: abs(math.log(x) - math.log(v)))
            return min(g, key=lambda x: abs(x - v))
        return v if v in g else g[0]

    center = {k: snap(k, defaults.get(k, grids[k][len(grids[k]) // 2])) for k in grids}
    if _key(center) not in seen:
        return center
    order = sorted(grids, key=lambda k: (k != "lr", k))  # the learning rate first: it matters most
    for _ in range(100):
        moved = False
        for k in order:
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


# -------------------------------------------------------------------------------------------- work


ROUND_STRIDE = 100_000  # stored trial number of tuning round r, Optuna trial n: r * ROUND_STRIDE + n


def _study_name(plan: Plan, item: WorkItem) -> str:
    base = f"{plan.name}/{item.cell}"
    return base if item.round == 0 else f"{base}/widen{item.round}"


def _sampler(plan: Plan, cell: str, slot: int = 0, round_: int = 0) -> Any:
    """The cell's TPE sampler, seeded by the plan seed, the cell, the widening round and the budget ``slot``.

    ``slot`` = completed + live running trials (failed ones, e.g. killed mid-run, do not count), so the
    suggestion is a function of the completed trials alone: a study resumed after a crash asks exactly what
    the uninterrupted one did.  A fresh seed per slot keeps one fresh sampler from replaying the same random
    draws (two identical start-up trials would waste the budget).
    """
    import optuna

    seed = int(hashlib.sha256(f"{plan.seed}/{cell}/{slot}/{round_}".encode()).hexdigest()[:8], 16)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(2, min(5, plan.trials // 3)))


_STUDIES: dict[tuple[str, str], Any] = {}


def _study(storage: Storage, plan: Plan, item: WorkItem) -> Any:
    """The Optuna study of a cell's tuning round (created once per process and database, then reused)."""
    import optuna

    key = (storage.url, _study_name(plan, item))
    if key not in _STUDIES:
        _STUDIES[key] = optuna.create_study(study_name=key[1], storage=storage.optuna(),
                                            sampler=_sampler(plan, item.cell, 0, item.round), direction="minimize",
                                            load_if_exists=True)
    return _STUDIES[key]


def _lease_key(plan: Plan, cell: str, number: int, round_: int = 0) -> str:
    """The lease held (and renewed by heartbeats) while tuning trial ``number`` of ``cell``'s round ``round_``
    trains (each widening round is its own Optuna study, numbered from 0)."""
    return f"{plan.name}/{cell}/tune/{round_}/{number}"


def _tune_rows(storage: Storage, plan: Plan, item: WorkItem, round_: int | None = None) -> list[RunRow]:
    rows = storage.runs(plan=plan.name, phase="tune", cell=item.cell)
    if round_ is None:
        return rows
    return [r for r in rows if r.trial_number // ROUND_STRIDE == round_]


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
    leases = storage.leases(_lease_key(plan, item.cell, 0, item.round)[:-1])
    dead = [t for t in running if (orphans if "owner" not in t.user_attrs
                                   else not storage.lease_live(leases.get(_lease_key(plan, item.cell, t.number,
                                                                                          item.round))))]
    if dead:
        stored = {r.trial_number % ROUND_STRIDE: r for r in _tune_rows(storage, plan, item, item.round)}
        for t in dead:
            row = stored.get(t.number)
            try:
                if row is not None:
                    storage.optuna().set_trial_state_values(t._trial_id, TrialState.COMPLETE,
                                                            [_value(plan, row, item.workload)])
                else:
                    storage.optuna().set_trial_state_values(t._trial_id, TrialState.FAIL)
            except UpdateFinishedTrialError:  # it finished (and released its lease) while we looked
                continue
            gone = leases.get(_lease_key(plan, item.cell, t.number, item.round))
            if gone is not None:  # the dead holder's expired lease: clear it
                storage.release(_lease_key(plan, item.cell, t.number, item.round), owner=gone[0])


def tune_counts(storage: Storage, plan: Plan, item: WorkItem) -> tuple[int, int]:
    """(finished, running) tuning trials of a cell's tuning round."""
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


def _value(plan: Plan, row: RunRow, workload: str) -> float:
    """A stored tuning trial's objective; in data-constrained mode a trial whose validation curve is not monotone
    (it over-fits) ranks after every monotone one (its value + ``1e300``: still ordered among the non-monotone)."""
    metric = get_workload(workload).target_metric
    v = math.inf if row.diverged else float(row.final.get(metric, math.inf))
    if not math.isfinite(v):
        return math.inf
    if plan.mode == "data-constrained" and not metrics.monotone_curve([c.get(metric, math.inf) for c in row.curve]):
        return v + 1e300
    return v


def best_config(storage: Storage, plan: Plan, item: WorkItem) -> dict[str, Any]:
    """The best tuning configuration of a cell over all its rounds (lowest objective; ties to the earliest)."""
    rows = _tune_rows(storage, plan, item)
    if not rows:
        raise RuntimeError(f"{item.cell}: no finished tuning trial")
    return min(rows, key=lambda r: (_value(plan, r, item.workload), r.trial_number)).hyperparameters


@dataclass(frozen=True)
class Widening:
    """A range widened because the best value sat near its edge."""

    parameter: str
    best: float
    old: tuple[float, float]
    new: tuple[float, float]
    round: int


def tuning_space(storage: Storage, plan: Plan, item: WorkItem) -> tuple[dict[str, Dimension], list[Widening]] | None:
    """The search space of an arm's tuning round ``item.round`` and the widenings that led to it; ``None`` when
    that round is not needed (the best value of rounds before it sits on no edge, or rounds are used up)."""
    space = plan.search_space(item.optimizer)
    widenings: list[Widening] = []
    for r in range(1, item.round + 1):
        if r > plan.widen:
            return None
        rows = [row for row in _tune_rows(storage, plan, item) if row.trial_number // ROUND_STRIDE < r]
        if not rows:
            return None
        best = min(rows, key=lambda x: (_value(plan, x, item.workload), x.trial_number))
        if not math.isfinite(_value(plan, best, item.workload)):
            return None
        moved = False
        for k, dim in sorted(space.items()):
            v = best.hyperparameters.get(k)
            if not (isinstance(dim, FloatRange) and dim.log and isinstance(v, (int, float)) and v > 0):
                continue
            lo, hi = math.log(dim.low), math.log(dim.high)
            frac = (math.log(v) - lo) / (hi - lo)
            if frac < EDGE_FRACTION or frac > 1 - EDGE_FRACTION:
                half = (hi - lo) / 2
                new = (math.exp(lo - half), dim.high) if frac < EDGE_FRACTION else (dim.low, math.exp(hi + half))
                widenings.append(Widening(k, float(v), (dim.low, dim.high), new, r))
                space[k] = FloatRange(new[0], new[1], log=True)
                moved = True
        if not moved:
            return None
    return space, widenings


def widenings(storage: Storage, plan: Plan, workload: str, scale: str, arm: str) -> list[Widening]:
    """Every range widening of a cell (for the report)."""
    out: list[Widening] = []
    for r in range(1, plan.widen + 1):
        got = tuning_space(storage, plan, WorkItem(workload, scale, arm, "tune", plan.tune_seed(arm), round=r))
        if got is None:
            break
        if _tune_rows(storage, plan, WorkItem(workload, scale, arm, "tune", 0), r):
            out = got[1]
    return out


@functools.cache
def not_applicable(workload: str, scale: str, optimizer: str) -> str | None:
    """Why ``optimizer`` is not run on ``workload:scale`` (e.g. ``"n/a: no hidden matrices"`` for Muon on
    logistic regression), or ``None``; such cells get no work and the report should show the reason."""
    return get_workload(workload).not_applicable(optimizer, scale)


def pending_work(storage: Storage, plan: Plan, finished: set[str] | None = None) -> Iterator[WorkItem]:
    """Work still to do, in order: for each cell its tuning rounds, then its final seeds, then its ladder.

    ``finished`` (optional) caches what was found complete (``cell`` = everything, ``cell/tune`` = tuning;
    both only ever grow), so repeated scans skip it without queries.
    """
    for w, s in plan.cells:
        for o in plan.arms():
            if not_applicable(w, s, Arm.parse(o).spec):
                continue
            base = WorkItem(w, s, o, "tune", plan.tune_seed(o))
            if finished is not None and base.cell in finished:
                continue
            if finished is None or f"{base.cell}/tune" not in finished:
                state = _tuning_state(storage, plan, base, finished)
                if isinstance(state, WorkItem):
                    yield state
                    continue
                if state == "busy":
                    continue  # others are still tuning this cell
                if finished is not None:
                    finished.add(f"{base.cell}/tune")
            todo = [WorkItem(w, s, o, "final", k) for k in range(1, plan.seeds + 1)
                    if not storage.has_run(plan.name, base.cell, "final", k, -1)]
            if plan.laddered(o):
                todo += [WorkItem(w, s, o, "ladder", k, rung=i) for i, f in enumerate(plan.ladder) if f != 1.0
                         for k in range(1, plan.seeds + 1) if not storage.has_run(plan.name, base.cell, "ladder", k, i)]
            if not todo and finished is not None:
                finished.add(base.cell)
            yield from todo


def _tuning_state(storage: Storage, plan: Plan, base: WorkItem, finished: set[str] | None = None) -> WorkItem | str:
    """The next tuning item of a cell, ``"busy"`` (others hold the rest), or ``"done"`` (finished rounds are
    cached in ``finished`` as ``cell/tune/r``)."""
    for r in range(plan.widen + 1):
        key = f"{base.cell}/tune/{r}"
        if finished is not None and key in finished:
            continue
        item = WorkItem(base.workload, base.scale, base.optimizer, "tune", base.seed, round=r)
        if r > 0 and tuning_space(storage, plan, item) is None:
            return "done"
        n = plan.trials_for(item.optimizer, r)
        done, running = tune_counts(storage, plan, item)
        converged = _cd_converged(storage, plan, item)
        if done + running < n and not converged:
            return item
        if done < n and not converged:
            return "busy"
        if finished is not None:
            finished.add(key)
    return "done"


def _cd_history(storage: Storage, plan: Plan, item: WorkItem) -> list[tuple[dict[str, Any], float]]:
    """Every trial of the cell up to ``item.round`` (a widened round does not re-evaluate what it knows)."""
    rows = [r for r in _tune_rows(storage, plan, item) if r.trial_number // ROUND_STRIDE <= item.round]
    return [(r.hyperparameters, _value(plan, r, item.workload)) for r in rows]


def _normalize(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in params.items()}


def _cd_start(plan: Plan, storage: Storage, item: WorkItem) -> dict[str, Any]:
    """Where a coordinate-descent round starts: the defaults (round 0) or the best configuration so far."""
    spec = do.get(Arm.parse(item.optimizer).spec)
    if item.round == 0:
        return dict(spec.defaults)
    return {**spec.defaults, **_normalize(best_config(storage, plan, item))}


def _cd_converged(storage: Storage, plan: Plan, item: WorkItem) -> bool:
    if plan.sampler != "cd":
        return False
    got = tuning_space(storage, plan, item) if item.round else (plan.search_space(item.optimizer), [])
    if got is None:
        return True
    hist = [(_normalize(p), v) for p, v in _cd_history(storage, plan, item)]
    return bool(hist) and cd_next(got[0], _cd_start(plan, storage, item), hist) is None


def _default_trial(space: Mapping[str, Dimension], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """The documented defaults as an Optuna trial (parameters of the space only; categoricals by their repr)."""
    out: dict[str, Any] = {}
    for k, dim in space.items():
        if k not in defaults:
            continue
        v = defaults[k]
        if isinstance(dim, Categorical):
            if v in dim.choices:
                out[k] = repr(v)
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            # Optuna cannot store 0 on a log scale: it sees the range's low end, the trial runs the default itself
            out[k] = dim.low if getattr(dim, "log", False) and v <= 0 else v
    return out


def _exact_defaults(space: Mapping[str, Dimension], defaults: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, dim in space.items():
        if k in defaults and (not isinstance(dim, Categorical) or defaults[k] in dim.choices):
            out[k] = defaults[k]
    return out


def run_work(storage: Storage, plan: Plan, item: WorkItem, *, progress: Callable[[int], None] | None = None,
             executor: Callable[..., TrialResult] | None = None) -> RunRow | None:
    """Do one work item and store it; returns ``None`` if someone else did (or is doing) it."""
    run = executor or run_trial
    w, s = item.workload, item.scale
    arm = Arm.parse(item.optimizer)
    spec = do.get(arm.spec)
    if item.phase in ("final", "ladder"):
        number = -1 if item.phase == "final" else item.rung
        key = f"{plan.name}/{item.cell}/{item.phase}/{item.seed}/{number}"
        with storage.claimed(key) as ok:
            if not ok or storage.has_run(plan.name, item.cell, item.phase, item.seed, number):
                return None
            hp = best_config(storage, plan, item)
            factor = arm.factor * (plan.ladder[item.rung] if item.phase == "ladder" else 1.0)
            steps = plan.steps(w, s, factor)
            extra: dict[str, Any] = {}
            if plan.monitors and item.phase == "final":  # curvature monitors: on the final runs only
                extra.update(monitors=plan.monitors, monitor_every=plan.monitor_every)
            if plan.ensemble and item.phase == "final" and item.seed <= plan.ensemble:  # ensemble members
                extra.update(predictions=True)
            res = run(w, s, arm.spec, hp, item.seed, steps, evaluations=plan.evaluations, threads=plan.threads,
                      progress=progress, **extra)
            row = _row(plan, item, number, steps, hp, res)
            return row if storage.add_run(row) else None

    import warnings

    from optuna.trial import TrialState

    with storage.claimed(f"{plan.name}/{item.cell}/tune-ask/{item.round}") as ok:  # one asker at a time per cell
        if not ok:
            return None
        got = tuning_space(storage, plan, item) if item.round else (plan.search_space(item.optimizer), [])
        if got is None:
            return None
        space = got[0]
        study = _study(storage, plan, item)
        _reap_dead_trials(storage, plan, item, study, orphans=True)
        done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
        running = len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
        if done + running >= plan.trials_for(item.optimizer, item.round):
            return None
        slot = done + running  # not the failed trials: see _sampler
        default_trial = False
        if plan.sampler == "cd":
            hist = [(_normalize(p), v) for p, v in _cd_history(storage, plan, item)]
            nxt = cd_next(space, _cd_start(plan, storage, item), hist)
            if nxt is None:
                return None
            study.enqueue_trial({k: (repr(v) if isinstance(space[k], Categorical) else v) for k, v in nxt.items()},
                                skip_if_exists=False)
        elif slot == 0 and item.round == 0:
            # trial 0 is the documented default (a default outside the range is still evaluated as is); a
            # killed trial 0 leaves the slot at 0, so the resumed study evaluates the default again
            study.enqueue_trial(_default_trial(space, spec.defaults), skip_if_exists=False)
            default_trial = True
        study.sampler = _sampler(plan, item.cell, slot, item.round)  # not the failed trials: see _sampler
        trial = study.ask()
        lease, trial_id = _lease_key(plan, item.cell, trial.number, item.round), trial._trial_id
        if not storage.claim(lease, on_beat=lambda: storage.optuna().record_heartbeat(trial_id)):
            raise RuntimeError(f"{lease}: a lease on a trial number Optuna just handed out")  # cannot happen
        trial.set_user_attr("owner", owner_id())
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Fixed parameter", category=UserWarning)
            hp = {**suggest(trial, space)}
        if default_trial:
            hp.update(_exact_defaults(space, spec.defaults))
        steps = plan.tune_steps(w, s, arm.factor)
        try:
            res = run(w, s, arm.spec, hp, item.seed, steps, evaluations=plan.evaluations, threads=plan.threads,
                      progress=progress)
        except BaseException:
            study.tell(trial, state=TrialState.FAIL)
            raise
        if not storage.holds(lease):  # stalled past our lease: the trial was reclaimed (and redone) elsewhere
            return None
        row = _row(plan, item, item.round * ROUND_STRIDE + trial.number, steps, hp, res)
        storage.add_run(row)
        study.tell(trial, _value(plan, row, w))
    finally:
        storage.release(lease)
    return row


def _row(plan: Plan, item: WorkItem, number: int, steps: int, hp: dict[str, Any], res: TrialResult) -> RunRow:
    return RunRow(plan=plan.name, workload=item.workload, scale=item.scale, optimizer=item.optimizer,
                  phase=item.phase, trial_number=number, seed=item.seed, steps=steps, hyperparameters=hp,
                  final=res.final, diverged=res.diverged, train_time=res.train_time, eval_time=res.eval_time,
                  total_time=res.total_time, curve=res.curve,
                  provenance={**provenance(), "overhead": res.overhead, **res.info})
