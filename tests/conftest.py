"""Shared test configuration: where the golden fixtures live; eager elementwise optimizers by default.

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

os.environ.setdefault("DESCEND_COMPILE", "0")

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DESCEND_SHARED", ROOT.parent / "shared"))
FIXTURES = SHARED / "reference" / "optimizers"
BILEVEL_FIXTURES = SHARED / "reference" / "bilevel"


def fixture_files(prefix: str = "") -> list[Path]:
    """Optimizer fixture files whose name starts with ``prefix`` (fails in CI if the directory is missing)."""
    if not FIXTURES.is_dir():
        if os.environ.get("CI"):
            raise RuntimeError(f"golden fixtures not found at {FIXTURES} (set DESCEND_SHARED)")
        pytest.skip(f"golden fixtures not found at {FIXTURES} (set DESCEND_SHARED)", allow_module_level=True)
    return sorted(FIXTURES.glob(f"{prefix}*.json"))


def pytest_configure(config: pytest.Config) -> None:
    """One intra-op thread per test process: the suite runs 2 processes on 2 cores, and tiny tensors gain
    nothing from threads (LAPACK calls on small matrices were 10^4x slower with oversubscribed threads)."""
    import torch

    torch.set_num_threads(1)
