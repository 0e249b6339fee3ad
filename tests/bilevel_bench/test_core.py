"""The bilevel family on the shared core: workers, SIGKILL resume, Ray, and what the packages import."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

import descend.bilevel_bench as bb
from descend.cli import app

SRC = str(Path(bb.__file__).resolve().parents[2])


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = SRC + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "descend", "bilevel", *args]


def _imports(statement: str) -> set[str]:
    """The modules a fresh interpreter has loaded after ``statement``."""
    code = f"import sys, json\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=120,
                         check=True).stdout
    return set(json.loads(out.splitlines()[-1]))


def test_the_core_imports_no_family():
    mods = _imports("import descend.results, descend.results.runner, descend.results.study, "
                    "descend.results.leases, descend.results.plans, descend.results.html")
    assert "descend.results.runner" in mods  # the check sees what it imports
    families = ("descend.bench", "descend.bilevel", "descend.bilevel_bench", "descend.claims", "descend.classic",
                "descend.rl", "descend.surrogate", "descend.optim")
    assert not {m for m in mods if m.startswith(families)}


def test_the_bilevel_adapter_imports_no_other_family():
    mods = _imports("import descend.bilevel_bench")
    assert "descend.results.runner" in mods and "descend.bilevel.solver" not in mods  # solvers load lazily
    assert not {m for m in mods if m.startswith(("descend.bench", "descend.optim", "optuna"))}


def test_the_bilevel_library_stays_torch_only():
    mods = _imports("import descend.bilevel, descend.bilevel.datasets")
    assert "descend.bilevel.solver" in mods and "torch" in mods
    assert not {m.partition(".")[0] for m in mods} & {"sqlalchemy", "optuna", "typer", "rich", "matplotlib"}


def _study(db: str, **kw) -> bb.Plan:
    """A stored plan (identity and request) for workers, without running it."""
    plan = bb.Plan(**{"problem": "quadratic", "solvers": ["aid_cg", "soba"], "grid": "tiny", "seeds": 3,
                      "tune_seeds": 2, "budget": bb.parse_budget("150oracles"), "n_eval": 4, **kw})
    store = bb.BilevelStorage(db)
    store.save_plan(plan.name or "", plan.config())
    store.save_request(plan.name or "", plan.request())
    return plan


def _expected(plan: bb.Plan) -> int:
    return len(plan.solvers) * (len(plan.grid_configs()) * plan.tune_seeds + plan.seeds)


PG_URL = os.environ.get("DESCEND_TEST_POSTGRES_URL", "")


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.skipif(
    not PG_URL, reason="DESCEND_TEST_POSTGRES_URL is not set (scripts/test.sh, which CI runs, sets it)"))])
def test_two_workers_share_one_study(tmp_path, backend):
    db = str(tmp_path / "w.db") if backend == "sqlite" else PG_URL
    plan = _study(db, name=f"workers-{uuid.uuid4().hex[:8]}")  # a unique name: the server's database is shared
    procs = [subprocess.Popen(_cli("worker", "--storage", db, "--plan", plan.name or ""), env=_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    runs = bb.BilevelStorage(db).runs(plan.name)
    keys = Counter((r.solver, r.phase, json.dumps(r.config, sort_keys=True), r.seed) for r in runs)
    assert len(runs) == _expected(plan) == 14 and max(keys.values()) == 1  # nothing lost, nothing stored twice
    done = [int(o.strip().splitlines()[-1].removeprefix("worker done: ").split()[0]) for o in outs]
    assert sum(done) == len(runs)  # every run was stored by exactly one worker ...
    assert not any("discarded" in o for o in outs)  # ... and none was computed twice (leases, not luck)
    owners = Counter(r.provenance["owner"].split(":")[1] for r in runs)
    assert len(owners) == 2, owners  # both workers ran part of the study
    # a worker on a finished study has nothing to do
    r = CliRunner().invoke(app, ["bilevel", "worker", "--storage", db, "--plan", plan.name or ""])
    assert r.exit_code == 0 and "worker done: 0 runs" in r.output


def _comparable(store: bb.BilevelStorage, name: str) -> dict:
    """A plan's summary and stored histories without what the clock measures."""
    s = bb.summarize(store, name)
    runs = sorted(((r.solver, r.phase, r.config, r.seed, r.diverged,
                    [{k: v for k, v in row.items() if k != "time"} for row in r.history]) for r in store.runs(name)),
                  key=lambda t: json.dumps(t[:4], sort_keys=True))
    return {"results": {k: (v.config, v.finals, v.oracles_to_target, v.edges) for k, v in s.results.items()},
            "target": s.target, "references": s.references, "runs": json.dumps(runs, sort_keys=True)}


def test_a_sigkilled_run_resumes_to_the_same_summary(tmp_path):
    args = ["run", "--problem", "quadratic", "--solvers", "aid_cg,soba", "--grid", "tiny", "--seeds", "2",
            "--tune-seeds", "2", "--budget", "150oracles"]
    total = 2 * (2 * 2 + 2)
    ref_db, db = str(tmp_path / "ref.db"), str(tmp_path / "k.db")
    proc = subprocess.Popen(_cli(*args, "--storage", db), env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    seen = 0
    while seen < 3:  # three runs stored, then killed in the middle of the study (holding the fourth's lease)
        line = proc.stdout.readline()
        assert line, "the run ended before it could be killed"
        seen += line.startswith(("tune", "final"))
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    store = bb.BilevelStorage(db)
    name = next(iter(store.plans()))
    stored = len(store.runs(name))
    assert 3 <= stored < total  # interrupted: something done, something missing
    t0 = time.time()
    r = CliRunner().invoke(app, ["bilevel", *args, "--storage", db, "--quiet"])
    assert r.exit_code == 0, r.output
    assert time.time() - t0 < 60  # the dead run's lease was taken over at once, not after it expired
    assert f"{total - stored} runs done" in r.output  # only what was missing
    r = CliRunner().invoke(app, ["bilevel", *args, "--storage", ref_db, "--quiet"])  # uninterrupted
    assert r.exit_code == 0 and f"{total} runs done" in r.output
    assert _comparable(store, name) == _comparable(bb.BilevelStorage(ref_db), name)


@pytest.mark.slow  # ~1 min, mostly Ray's start; the default suite runs the shared ray_remote in tests/bench/test_ray.py
def test_the_plan_runs_on_the_ray_executor(tmp_path):
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        ray.shutdown()
    os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")
    try:
        executor = bb.ray_executor(num_cpus=2)
        assert ray.cluster_resources().get("CPU") == 2
        plan = bb.Plan(problem="quadratic", solvers=["aid_cg", "soba"], grid="tiny", seeds=1, tune_seeds=1,
                       budget=bb.parse_budget("60oracles"), n_eval=3)
        remote_db, local_db = bb.BilevelStorage(str(tmp_path / "ray.db")), bb.BilevelStorage(str(tmp_path / "l.db"))
        assert bb.run_plan(plan, remote_db, parallel=2, executor=executor, poll=0.2) == _expected(plan) == 6
        assert bb.run_plan(plan, remote_db, parallel=2, executor=executor, poll=0.2) == 0
        bb.run_plan(plan, local_db)
        remote, local = _comparable(remote_db, plan.name or ""), _comparable(local_db, plan.name or "")
        assert remote == local  # a run as a Ray task stores the numbers a local run stores
        runs = remote_db.runs(plan.name)
        # the driver claimed and stored every run; Ray's worker processes computed them
        assert {r.provenance["owner"].split(":")[1] for r in runs} == {str(os.getpid())}
        assert str(os.getpid()) not in {r.provenance["executed_by"].split(":")[1] for r in runs}
        out = executor("aid_cg", "quadratic", {"step": 1.0, "ratio": 0.3}, 0, "30oracles", 64, 3, 1)
        assert out.history and out.solver_kwargs["lr_inner"] > 0
    finally:
        ray.shutdown()


def test_parallel_local_runs_store_the_sequential_numbers(tmp_path):
    plan = bb.Plan(problem="quadratic", solvers=["aid_cg", "soba"], grid="tiny", seeds=2, tune_seeds=1,
                   budget=bb.parse_budget("60oracles"), n_eval=3)
    par, seq = bb.BilevelStorage(str(tmp_path / "p.db")), bb.BilevelStorage(str(tmp_path / "s.db"))
    in_flight, most = [0], [0]
    work = bb.BilevelWork(par, plan)
    real = work.run

    def counting(item, progress=None):
        in_flight[0] += 1
        most[0] = max(most[0], in_flight[0])
        try:
            time.sleep(0.2)  # long enough for the second thread to start its own run
            return real(item, progress)
        finally:
            in_flight[0] -= 1

    work.run = counting  # type: ignore[method-assign]
    from descend.results.runner import drain

    par.save_plan(plan.name or "", plan.config())
    assert drain(work, parallel=2, poll=0.05) == _expected(plan) == 8
    assert most[0] == 2  # two runs were in flight at once
    assert bb.run_plan(plan, seq) == 8
    assert _comparable(par, plan.name or "") == _comparable(seq, plan.name or "")


def test_worker_and_executor_errors(tmp_path):
    db = str(tmp_path / "e.db")
    r = CliRunner().invoke(app, ["bilevel", "worker", "--storage", db])
    assert r.exit_code == 2 and "no benchmark database at" in r.output, r.output
    _study(db, name="there")
    r = CliRunner().invoke(app, ["bilevel", "worker", "--storage", db, "--plan", "nope"])
    assert r.exit_code == 2 and "no bilevel plan 'nope'" in r.output and "there" in r.output
    r = CliRunner().invoke(app, ["bilevel", "run", "--problem", "quadratic", "--executor", "dask", "--storage", db])
    assert r.exit_code == 2 and "--executor must be local or ray, got 'dask'" in r.output
    r = CliRunner().invoke(app, ["bilevel", "run", "--problem", "quadratic", "--parallel", "0", "--storage", db])
    assert r.exit_code == 2 and "--parallel must be ≥ 1, got 0" in r.output


def test_a_database_of_the_former_bilevel_tables_is_imported(tmp_path):
    """Databases written before the shared core (tables descend_bilevel_plans / descend_bilevel_runs) still report."""
    import sqlalchemy as sa

    from descend.results.db import dumps

    path = tmp_path / "old.db"
    src = bb.BilevelStorage(str(tmp_path / "new.db"))
    plan = bb.Plan(problem="quadratic", solvers=["aid_cg"], grid="tiny", seeds=2, tune_seeds=1,
                   budget=bb.parse_budget("30oracles"), n_eval=2)
    bb.run_plan(plan, src)
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:  # the former schema, as descend 0.1.0.dev0 wrote it
        conn.execute(sa.text("CREATE TABLE descend_info (key VARCHAR(64) PRIMARY KEY, value TEXT NOT NULL)"))
        conn.execute(sa.text("INSERT INTO descend_info VALUES ('schema', '2')"))
        conn.execute(sa.text("CREATE TABLE descend_bilevel_plans (name VARCHAR(200) PRIMARY KEY, config TEXT NOT "
                             "NULL, created FLOAT NOT NULL)"))
        conn.execute(sa.text("CREATE TABLE descend_bilevel_runs (id INTEGER PRIMARY KEY, plan VARCHAR(200), problem "
                             "VARCHAR(100), solver VARCHAR(100), phase VARCHAR(10), config_key VARCHAR(64), config "
                             "TEXT, seed INTEGER, diverged BOOLEAN, wall_time FLOAT, history TEXT, provenance TEXT, "
                             "created FLOAT)"))
        conn.execute(sa.text("INSERT INTO descend_bilevel_plans VALUES (:n, :c, 1.0)"),
                     {"n": plan.name, "c": dumps(plan.config())})
        for r in src.runs(plan.name):
            conn.execute(sa.text("INSERT INTO descend_bilevel_runs (plan, problem, solver, phase, config_key, config, "
                                 "seed, diverged, wall_time, history, provenance, created) VALUES (:p, :pr, :s, :ph, "
                                 "'k', :c, :seed, :d, :w, :h, :prov, 1.0)"),
                         {"p": r.plan, "pr": r.problem, "s": r.solver, "ph": r.phase, "c": dumps(r.config),
                          "seed": r.seed, "d": r.diverged, "w": r.wall_time, "h": dumps(r.history),
                          "prov": dumps(r.provenance)})
    old = bb.BilevelStorage(str(path))
    assert _comparable(old, plan.name or "") == _comparable(src, plan.name or "")
    assert bb.stored_plan(old, plan.name or "") == plan  # workers can resume it
    assert bb.run_plan(plan, old) == 0 and len(bb.BilevelStorage(str(path)).runs(plan.name)) == 4  # imported once
