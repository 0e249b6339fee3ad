"""Machinery shared by the golden-trajectory replayers (:mod:`descend.optim.replay`, :mod:`descend.bilevel.replay`).

Both formats store recorded values and a tolerance ``{"rtol", "atol"}``; a value passes when
``|actual - expected| <= atol + rtol * |expected|``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

__all__ = ["Comparator", "FixtureError", "check_tolerance", "expand_paths", "read_json"]


class FixtureError(ValueError):
    """The file is not a fixture the replayer can interpret."""


def read_json(path: str | Path) -> Any:
    """The parsed JSON content of ``path``; :class:`FixtureError` if it cannot be read."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, json.JSONDecodeError) as exc:
        raise FixtureError(f"{path}: cannot read a JSON fixture ({exc})") from exc


def check_tolerance(fx: Any, where: str) -> None:
    """Raise :class:`FixtureError` unless ``fx["tolerance"]`` has ``rtol`` and ``atol``."""
    tol = fx["tolerance"]
    if not isinstance(tol, dict) or not {"rtol", "atol"} <= set(tol):
        raise FixtureError(f"{where}: tolerance needs 'rtol' and 'atol'")


class Comparator:
    """Accumulates max |diff| and max |diff| / (atol + rtol |expected|) over a replay.

    ``first_fail`` is the first index (step or iteration) at which the ratio exceeded 1; a non-finite actual
    value counts as an infinite ratio.
    """

    def __init__(self, rtol: float, atol: float) -> None:
        self.rtol, self.atol = float(rtol), float(atol)
        self.max_abs = 0.0
        self.max_ratio = 0.0
        self.first_fail: int | None = None

    def compare(self, actual: Any, expected: Any, index: int) -> float:
        """Compare one recorded array; returns its max ratio."""
        a = torch.as_tensor(actual, dtype=torch.float64).detach().reshape(-1)
        e = torch.as_tensor(expected, dtype=torch.float64).reshape(-1)
        if a.shape != e.shape:
            raise FixtureError(f"step {index}: {a.numel()} values where the fixture has {e.numel()}")
        if not bool(torch.isfinite(a).all()):
            r = math.inf
        else:
            diff = (a - e).abs()
            bound = self.atol + self.rtol * e.abs()
            ratio = torch.where(diff == 0, torch.zeros_like(diff), diff / bound)
            r = float(ratio.max()) if ratio.numel() else 0.0
            self.max_abs = max(self.max_abs, float(diff.max()) if diff.numel() else 0.0)
        self.max_ratio = max(self.max_ratio, r)
        if r > 1.0 and self.first_fail is None:
            self.first_fail = index
        return r


def expand_paths(paths: Sequence[str]) -> list[Path]:
    """Files named on a command line; a directory stands for every ``*.json`` in it (sorted)."""
    out: list[Path] = []
    for p in map(Path, paths):
        out.extend(sorted(p.glob("*.json")) if p.is_dir() else [p])
    return out
