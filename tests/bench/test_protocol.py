"""The fair protocol: equal tuning budgets, idempotent re-runs, determinism, the coordinate-descent sweep and
the mapping of registry search spaces onto Optuna."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import optuna
import pytest

from descend import optim as do
from descend.bench.executors import drain
from descend.bench.protocol import Plan, WorkItem, cd_next, pending_work, run_work, suggest, tuning_space, widenings
from descend.bench.storage import Storage, dumps
from descend.bench.trial import TrialResult
from descend.bench.workloads import get_workload
from descend.optim.registry import Categorical, FloatRange, IntRange

from .conftest import SMALL_CELL, Finished, small_plan, warm


def _without_times(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k != "train_time"}


def _fingerprint(storage: Storage, plan: str) -> dict[tuple, tuple]:
    """Everything a run computed except wall-clock times: hyperparameters, final metrics, curve, steps."""
    return {(r.cell, r.phase, r.seed, r.trial_number): (dumps(r.hyperparameters), dumps(_without_times(r.final)),
                                                         dumps([_without_times(c) for c in r.curve]), r.steps,
                                                         r.diverged)
            for r in storage.runs(plan=plan)}


# -------------------------------------------------------------------------------------------- real trials


def test_equal_budgets(finished_plan: Finished):
    storage, plan = Storage(finished_plan.url), finished_plan.plan
    w, s = SMALL_CELL
    runs = storage.runs(plan=plan.name)
    assert len(runs) >= plan.total_work()
    assert set(plan.arms()) == {"adamw", "adamw#2", "nadamw"}
    metric = get_workload(w).target_metric
    for o in plan.arms():
        spec = do.get(o.split("#")[0])
        cell = f"{w}:{s}:{o}"
        tune = storage.runs(plan=plan.name, phase="tune", cell=cell)
        final = storage.runs(plan=plan.name, phase="final", cell=cell)
        first = [r for r in tune if r.trial_number < 100_000]
        widened = [r for r in tune if r.trial_number >= 100_000]
        assert len(first) == plan.trials_for(o) == 3  # adamw and nadamw have spaces of the same dimension
        assert len(widened) in (0, plan.trials_for(o, 1))
        assert sorted(r.trial_number for r in first) == [0, 1, 2]
        assert {r.seed for r in tune} == {plan.tune_seed(o)} == ({0} if "#" not in o else {1002})
        assert {r.steps for r in tune} == {plan.tune_steps(w, s)}
        trial0 = next(r for r in first if r.trial_number == 0)
        if "#" not in o:  # trial 0 is the documented default (a replica is an independent search: also trial 0)
            assert _normalize(trial0.hyperparameters) == {k: spec.defaults[k] for k in spec.search_space}
        # the trials explore: no configuration is tried twice (each ask gets a fresh, differently seeded sampler)
        assert len({dumps(r.hyperparameters) for r in tune}) == len(tune)
        assert sorted(r.seed for r in final) == list(range(1, plan.seeds + 1))
        assert {r.trial_number for r in final} == {-1}
        assert {r.steps for r in final} == {plan.steps(w, s)}
        best = min(tune, key=lambda r: (r.final[metric], r.trial_number))
        assert all(r.hyperparameters == best.hyperparameters for r in final)
        for r in runs:
            assert r.curve[-1]["step"] == r.steps and len(r.curve) == min(plan.evaluations, r.steps)
            assert r.provenance["torch"] and "overhead" in r.provenance
        # Optuna agrees on the budget
        study = optuna.load_study(study_name=f"{plan.name}/{cell}", storage=storage.optuna())
        states = Counter(t.state.name for t in study.get_trials(deepcopy=False))
        assert states == {"COMPLETE": plan.trials_for(o)}
    # the ladder: AdamW only, every rung but 1x (the final runs) on every final seed, each its own full run
    ladder = storage.runs(plan=plan.name, phase="ladder")
    assert {r.optimizer for r in ladder} == {"adamw"}
    got = Counter((r.trial_number, r.steps) for r in ladder)
    assert got == {(i, plan.steps(w, s, f)): plan.seeds for i, f in enumerate(plan.ladder) if f != 1.0}
    best = storage.runs(plan=plan.name, phase="final", cell=f"{w}:{s}:adamw")[0].hyperparameters
    assert all(r.hyperparameters == best for r in ladder)


def _normalize(hp: dict[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in hp.items()}


def test_rerun_runs_nothing_new(finished_plan: Finished):
    storage, plan = Storage(finished_plan.url), finished_plan.plan
    before = _fingerprint(storage, plan.name)
    assert list(pending_work(storage, plan)) == []
    assert drain(storage, plan) == 0
    assert _fingerprint(storage, plan.name) == before
    # a work item done already is not redone either
    item = WorkItem(*SMALL_CELL, plan.optimizers[0], "final", 1)
    assert run_work(storage, plan, item) is None
    assert run_work(storage, plan, WorkItem(*SMALL_CELL, plan.optimizers[0], "tune", 0)) is None
    assert _fingerprint(storage, plan.name) == before


def test_same_seed_same_numbers(finished_plan: Finished, tmp_path):
    """The same plan run again into another database gives identical hyperparameters, metrics and curves."""
    storage = Storage(str(tmp_path / "again.db"))
    plan = small_plan()
    storage.save_plan(plan.name, plan.to_dict())
    assert drain(storage, plan) == len(Storage(finished_plan.url).runs(plan=plan.name))
    assert _fingerprint(storage, plan.name) == _fingerprint(Storage(finished_plan.url), plan.name)


# -------------------------------------------------------------------------------------------- fake trials


def _fake_result(value: float, steps: int, diverged: bool = False) -> TrialResult:
    curve = [{"step": float(k), "train_time": 0.001 * k, "train_loss": value + 1 / k, "val_loss": value + 1 / k}
             for k in (max(1, steps // 2), steps)]
    curve[-1]["val_loss"] = math.inf if diverged else value
    return TrialResult(curve=curve, final=dict(curve[-1]), diverged=diverged, train_time=0.001 * steps,
                       eval_time=0.0, total_time=0.002 * steps)


def _quadratic_executor(calls: list[tuple]) -> Any:
    """A stand-in for run_trial: the 'validation loss' is a function of the learning rate only (best at 3e-3)."""

    def run(workload, scale, optimizer, hp, seed, steps, **kwargs):
        calls.append((optimizer, seed, steps, dict(hp)))
        lr = hp.get("lr", 1e-3)
        return _fake_result((math.log10(lr) - math.log10(3e-3)) ** 2 + 0.01 * seed, steps)

    return run


#: the tuning core alone: no ladder, no noise-floor replica, no widening, the same trials for every space
CORE: dict[str, Any] = dict(ladder=(), noise_floor=False, widen=0, trial_scaling="fixed")


def test_equal_budgets_across_search_spaces(tmp_path):
    """Optimizers with very different search spaces all get exactly ``trials`` tuning trials and ``seeds`` finals."""
    # tuple categoricals (adamw), None / int ranges (soap), no learning rate at all (the sls line search)
    opts = tuple(o for o in ("adamw", "soap", "sls") if o in do.available())
    plan = Plan(name="spaces", cells=(("matrix_sensing", "s"),), optimizers=opts, trials=3, seeds=2,
                budget_scale=0.1, **CORE)
    storage = Storage(str(tmp_path / "spaces.db"))
    calls: list[tuple] = []
    assert drain(storage, plan, executor=_quadratic_executor(calls)) == len(opts) * (3 + 2)
    per = Counter((r.cell, r.phase) for r in storage.runs(plan=plan.name))
    assert per == {**{(f"matrix_sensing:s:{o}", "tune"): 3 for o in opts},
                   **{(f"matrix_sensing:s:{o}", "final"): 2 for o in opts}}
    for o in opts:
        space = do.get(o).search_space
        tuned = [c[3] for c in calls if c[0] == o and c[1] == 0]
        assert len(tuned) == 3
        for hp in tuned:
            assert set(hp) == set(space)
            for k, v in hp.items():
                dim = space[k]
                if isinstance(dim, Categorical):
                    assert v in dim.choices
                else:
                    assert dim.low <= v <= dim.high
    assert {c[2] for c in calls if c[1] == 0} == {plan.tune_steps("matrix_sensing", "s")}
    assert {c[2] for c in calls if c[1] > 0} == {plan.steps("matrix_sensing", "s")}
    assert drain(storage, plan, executor=_quadratic_executor(calls)) == 0


def test_a_failing_trial_does_not_consume_budget(tmp_path):
    plan = Plan(name="fails", cells=(("matrix_sensing", "s"),), optimizers=("adamw",), trials=3, seeds=1,
                budget_scale=0.1, **CORE)
    storage = Storage(str(tmp_path / "fails.db"))
    state = {"n": 0}
    ok = _quadratic_executor([])

    def flaky(*args, **kwargs):
        state["n"] += 1
        if state["n"] == 2:
            raise RuntimeError("worker crashed")
        return ok(*args, **kwargs)

    with pytest.raises(RuntimeError, match="worker crashed"):
        drain(storage, plan, executor=flaky)
    assert drain(storage, plan, executor=flaky) == 3  # 2 tuning trials left + 1 final
    tune = storage.runs(plan=plan.name, phase="tune")
    assert len(tune) == 3 and sorted(r.trial_number for r in tune) == [0, 2, 3]  # trial 1 failed
    study = optuna.load_study(study_name=f"fails/{plan.cells[0][0]}:s:adamw", storage=storage.optuna())
    assert Counter(t.state.name for t in study.trials) == {"COMPLETE": 3, "FAIL": 1}


def test_diverged_trials_count_and_lose(tmp_path):
    plan = Plan(name="div", cells=(("matrix_sensing", "s"),), optimizers=("adamw",), trials=3, seeds=1,
                budget_scale=0.1, **CORE)
    storage = Storage(str(tmp_path / "div.db"))

    def run(workload, scale, optimizer, hp, seed, steps, **kwargs):
        return _fake_result(1.0, steps, diverged=hp["lr"] > 1e-3)

    drain(storage, plan, executor=run)
    tune = storage.runs(plan=plan.name, phase="tune")
    assert len(tune) == 3
    final = storage.runs(plan=plan.name, phase="final")
    assert len(final) == 1
    if any(not r.diverged for r in tune):
        assert final[0].hyperparameters["lr"] <= 1e-3  # a diverged configuration is never the best one


@pytest.mark.filterwarnings("error:Fixed parameter")  # grid points must lie inside the Optuna distribution
def test_cd_sampler_converges_on_a_known_optimum(tmp_path):
    plan = Plan(name="cd", cells=(("matrix_sensing", "s"),), optimizers=("adamw",), trials=40, seeds=1,
                sampler="cd", budget_scale=0.1, **CORE)
    storage = Storage(str(tmp_path / "cd.db"))
    calls: list[tuple] = []
    drain(storage, plan, executor=_quadratic_executor(calls))
    tune = storage.runs(plan=plan.name, phase="tune")
    assert 1 < len(tune) < plan.trials  # converged (no single change helps) before spending the budget
    assert len({dumps(r.hyperparameters) for r in tune}) == len(tune)
    grid = FloatRange(1e-4, 3e-2, log=True).grid(5)
    best_lr = min(grid, key=lambda v: abs(math.log10(v) - math.log10(3e-3)))
    final = storage.runs(plan=plan.name, phase="final")
    assert len(final) == 1 and final[0].hyperparameters["lr"] == pytest.approx(best_lr)
    assert tune[0].hyperparameters["lr"] == 1e-3  # starts at the documented defaults, exactly
    assert tune[0].hyperparameters["betas"] == [0.9, 0.999]
    assert list(pending_work(storage, plan)) == []


# -------------------------------------------------------------------------------------------- cd_next


TOY_SPACE = {
    "lr": FloatRange(1e-3, 10.0, log=True),  # grid 1e-3, 1e-2, 1e-1, 1, 10
    "kind": Categorical(("a", "b", "c")),
    "n": IntRange(1, 16, log=True),  # grid 1, 2, 4, 8, 16
    "frac": FloatRange(0.0, 1.0),  # grid 0, .25, .5, .75, 1
}
TOY_OPTIMUM = {"lr": 0.1, "kind": "c", "n": 4, "frac": 0.75}


def _toy(p: dict[str, Any]) -> float:
    return ((math.log10(p["lr"]) + 1) ** 2 + (p["kind"] != "c") + (math.log2(p["n"]) - 2) ** 2
            + (p["frac"] - 0.75) ** 2)


def _sweep(defaults: dict[str, Any]) -> list[tuple[dict[str, Any], float]]:
    history: list[tuple[dict[str, Any], float]] = []
    for _ in range(200):
        nxt = cd_next(TOY_SPACE, defaults, history)
        if nxt is None:
            return history
        history.append((nxt, _toy(nxt)))
    raise AssertionError("cd_next did not stop")


def test_cd_next_converges_to_the_known_optimum_deterministically():
    defaults = {"lr": 0.003, "kind": "a", "n": 16, "frac": 0.1}
    history = _sweep(defaults)
    first = history[0][0]
    assert first == defaults  # trial 0 is the documented default itself (added to the grids when inside the range)
    best, value = min(history, key=lambda h: h[1])
    assert value == pytest.approx(0.0, abs=1e-12)
    assert best["kind"] == "c" and best["n"] == 4
    assert best["lr"] == pytest.approx(0.1) and best["frac"] == pytest.approx(0.75)
    keys = [repr(sorted(p.items())) for p, _ in history]
    assert len(keys) == len(set(keys))  # never re-evaluates a configuration
    assert len(history) < 6 * 4 * 3  # a handful of sweeps, far fewer than the full grid (6 * 3 * 5 * 6)
    assert _sweep(defaults) == history  # deterministic


def test_cd_next_without_defaults_starts_mid_grid():
    history = _sweep({})
    assert history[0][0] == {"lr": pytest.approx(0.1), "kind": "b", "n": 4, "frac": 0.5}
    assert min(v for _, v in history) == pytest.approx(0.0, abs=1e-12)


# -------------------------------------------------------------------------------------------- suggest


def test_suggest_maps_categorical_tuples():
    space = do.get("adamw").search_space
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    betas = space["betas"].choices
    study.enqueue_trial({"betas": repr((0.9, 0.95)), "lr": 1e-3, "weight_decay": 1e-2})
    hp = suggest(study.ask(), space)
    assert hp["betas"] == (0.9, 0.95) and isinstance(hp["betas"], tuple)
    assert hp["lr"] == 1e-3 and hp["weight_decay"] == 1e-2
    seen = set()
    for _ in range(40):
        trial = study.ask()
        hp = suggest(trial, space)
        assert isinstance(hp["betas"], tuple) and hp["betas"] in betas
        assert trial.params["betas"] == repr(hp["betas"])  # Optuna stores the repr, a plain string
        seen.add(hp["betas"])
        study.tell(trial, 0.0)
    assert seen == set(betas)


def test_suggest_maps_none_bool_and_int_choices():
    space = {"beta": Categorical((None, 0.9)), "flag": Categorical((True, False)), "k": Categorical((1, 10)),
             "steps": IntRange(1, 8)}
    fixed = optuna.trial.FixedTrial({"beta": "None", "flag": "False", "k": "10", "steps": 3})
    assert suggest(fixed, space) == {"beta": None, "flag": False, "k": 10, "steps": 3}


# -------------------------------------------------------------------------------------------- plan


def test_plan_validation_and_round_trip(tmp_path):
    plan = small_plan()
    assert Plan.from_dict(plan.to_dict()) == plan
    storage = Storage(str(tmp_path / "p.db"))
    storage.save_plan(plan.name, plan.to_dict())
    storage.save_plan(plan.name, plan.to_dict())  # the same config again is fine
    assert Plan.from_dict(storage.plans()[plan.name]) == plan
    assert plan.steps(*SMALL_CELL) == 15 and plan.tune_steps(*SMALL_CELL) == 8
    for bad in ({"trials": 0}, {"seeds": 0}, {"tune_fraction": 0.0}, {"sampler": "grid"}, {"budget_scale": 0.0},
                {"optimizers": ()}):
        with pytest.raises(ValueError):
            small_plan(**bad)
    with pytest.raises(KeyError):
        small_plan(optimizers=("no_such_optimizer",))
    with pytest.raises(KeyError):
        small_plan(cells=(("no_such_workload", "s"),))
    with pytest.raises(ValueError):
        small_plan(cells=((SMALL_CELL[0], "xl"),))


def test_warm_helper_is_idempotent(descend_cache):
    warm(descend_cache, "matrix_sensing", "s")
    warm(descend_cache, "matrix_sensing", "s")


# -------------------------------------------------------------------------------------------- the new protocol


def test_trial_zero_is_the_documented_default_for_every_optimizer(tmp_path):
    opts = ("adamw", "lion", "muon", "soap")  # lion's weight_decay default 0 lies off its log range
    plan = Plan(name="defaults", cells=(("matrix_sensing", "s"),), optimizers=opts, trials=2, seeds=1,
                budget_scale=0.05, **CORE)
    storage = Storage(str(tmp_path / "d.db"))
    calls: list[tuple] = []
    drain(storage, plan, executor=_quadratic_executor(calls))
    for o in opts:
        spec = do.get(o)
        first = next(c[3] for c in calls if c[0] == o and c[1] == 0)
        assert first == {k: spec.defaults[k] for k in spec.search_space}, o


def test_trials_grow_with_the_search_space_dimension():
    plan = Plan(name="dims", cells=(("matrix_sensing", "s"),), optimizers=("adamw", "muon", "sls"), trials=6)
    dims = {o: len(do.get(o).search_space) for o in plan.optimizers}
    assert dims["adamw"] == 3
    for o in plan.optimizers:
        assert plan.trials_for(o) == math.ceil(6 * dims[o] / 3)
    assert plan.trials_for("adamw") == 6 and plan.trials_for("adamw", 1) == 3  # a widening round: half
    fixed = Plan(name="dims", cells=plan.cells, optimizers=plan.optimizers, trials=6, trial_scaling="fixed")
    assert {fixed.trials_for(o) for o in plan.optimizers} == {6}


@pytest.mark.parametrize("sampler", ["tpe", "cd"])
def test_a_best_value_at_a_range_edge_widens_the_range_and_retunes(tmp_path, sampler):
    plan = Plan(name="edge", cells=(("matrix_sensing", "s"),), optimizers=("adamw",), trials=6, seeds=1,
                budget_scale=0.05, ladder=(), noise_floor=False, widen=1, sampler=sampler)

    def run(workload, scale, optimizer, hp, seed, steps, **kwargs):  # best lr = 0.3, far above the range's 3e-2
        return _fake_result((math.log10(hp["lr"]) - math.log10(0.3)) ** 2, steps)

    storage = Storage(str(tmp_path / "e.db"))
    drain(storage, plan, executor=run)
    tune = storage.runs(plan=plan.name, phase="tune")
    first = [r for r in tune if r.trial_number < 100_000]
    second = [r for r in tune if r.trial_number >= 100_000]
    assert len(first) == 6 and len(second) == plan.trials_for("adamw", 1) == 3
    assert max(r.hyperparameters["lr"] for r in first) <= 3e-2 * (1 + 1e-12)
    assert max(r.hyperparameters["lr"] for r in second) > 3e-2  # the widened round explores past the old edge
    # the widened upper edge: 3e-2 * sqrt(3e-2 / 1e-4) (half the log width)
    hi = 3e-2 * math.sqrt(3e-2 / 1e-4)
    assert all(1e-4 <= r.hyperparameters["lr"] <= hi * (1 + 1e-12) for r in second)
    item = WorkItem("matrix_sensing", "s", "adamw", "tune", 0, round=1)
    space, widened = tuning_space(storage, plan, item)
    assert space["lr"].high == pytest.approx(hi) and [w.parameter for w in widened] == ["lr"]
    assert widenings(storage, plan, "matrix_sensing", "s", "adamw")[0].new[1] == pytest.approx(hi)
    final = storage.runs(plan=plan.name, phase="final")[0]
    assert final.hyperparameters == min(tune, key=lambda r: r.final["val_loss"]).hyperparameters
    assert list(pending_work(storage, plan)) == []
    # a best value inside the range widens nothing
    storage2 = Storage(str(tmp_path / "e2.db"))
    drain(storage2, plan, executor=_quadratic_executor([]))  # best lr at 3e-3: mid-range (weight decay is
    # irrelevant there, so whether the best trial's weight decay sits near an edge is up to the sampler)
    assert "lr" not in {w.parameter for w in widenings(storage2, plan, "matrix_sensing", "s", "adamw")}


def test_ladder_and_noise_floor_work_items(tmp_path):
    plan = Plan(name="lad", cells=(("matrix_sensing", "s"),), optimizers=("adamw", "lion"), trials=2, seeds=2,
                budget_scale=0.1, widen=0)
    storage = Storage(str(tmp_path / "l.db"))
    calls: list[tuple] = []
    n = drain(storage, plan, executor=_quadratic_executor(calls))
    assert n == plan.total_work() == 3 * (2 + 2) + 2 * 4  # three arms; AdamW's ladder: 4 rungs x 2 seeds
    T = plan.steps("matrix_sensing", "s")
    rungs = sorted((c[1], c[2]) for c in calls if c[0] == "adamw" and c[1] in (1, 2) and c[2] != T)
    assert rungs == sorted((k, plan.steps("matrix_sensing", "s", f)) for f in (0.25, 0.5, 2.0, 4.0) for k in (1, 2))
    # the replica: its own tuning seed, the same final seeds
    rep = storage.runs(plan=plan.name, cell="matrix_sensing:s:adamw#2")
    assert {r.seed for r in rep if r.phase == "tune"} == {1002}
    assert sorted(r.seed for r in rep if r.phase == "final") == [1, 2]
    assert not storage.runs(plan=plan.name, phase="ladder", cell="matrix_sensing:s:lion")
    assert drain(storage, plan, executor=_quadratic_executor(calls)) == 0


def test_retuned_ladder_rungs_are_cells_of_their_own(tmp_path):
    plan = Plan(name="ret", cells=(("matrix_sensing", "s"),), optimizers=("adamw",), trials=2, seeds=1,
                budget_scale=0.2, ladder=(0.5, 1.0, 2.0), ladder_retune=True, noise_floor=False, widen=0)
    assert plan.arms() == ("adamw", "adamw@0.5", "adamw@2")
    storage = Storage(str(tmp_path / "r.db"))
    storage.save_plan(plan.name, plan.to_dict())
    calls: list[tuple] = []
    drain(storage, plan, executor=_quadratic_executor(calls))
    T = plan.steps("matrix_sensing", "s")
    assert {c[2] for c in calls if c[1] == 1} == {T // 2, T, 2 * T}  # finals at each rung's own budget
    assert {c[2] for c in calls if c[1] == 0} == {plan.tune_steps("matrix_sensing", "s", f) for f in (0.5, 1, 2)}
    assert not storage.runs(plan=plan.name, phase="ladder")
    from descend.bench.report import summarize

    summary = summarize(storage, plan.name)
    lad = summary.ladders["matrix_sensing:s"]["adamw"]
    assert lad.budgets == [T // 2, T, 2 * T] and set(summary.cells["matrix_sensing:s"]) == {"adamw"}
    # each rung is the final run of its own retuned cell
    finals = {r.optimizer: r.final["val_loss"] for r in storage.runs(plan=plan.name, phase="final")}
    assert lad.values == [[finals["adamw@0.5"], finals["adamw"], finals["adamw@2"]]]
    assert summary.cells["matrix_sensing:s"]["adamw"].speedup.refused == lad.problem
    assert plan.cost() == pytest.approx(sum(f * (2 * 0.5 + 1) for f in (0.5, 1, 2)))


def test_data_constrained_mode_widens_weight_decay_and_prefers_monotone_curves(tmp_path):
    plan = Plan(name="dc", cells=(("matrix_sensing", "s"),), optimizers=("adamw",), trials=4, seeds=1,
                budget_scale=0.05, mode="data-constrained", ladder=(), noise_floor=False, widen=0)
    assert plan.search_space("adamw")["weight_decay"].high == pytest.approx(3.0)  # 30 x the usual 0.1

    def run(workload, scale, optimizer, hp, seed, steps, **kwargs):
        over = hp["lr"] > 2e-3  # the better final values come with a validation curve that turned back up
        curve = [{"step": 1.0, "train_time": 0.0, "train_loss": 1.0, "val_loss": 1.0},
                 {"step": 2.0, "train_time": 0.0, "train_loss": 0.5, "val_loss": 0.2 if over else 0.6},
                 {"step": float(steps), "train_time": 0.0, "train_loss": 0.1, "val_loss": 0.5 if over else 0.55}]
        return TrialResult(curve=curve, final=dict(curve[-1]), diverged=False, train_time=0.0, eval_time=0.0,
                           total_time=0.0)

    storage = Storage(str(tmp_path / "dc.db"))
    drain(storage, plan, executor=run)
    tune = storage.runs(plan=plan.name, phase="tune")
    final = storage.runs(plan=plan.name, phase="final")[0]
    assert tune[0].hyperparameters["lr"] == 1e-3  # trial 0, the default, is monotone
    assert any(r.hyperparameters["lr"] > 2e-3 for r in tune)  # and TPE tried an over-fitting one
    assert final.hyperparameters["lr"] <= 2e-3  # the monotone one wins although it ends higher
    with pytest.raises(ValueError, match="mode"):
        Plan(name="x", cells=plan.cells, optimizers=("adamw",), mode="infinite")
    with pytest.raises(ValueError, match="ladder"):
        Plan(name="x", cells=plan.cells, optimizers=("adamw",), ladder=(0.5, 2.0))
    with pytest.raises(ValueError, match="budget_scale"):
        Plan(name="x", cells=plan.cells, optimizers=("adamw",), budget_scale=math.inf)
