"""Shared test configuration: the golden fixtures (packaged in descend.fixtures); eager optimizers by default.

``DESCEND_COMPILE=0``: the auto mode of the elementwise optimizers (``fused=None``, compiled where
``torch.compile`` works) runs eagerly in the test suite, so that the hundreds of contract tests do not each
pay seconds of compilation; the compiled default itself is tested in ``tests/optim/test_fused.py`` (and by
every ``fused=True`` equivalence test).  Run ``DESCEND_COMPILE=auto pytest ...`` to run everything with the
default a user gets.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from descend import fixtures

os.environ.setdefault("DESCEND_COMPILE", "0")

ROOT = Path(__file__).resolve().parents[1]
# The suite replays the fixtures packaged with descend (what a pip user gets); tests/test_fixtures.py checks that
# they are a byte-identical copy of $DESCEND_SHARED/reference (default ../shared), the recorded originals.
SHARED = Path(os.environ.get("DESCEND_SHARED", ROOT.parent / "shared"))
FIXTURES = fixtures.directory("optimizers")
BILEVEL_FIXTURES = fixtures.directory("bilevel")


def fixture_files(prefix: str = "") -> list[Path]:
    """Packaged optimizer fixture files whose name starts with ``prefix``."""
    found = fixtures.files("optimizers", prefix)
    if not found:
        raise RuntimeError(f"no packaged fixture starts with {prefix!r} in {FIXTURES}")
    return found


def pytest_configure(config: pytest.Config) -> None:
    """One intra-op thread per test process: the suite runs 2 processes on 2 cores, and tiny tensors gain
    nothing from threads (LAPACK calls on small matrices were 10^4x slower with oversubscribed threads)."""
    import torch

    torch.set_num_threads(1)
