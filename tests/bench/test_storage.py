"""The benchmark database: refusing foreign or corrupt files, idempotent writes, and work claims."""

from __future__ import annotations

import math
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time

import pytest
import sqlalchemy as sa

from descend.bench import storage as st
from descend.bench.storage import RunRow, Storage, StorageError, owner_id


def _row(**overrides) -> RunRow:
    values = dict(plan="p", workload="w", scale="s", optimizer="adamw", phase="tune", trial_number=0, seed=0,
                  steps=10, hyperparameters={"lr": 1e-3, "betas": (0.9, 0.999)},
                  final={"val_loss": 0.5, "step": 10}, diverged=False, train_time=1.0, eval_time=0.1,
                  total_time=1.2, curve=[{"step": 5, "val_loss": math.inf}, {"step": 10, "val_loss": 0.5}],
                  provenance={"torch": "x"})
    values.update(overrides)
    return RunRow(**values)


# -------------------------------------------------------------------------------------------- refusing files


def test_foreign_sqlite_database_is_refused(tmp_path):
    path = tmp_path / "foreign.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO customers (name) VALUES ('ada')")
    with pytest.raises(StorageError, match="something else"):
        Storage(str(path))
    with sqlite3.connect(path) as conn:  # untouched: no descend tables were added
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables == {"customers"}


def test_non_sqlite_file_is_refused(tmp_path):
    path = tmp_path / "garbage.db"
    payload = os.urandom(4096)
    path.write_bytes(payload)
    with pytest.raises(StorageError, match="not an SQLite database"):
        Storage(str(path))
    assert path.read_bytes() == payload


def test_corrupt_sqlite_file_is_refused(tmp_path):
    path = tmp_path / "corrupt.db"
    path.write_bytes(b"SQLite format 3\x00" + os.urandom(8192))  # the right header, garbage after it
    with pytest.raises(StorageError):
        Storage(str(path))


def test_other_schema_version_is_refused(tmp_path):
    path = tmp_path / "old.db"
    db = Storage(str(path))
    with db.engine.begin() as conn:
        conn.execute(sa.update(st._info).where(st._info.c.key == "schema").values(value="999"))
    with pytest.raises(StorageError, match="schema 999"):
        Storage(str(path))


def test_empty_file_and_missing_directory_are_fine(tmp_path):
    (tmp_path / "empty.db").write_bytes(b"")
    Storage(str(tmp_path / "empty.db"))
    db = Storage(str(tmp_path / "new" / "dir" / "bench.db"))
    assert db.url.startswith("sqlite:///") and db.plans() == {}
    assert Storage(db.url).plans() == {}  # reopening an existing descend database


def test_plan_conflict_is_an_error(tmp_path):
    db = Storage(str(tmp_path / "b.db"))
    db.save_plan("p", {"trials": 3})
    db.save_plan("p", {"trials": 3})
    with pytest.raises(StorageError, match="another configuration"):
        db.save_plan("p", {"trials": 4})


# -------------------------------------------------------------------------------------------- runs


def test_runs_round_trip_and_no_duplicates(tmp_path):
    db = Storage(str(tmp_path / "b.db"))
    assert db.add_run(_row())
    assert not db.add_run(_row(final={"val_loss": 0.1}))  # same (plan, cell, phase, seed, trial): refused
    assert db.add_run(_row(trial_number=1))
    assert db.add_run(_row(phase="final", trial_number=-1, seed=1))
    rows = db.runs(plan="p")
    assert len(rows) == 3
    got = rows[0]
    assert got.final == {"val_loss": 0.5, "step": 10}
    assert got.curve[0]["val_loss"] == math.inf  # infinities survive JSON
    assert got.hyperparameters["betas"] == [0.9, 0.999]  # JSON has no tuples; run_trial turns lists back
    assert got.cell == "w:s:adamw"
    assert db.has_run("p", "w:s:adamw", "final", 1, -1)
    assert not db.has_run("p", "w:s:adamw", "final", 2, -1)
    assert len(db.runs(plan="p", phase="tune")) == 2
    assert db.runs(plan="other") == []


# -------------------------------------------------------------------------------------------- claims


@pytest.fixture
def other_process():
    """A live process that is not us (its pid owns claims in the tests)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


def test_claim_held_by_a_live_owner_blocks(tmp_path, other_process):
    db = Storage(str(tmp_path / "c.db"))
    other = f"{socket.gethostname()}:{other_process.pid}:1"
    assert db.claim("k", owner=other)
    assert not db.claim("k")  # we may not take it
    assert db.claim("k", owner=other)  # the holder may renew it
    with db.claimed("k") as ok:
        assert not ok
    db.release("k")  # releasing someone else's claim does nothing
    assert not db.claim("k")
    db.release("k", owner=other)
    assert db.claim("k")
    db.release("k")


def test_claim_held_by_a_dead_pid_is_taken_over(tmp_path, other_process):
    db = Storage(str(tmp_path / "c.db"))
    other = f"{socket.gethostname()}:{other_process.pid}:1"
    assert db.claim("k", owner=other)
    assert not db.claim("k")
    other_process.kill()
    other_process.wait()  # reaped: its pid is gone (a zombie would still count as alive)
    assert db.claim("k")
    assert not db.claim("k", owner=other)  # now we hold it, and we are alive
    with db.engine.connect() as conn:
        assert conn.execute(sa.select(st._claims.c.owner)).scalars().all() == [owner_id()]


def _plant(db: Storage, key: str, owner: str, expires_in: float) -> None:
    """A lease row as another process (on another host, or under a reused pid) would have left it."""
    now = time.time()
    with db.engine.begin() as conn:
        conn.execute(sa.delete(st._claims).where(st._claims.c.key == key))
        conn.execute(sa.insert(st._claims).values(key=key, owner=owner, heartbeat=now - 1, expires=now + expires_in))


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path) -> str:
    """A fresh SQLite file, or the test PostgreSQL server (see tests/bench/test_postgres.py)."""
    if request.param == "sqlite":
        return str(tmp_path / "c.db")
    pg = os.environ.get("DESCEND_TEST_POSTGRES_URL")
    if not pg:
        pytest.skip("DESCEND_TEST_POSTGRES_URL is not set (scripts/test.sh, which CI runs, sets it)")
    db = Storage(pg)
    with db.engine.begin() as conn:  # the lease tests use fixed keys: start from no lease
        conn.execute(sa.delete(st._claims).where(st._claims.c.key.in_(["k", "k2"])))
    return pg


@pytest.mark.parametrize("holder", ["some-other-host.invalid:1234:1", "reused-pid"])
def test_a_lease_is_taken_over_when_it_expires_whatever_its_host(url, holder):
    """Another host (whose pids we cannot see) or a pid of ours that now belongs to a live process (reused):
    the lease binds until it expires, then anyone may take the work."""
    db = Storage(url)
    if holder == "reused-pid":  # alive on this host, but not the process that claimed: only the lease can tell
        holder = f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident() + 1}"
    _plant(db, "k", holder, expires_in=60)
    assert not db.claim("k")  # unexpired: respected
    _plant(db, "k", holder, expires_in=-1)
    assert db.claim("k")  # expired: taken over
    assert db.leases()["k"][0] == owner_id()
    db.release("k")
    assert "k" not in db.leases()


def test_heartbeats_renew_a_held_lease(url):
    """While work is held its lease is renewed (heartbeat written, expiry pushed back), so it outlives its
    first expiry and nobody else can take it; released, it is gone."""
    lease = 0.4
    db = Storage(url, lease=lease)
    beats: list[float] = []
    assert db.claim("k", on_beat=lambda: beats.append(time.time()))
    first = db.leases()["k"][1]
    time.sleep(4 * lease)  # without heartbeats the lease would have expired long ago
    with db.engine.connect() as conn:
        owner, heartbeat, expires = conn.execute(sa.select(st._claims.c.owner, st._claims.c.heartbeat,
                                                           st._claims.c.expires)).one()
    assert owner == owner_id() and expires > first and expires > time.time() and heartbeat > first - lease
    assert len(beats) >= 3  # one at the claim, then one per lease / 4
    other = Storage(db.url, lease=lease)
    assert not other.claim("k", owner="some-other-host.invalid:1:1")
    db.release("k")
    assert other.claim("k", owner="some-other-host.invalid:1:1")


def test_two_takeovers_of_one_expired_lease_one_wins(url):
    db = Storage(url)
    _plant(db, "k", "gone.invalid:1:1", expires_in=-1)
    assert db.claim("k", owner="a.invalid:1:1")
    assert not db.claim("k", owner="b.invalid:1:1")  # a's fresh lease now binds b


def test_claimed_context_releases(tmp_path):
    db = Storage(str(tmp_path / "c.db"))
    with db.claimed("k") as ok:
        assert ok
        assert not db.claim("k", owner="elsewhere.invalid:1:1")
    assert db.claim("k", owner="elsewhere.invalid:1:1")


def test_a_schema_1_database_is_upgraded_to_leases(tmp_path):
    """Databases written before leases (claims without an expiry) open; their transient claims are dropped."""
    path = tmp_path / "v1.db"
    db = Storage(str(path))
    db.save_plan("p", {"trials": 3})
    with db.engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE descend_claims"))
        conn.execute(sa.text("CREATE TABLE descend_claims (key VARCHAR(400) PRIMARY KEY, owner VARCHAR(200) NOT NULL, "
                             "heartbeat FLOAT NOT NULL)"))
        conn.execute(sa.text("INSERT INTO descend_claims VALUES ('k', 'old-host:1:1', 0)"))
        conn.execute(sa.update(st._info).where(st._info.c.key == "schema").values(value="1"))
    db = Storage(str(path))
    assert db.plans() == {"p": {"trials": 3}}
    assert db.leases() == {}
    assert db.claim("k")
    with db.engine.connect() as conn:
        assert conn.execute(sa.select(st._info.c.value).where(st._info.c.key == "schema")).scalar() == "2"
