"""``drain``: its cache of finished cells spares the database the scans of cells that are done."""

from __future__ import annotations

from collections import Counter

from descend.bench import protocol
from descend.bench.executors import drain
from descend.bench.protocol import Plan
from descend.bench.storage import Storage
from descend.bench.trial import TrialResult


def fake_run(workload, scale, optimizer, hp, seed, steps, **kwargs) -> TrialResult:
    """A trial that trains nothing: a constant curve (the tests here are about bookkeeping, not training)."""
    curve = [{"step": float(steps), "train_time": 0.01, "train_loss": 1.0, "val_loss": 1.0}]
    return TrialResult(curve=curve, final=dict(curve[0]), diverged=False, train_time=0.01, eval_time=0.0,
                       total_time=0.02)


def test_finished_cells_are_not_scanned_again(tmp_path, monkeypatch):
    """Once a scan finds a cell's tuning complete, no later scan asks Optuna about that cell again.

    ``drain`` rescans the plan after every finished trial; without a working cache every scan re-counts the
    trials of every cell it passes (one Optuna query and a reap each), finished or not.
    """
    after_complete: Counter[str] = Counter()  # counts of a cell made when its tuning was already complete
    real = protocol.tune_counts

    def counting(storage, plan, item):
        done, running = real(storage, plan, item)
        if done >= plan.trials:
            after_complete[item.cell] += 1
        return done, running

    monkeypatch.setattr(protocol, "tune_counts", counting)
    plan = Plan(name="cache", cells=(("matrix_sensing", "s"),), optimizers=("adamw", "nadamw", "lion"), trials=4,
                seeds=3, budget_scale=0.1,
                ladder=(), noise_floor=False, widen=0, trial_scaling="fixed")  # tuning + finals only
    storage = Storage(str(tmp_path / "c.db"))
    assert drain(storage, plan, executor=fake_run, poll=0.01) == 3 * (4 + 3)
    # exactly one: the scan that found the cell complete and cached it
    assert after_complete == {f"matrix_sensing:s:{o}": 1 for o in plan.optimizers}
