"""The Ray executor: a local Ray with 2 CPUs runs the trials of a tiny plan, two at a time."""

from __future__ import annotations

import os
from collections import Counter

import pytest

from descend.bench.executors import drain
from descend.bench.protocol import Plan
from descend.bench.storage import Storage

from .conftest import SMALL_CELL, warm

ray = pytest.importorskip("ray")


@pytest.fixture
def executor(descend_cache):
    """The Ray executor on a local Ray of 2 CPUs (its workers inherit ``$DESCEND_CACHE``).

    One test uses it: under pytest-xdist two tests could land on two workers and start two Ray clusters.
    """
    from descend.bench.executors import ray_executor

    if ray.is_initialized():
        ray.shutdown()
    os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")
    run = ray_executor(num_cpus=2)
    yield run
    ray.shutdown()


def test_ray_executor_runs_two_trials_at_once(tmp_path, descend_cache, executor):
    from descend.bench.trial import run_trial

    warm(descend_cache, *SMALL_CELL)
    # two optimizers: drain keeps one tuning trial per cell in flight, so two cells' trials run side by side
    plan = Plan(name="ray", cells=(SMALL_CELL,), optimizers=("adamw", "nadamw"), trials=1, seeds=1,
                ladder=(), noise_floor=False, widen=0,
                budget_scale=0.05, evaluations=4)
    storage = Storage(str(tmp_path / "ray.db"))
    storage.save_plan(plan.name, plan.to_dict())
    state = {"in_flight": 0, "most": 0}

    def on_event(kind, item, row):
        state["in_flight"] += 1 if kind == "start" else -1
        state["most"] = max(state["most"], state["in_flight"])

    assert ray.is_initialized() and ray.cluster_resources().get("CPU") == 2
    n = drain(storage, plan, parallel=2, executor=executor, on_event=on_event, poll=0.2)
    assert n == 2 * (plan.trials + plan.seeds) == 4
    assert state["most"] == 2  # two trials were in flight (as Ray tasks) at the same time
    runs = storage.runs(plan=plan.name)
    assert Counter((r.optimizer, r.phase) for r in runs) == {("adamw", "tune"): 1, ("adamw", "final"): 1,
                                                              ("nadamw", "tune"): 1, ("nadamw", "final"): 1}
    for r in runs:
        assert r.curve[-1]["step"] == r.steps and not r.diverged and r.train_time > 0
    assert drain(storage, plan, parallel=2, executor=executor) == 0

    # a trial run as a Ray task computes the same numbers as one run in this process
    args = ("matrix_sensing", "s", "adamw", {"lr": 3e-3, "betas": [0.9, 0.95]}, 0, 20)
    remote = executor(*args, evaluations=4)
    local = run_trial(*args, evaluations=4, threads=1)

    def strip(curve):
        return [{k: v for k, v in row.items() if k != "train_time"} for row in curve]

    assert strip(remote.curve) == strip(local.curve)
