"""Shared test configuration: where the golden fixtures live."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
