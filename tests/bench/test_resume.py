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


def _count(db: Path) -> int:
    try:
        with sqlite3.connect(db, timeout=1) as conn:
            return conn.execute("SELECT count(*) FROM descend_runs").fetchone()[0]
    except sqlite3.OperationalError:  # not created yet, or locked for a moment
        return -1


def _command(db: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "descend.cli", "bench", "run", "--workloads", ":".join(SMALL_CELL),
            "--optimizers", "adamw", "--trials", str(TRIALS), "--seeds", str(SEEDS), "--budget-scale", "0.1",
            "--storage", str(db), "--name", "resume", "--report", str(out), "--quiet",
            "--widen", "0", "--no-noise-floor", "--ladder", "1"]  # the tuning core only: TOTAL stays exact


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL (POSIX)")
def test_resume_after_sigkill(tmp_path, descend_cache):
    warm(descend_cache, *SMALL_CELL)  # the data and the optimum are cached: trials start at once
    db, out = tmp_path / "bench.db", tmp_path / "report.html"
    env = {**os.environ, "DESCEND_CACHE": str(descend_cache), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(_command(db, out), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 240
        while _count(db) < 2:
            assert proc.poll() is None, f"the run ended before it could be killed: {proc.stdout.read()!r}"
            assert time.monotonic() < deadline, "no trial stored within 240 s"
            time.sleep(0.1)
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

    # Optuna's view: exactly TRIALS complete trials; a trial killed mid-run was failed, not counted
    cell = f"{SMALL_CELL[0]}:{SMALL_CELL[1]}:adamw"
    study = optuna.load_study(study_name=f"resume/{cell}", storage=storage.optuna())
    states = Counter(t.state.name for t in study.get_trials(deepcopy=False))
    assert states["COMPLETE"] == TRIALS and set(states) <= {"COMPLETE", "FAIL"}


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
