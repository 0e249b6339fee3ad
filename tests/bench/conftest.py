"""Shared fixtures of the benchmark tests: one data cache per test session, one small finished plan.

Generated data (the MNIST-1D set, the char-LM corpus, the logistic-regression optima) is cached under
``$DESCEND_CACHE``.  The tests point it at a directory shared by the pytest-xdist workers of one session, and
:func:`warm` builds a workload under a file lock so that two workers never compute the same data twice.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Linux/macOS: no lock, workers may compute the data twice
    fcntl = None  # type: ignore[assignment]

SMALL_CELL = ("logreg_breast_cancer", "s")


@pytest.fixture(scope="session", autouse=True)
def descend_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """``$DESCEND_CACHE`` -> a fresh directory shared by every xdist worker of this session (and subprocesses)."""
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # the parent is per session under xdist
    cache = root / "descend-cache"
    cache.mkdir(parents=True, exist_ok=True)
    old = os.environ.get("DESCEND_CACHE")
    os.environ["DESCEND_CACHE"] = str(cache)
    yield cache
    if old is None:
        os.environ.pop("DESCEND_CACHE", None)
    else:
        os.environ["DESCEND_CACHE"] = old


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as fh:
        if fcntl is not None:
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(fh, fcntl.LOCK_UN)


def warm(cache: Path, workload: str, scale: str) -> None:
    """Build ``workload`` once so its generated data is in the cache (one worker at a time per workload)."""
    from descend.bench.workloads import get_workload

    with _locked(cache / f"{workload}.lock"):
        get_workload(workload).build(0, scale)


@dataclass(frozen=True)
class Finished:
    """A small plan run to completion into ``url``."""

    url: str
    plan: Any  # descend.bench.protocol.Plan


def small_plan(name: str = "small", **overrides: Any) -> Any:
    """2 optimizers x 3 tuning trials x 2 seeds on logistic regression, at 5 % of the default budget."""
    from descend.bench.protocol import Plan

    kwargs: dict[str, Any] = dict(name=name, cells=(SMALL_CELL,), optimizers=("adamw", "nadamw"), trials=3, seeds=2,
                        budget_scale=0.05, evaluations=4)
    kwargs.update(overrides)
    return Plan(**kwargs)


@pytest.fixture(scope="session")
def finished_plan(descend_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Finished:
    """The :func:`small_plan`, drained into a fresh SQLite database (shared by the tests of one worker)."""
    from descend.bench.executors import drain
    from descend.bench.storage import Storage

    warm(descend_cache, *SMALL_CELL)
    db = tmp_path_factory.mktemp("finished") / "bench.db"
    plan = small_plan()
    storage = Storage(str(db))
    storage.save_plan(plan.name, plan.to_dict())
    n = drain(storage, plan)  # tuning (+ widening rounds), finals, AdamW's ladder and its noise-floor replica
    assert n == len(storage.runs(plan=plan.name)) >= plan.total_work()
    return Finished(url=storage.url, plan=plan)
