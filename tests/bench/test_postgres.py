"""PostgreSQL for real: two ``descend bench worker`` processes share one study on one server.

``scripts/test.sh`` (what CI runs) starts a throwaway server on 127.0.0.1 and sets ``DESCEND_TEST_POSTGRES_URL``;
elsewhere set it to a database you may write into (a unique plan name keeps runs apart).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from collections import Counter

import pytest

URL = os.environ.get("DESCEND_TEST_POSTGRES_URL", "")

pytestmark = pytest.mark.skipif(not URL, reason="DESCEND_TEST_POSTGRES_URL is not set (scripts/test.sh, which CI "
                                                "runs, starts a local PostgreSQL server and sets it)")


def test_two_workers_share_one_study_without_duplicate_or_loss():
    import optuna

    from descend.bench.protocol import Plan
    from descend.bench.storage import Storage

    plan = Plan(name=f"pg-{uuid.uuid4().hex[:8]}", cells=(("matrix_sensing", "s"),),
                optimizers=("adamw", "nadamw"), trials=3, seeds=2, budget_scale=0.05,
                ladder=(), noise_floor=False, widen=0, trial_scaling="fixed")  # tuning + finals only
    storage = Storage(URL)
    assert storage.engine.dialect.name == "postgresql"
    storage.save_plan(plan.name, plan.to_dict())
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "descend.cli", "bench", "worker", "--storage", URL, "--plan", plan.name]
    start = time.monotonic()
    workers = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for _ in range(2)]
    outputs = [w.communicate(timeout=400)[0] for w in workers]
    for w, out in zip(workers, outputs, strict=True):
        assert w.returncode == 0, out
    ran = [int(re.search(r"worker done: (\d+) trials", out).group(1)) for out in outputs]
    total = len(plan.optimizers) * (plan.trials + plan.seeds)

    rows = storage.runs(plan=plan.name)
    keys = [(r.cell, r.phase, r.seed, r.trial_number) for r in rows]
    assert len(keys) == len(set(keys)) == total, keys  # no duplicate, nothing lost
    assert sum(ran) == total, (ran, outputs)  # and no trial was run twice (a duplicate final is not stored)
    per_cell = Counter((r.cell, r.phase) for r in rows)
    for o in plan.optimizers:
        cell = f"matrix_sensing:s:{o}"
        assert per_cell[(cell, "tune")] == plan.trials and per_cell[(cell, "final")] == plan.seeds
        study = optuna.load_study(study_name=f"{plan.name}/{cell}", storage=storage.optuna())
        assert Counter(t.state.name for t in study.get_trials(deepcopy=False)) == {"COMPLETE": plan.trials}
    assert storage.missing_finals(plan) == 0
    assert storage.leases(plan.name) == {}  # every lease released
    print(f"two workers: {ran} trials in {time.monotonic() - start:.0f} s")
