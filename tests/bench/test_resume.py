"""Kill ``descend bench run`` with SIGKILL mid-study, run the same command again: nothing lost, nothing twice."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest

from descend.bench.executors import drain
from descend.bench.protocol import Plan, WorkItem, _row, _study
from descend.bench.storage import Storage

from .conftest import SMALL_CELL, warm

TRIALS, SEEDS = 4, 2
TOTAL = TRIALS + SEEDS


def _count(db: Path, mid_trial: bool = False) -> int:
    """Stored runs; with ``mid_trial``, -1 unless a tuning trial is training right now (owner recorded, no result
    stored yet)."""
    try:
        with sqlite3.connect(db, timeout=1) as conn:
            if mid_trial and not conn.execute(
                    "SELECT count(*) FROM trials JOIN trial_user_attributes USING (trial_id) "
                    "WHERE state = 'RUNNING' AND key = 'owner' AND number NOT IN "
                    "(SELECT trial_number FROM descend_runs WHERE phase = 'tune')").fetchone()[0]:
                return -1
            return conn.execute("SELECT count(*) FROM descend_runs").fetchone()[0]
    except sqlite3.OperationalError:  # not created yet, or locked for a moment
        return -1


def _command(db: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "descend.cli", "bench", "run", "--workloads", ":".join(SMALL_CELL),
            "--optimizers", "adamw", "--trials", str(TRIALS), "--seeds", str(SEEDS), "--budget-scale", "0.1",
            "--storage", str(db), "--name", "resume", "--report", str(out), "--quiet",
            "--widen", "0", "--no-noise-floor", "--ladder", "1"]  # the tuning core only: TOTAL stays exact


def _results(storage: Storage) -> dict[tuple[str, str, int], list[tuple]]:
    """Every stored run without its timings and Optuna trial numbers, in budget order per (cell, phase, seed).

    A trial killed mid-run is failed in Optuna and asked again under the next trial number; what must not
    change is what was run (hyperparameters) and what it gave (final metrics, curves, divergence).
    """
    out: dict[tuple[str, str, int], list[tuple]] = {}
    for r in sorted(storage.runs(), key=lambda r: (r.cell, r.phase, r.seed, r.trial_number)):
        curve = [{k: v for k, v in p.items() if k != "train_time"} for p in r.curve]
        out.setdefault((r.cell, r.phase, r.seed), []).append(
            (r.steps, r.hyperparameters, r.final.get("val_loss"), r.final.get("train_loss"), r.diverged, curve))
    return out


def _leaderboard(storage: Storage, plan: str) -> list[dict[str, str]]:
    from descend.bench.report import leaderboard_rows, summarize

    return [{k: v for k, v in row.items() if k != "time_to_target"}  # wall time: differs between any two runs
            for row in leaderboard_rows(summarize(storage, plan))]


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL (POSIX)")
def test_resume_after_sigkill(tmp_path, descend_cache):
    """Killed mid-trial and rerun, a study ends exactly as the same study run without interruption."""
    warm(descend_cache, *SMALL_CELL)  # the data and the optimum are cached: trials start at once
    env = {**os.environ, "DESCEND_CACHE": str(descend_cache), "OMP_NUM_THREADS": "1"}
    # the uninterrupted study, in this process (what `bench run` does without its progress bars and report)
    reference = Storage(str(tmp_path / "ref.db"))
    plan = Plan(name="resume", cells=(SMALL_CELL,), optimizers=("adamw",), trials=TRIALS, seeds=SEEDS,
                budget_scale=0.1, ladder=(1.0,), noise_floor=False, widen=0)  # as _command: tuning + finals only
    reference.save_plan(plan.name, plan.to_dict())
    assert drain(reference, plan) == TOTAL

    db, out = tmp_path / "bench.db", tmp_path / "report.html"
    proc = subprocess.Popen(_command(db, out), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 240
        while _count(db, mid_trial=True) < 2:  # two trials stored and the third one running
            assert proc.poll() is None, f"the run ended before it could be killed: {proc.stdout.read()!r}"
            assert time.monotonic() < deadline, "no trial stored within 240 s"
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()  # reap it: a zombie's pid would still look alive and keep its claims
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists()

    before = {(r.cell, r.phase, r.seed, r.trial_number): r for r in Storage(str(db)).runs()}
    assert 2 <= len(before) < TOTAL, "kill it mid-study: make the plan bigger if this fails"

    done = subprocess.run(_command(db, out), env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert out.exists()

    storage = Storage(str(db))
    after = storage.runs()
    keys = [(r.plan, r.cell, r.phase, r.seed, r.trial_number) for r in after]
    assert len(keys) == len(set(keys)) == TOTAL  # no duplicate, nothing missing
    by_key = {(r.cell, r.phase, r.seed, r.trial_number): r for r in after}
    for key, row in before.items():
        assert by_key[key] == row  # stored before the kill: still there, unchanged
    phases = Counter(r.phase for r in after)
    assert phases == {"tune": TRIALS, "final": SEEDS}  # the budget is the same as without the crash
    assert f"{TOTAL - len(before)} trials run" in done.stdout

    # Optuna's view: exactly TRIALS complete trials; the trial killed mid-run was failed, not counted
    cell = f"{SMALL_CELL[0]}:{SMALL_CELL[1]}:adamw"
    study = optuna.load_study(study_name=f"resume/{cell}", storage=storage.optuna())
    states = Counter(t.state.name for t in study.get_trials(deepcopy=False))
    assert states == {"COMPLETE": TRIALS, "FAIL": 1}

    # ... and the interrupted study is the uninterrupted one: same configurations, same results, same board
    assert storage.plans() == reference.plans()  # the CLI made the same plan
    assert _results(storage) == _results(reference)
    board = _leaderboard(storage, "resume")
    assert board and board == _leaderboard(reference, "resume")


# -------------------------------------------------------------------------------------------- the windows of a kill


def _fake_run(workload, scale, optimizer, hp, seed, steps, **kwargs):
    from descend.bench.trial import TrialResult

    curve = [{"step": float(steps), "train_time": 0.01, "train_loss": 1.0, "val_loss": 1.0}]
    return TrialResult(curve=curve, final=dict(curve[0]), diverged=False, train_time=0.01, eval_time=0.0,
                       total_time=0.02)


def _dead_owner() -> str:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # exited and reaped: its pid is free
    return f"{socket.gethostname()}:{proc.pid}:1"


def _tiny(name: str) -> Plan:
    return Plan(name=name, cells=(("matrix_sensing", "s"),), optimizers=("adamw",), trials=2, seeds=1,
                ladder=(), noise_floor=False, widen=0,
                budget_scale=0.1)


def test_kill_between_ask_and_owner(tmp_path):
    """A trial asked by a process killed before it recorded its owner is failed, and its budget is redone."""
    storage, plan = Storage(str(tmp_path / "a.db")), _tiny("ask")
    study = _study(storage, plan, WorkItem("matrix_sensing", "s", "adamw", "tune", 0))
    study.ask()  # ... and the asker dies here
    assert drain(storage, plan, executor=_fake_run, poll=0.1) == plan.trials + plan.seeds
    assert Counter(r.phase for r in storage.runs()) == {"tune": plan.trials, "final": plan.seeds}
    assert [t.state.name for t in study.get_trials(deepcopy=False)] == ["FAIL", "COMPLETE", "COMPLETE"]


def test_kill_between_store_and_tell(tmp_path):
    """A trial stored by a process killed before it told Optuna is completed from the stored row, not rerun."""
    storage, plan = Storage(str(tmp_path / "b.db")), _tiny("tell")
    item = WorkItem("matrix_sensing", "s", "adamw", "tune", 0)
    study = _study(storage, plan, item)
    trial = study.ask()
    trial.set_user_attr("owner", _dead_owner())
    res = _fake_run("matrix_sensing", "s", "adamw", {}, 0, plan.tune_steps("matrix_sensing", "s"))
    storage.add_run(_row(plan, item, trial.number, plan.tune_steps("matrix_sensing", "s"),
                         {"lr": 1e-3, "betas": (0.9, 0.999), "weight_decay": 0.01}, res))
    # ... and the process dies here, before study.tell
    assert drain(storage, plan, executor=_fake_run, poll=0.1) == 1 + plan.seeds
    tune = storage.runs(phase="tune")
    assert sorted(r.trial_number for r in tune) == [0, 1]
    assert [t.state.name for t in study.get_trials(deepcopy=False)] == ["COMPLETE", "COMPLETE"]


# -------------------------------------------------------------------------------------------- leases


def _plant_lease(storage: Storage, key: str, owner: str, expires_in: float) -> None:
    import sqlalchemy as sa

    from descend.bench import storage as st

    now = time.time()
    with storage.engine.begin() as conn:
        conn.execute(sa.insert(st._claims).values(key=key, owner=owner, heartbeat=now, expires=now + expires_in))


@pytest.mark.parametrize("holder", ["dead-worker.invalid:4242:1", "reused-pid"])
def test_trial_abandoned_elsewhere_is_reclaimed_when_its_lease_expires(tmp_path, holder):
    """A worker on another host (or under a pid that a live process now has) died mid-trial: the trial holds its
    budget slot until its lease expires, then is failed and redone; the run waits for that, never ending with
    final runs missing."""
    import threading

    from descend.bench.protocol import _lease_key

    if holder == "reused-pid":
        holder = f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident() + 1}"
    storage, plan = Storage(str(tmp_path / "l.db")), _tiny("lease")
    item = WorkItem("matrix_sensing", "s", "adamw", "tune", 0)
    study = _study(storage, plan, item)
    trial = study.ask()  # the dead worker's trial: asked, owner recorded, lease taken, never renewed again
    trial.set_user_attr("owner", holder)
    import torch._dynamo  # noqa: F401  (drain imports it first: seconds that must not eat into the lease)

    wait = 3.0
    _plant_lease(storage, _lease_key(plan, item.cell, trial.number), holder, expires_in=wait)
    start, waits = time.monotonic(), []
    assert drain(storage, plan, executor=_fake_run, poll=0.1, on_wait=lambda: waits.append(1)) == \
        plan.trials + plan.seeds
    assert time.monotonic() - start >= wait - 0.5  # it waited for the lease (not reaped early: it was live)
    assert waits  # ... and said so
    assert storage.missing_finals(plan) == 0
    assert Counter(r.phase for r in storage.runs()) == {"tune": plan.trials, "final": plan.seeds}
    assert [t.state.name for t in study.get_trials(deepcopy=False)] == ["FAIL", "COMPLETE", "COMPLETE"]
    assert storage.leases() == {}  # every lease released


def test_heartbeats_are_written_while_a_trial_runs(tmp_path):
    """During a trial longer than several leases, its lease stays live (renewed) and Optuna's heartbeat table
    gets the trial's heartbeats; another worker does not reclaim it."""
    import sqlalchemy as sa

    lease = 0.3
    storage, plan = Storage(str(tmp_path / "h.db"), lease=lease), _tiny("beat")
    observer = Storage(storage.url)
    seen: list[dict] = []

    def slow_run(*args, **kwargs):
        time.sleep(5 * lease)
        seen.append({**observer.leases(), "at": time.time()})
        with observer.engine.connect() as conn:
            seen[-1]["heartbeats"] = conn.execute(sa.text("SELECT count(*) FROM trial_heartbeats")).scalar()
        return _fake_run(*args, **kwargs)

    assert drain(storage, plan, executor=slow_run, poll=0.1) == plan.trials + plan.seeds
    for i, snapshot in enumerate(seen[: plan.trials]):
        key = f"beat/matrix_sensing:s:adamw/tune/0/{i}"  # round 0 (no widening), trial i
        assert key in snapshot, snapshot
        assert snapshot[key][1] > snapshot["at"]  # 5 leases into the trial, still live: renewed
        assert snapshot["heartbeats"] >= 1
    final = seen[-1]
    assert any(k.endswith("/final/1/-1") for k in final)  # plan/cell/final/seed/number


def test_a_trial_whose_lease_was_taken_over_is_not_stored(tmp_path):
    """A worker stalled longer than its lease finds its trial reclaimed when it wakes: it stores nothing (the
    budget slot was redone by the one who took it over), so a study never gets more trials than its budget."""
    import sqlalchemy as sa

    from descend.bench import storage as st
    from descend.bench.protocol import run_work

    storage, plan = Storage(str(tmp_path / "s.db")), _tiny("stall")
    item = WorkItem("matrix_sensing", "s", "adamw", "tune", 0)

    def stalled_run(*args, **kwargs):  # meanwhile another host took the lease over
        with storage.engine.begin() as conn:
            conn.execute(sa.update(st._claims).values(owner="other-host.invalid:1:1"))
        return _fake_run(*args, **kwargs)

    assert run_work(storage, plan, item, executor=stalled_run) is None
    assert storage.runs() == []
    assert run_work(storage, plan, item, executor=_fake_run) is not None
