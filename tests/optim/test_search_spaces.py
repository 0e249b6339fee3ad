"""Registry search spaces against the anchors' tuned values (Wen et al. 2025, 130M at 1x Chinchilla;
``shared/specs/optimizers.md`` §13): every tuned value lies inside its range and, for log ranges, not within
10 % of an edge (where a tuner would stop at the boundary), unless the edge is the parameter's natural bound."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

import descend.optim as do
from descend.optim import Categorical, FloatRange, IntRange

#: (optimizer, hyperparameter, tuned value) — Wen et al. 2025, Table "best configs at 130M, 1x"
TUNED: list[tuple[str, str, Any]] = [
    ("adamw", "lr", 8e-3), ("adamw", "betas", (0.9, 0.98)), ("adamw", "weight_decay", 0.1),
    ("nadamw", "lr", 8e-3), ("nadamw", "betas", (0.95, 0.98)), ("nadamw", "weight_decay", 0.1),
    ("lion", "lr", 2e-3), ("lion", "betas", (0.9, 0.95)), ("lion", "weight_decay", 0.7),
    ("muon", "lr", 1.6e-2), ("muon", "momentum", 0.95), ("muon", "weight_decay", 0.1),
    ("muon", "adam_lr", 0.2 * 1.6e-2),
    ("soap", "lr", 1.6e-2), ("soap", "betas", (0.95, 0.98)), ("soap", "shampoo_beta", 0.95),
    ("soap", "weight_decay", 0.1), ("soap", "precondition_frequency", 1),
    ("sophia_g", "lr", 4e-3), ("sophia_g", "weight_decay", 0.0),
]
#: hard floors: a tuned value there is the smallest possible setting, not a too-narrow range
NATURAL_BOUNDS = {("soap", "precondition_frequency")}


def _fraction_from_edge(dim: FloatRange | IntRange, value: float) -> float:
    if dim.log:
        lo, hi, v = math.log(dim.low), math.log(dim.high), math.log(value)
    else:
        lo, hi, v = dim.low, dim.high, value
    return min(v - lo, hi - v) / (hi - lo)


@pytest.mark.parametrize(("name", "key", "value"), TUNED, ids=[f"{n}-{k}" for n, k, _ in TUNED])
def test_tuned_value_is_inside_the_search_space(name: str, key: str, value: Any) -> None:
    dim = do.get(name).search_space[key]
    if isinstance(dim, Categorical):
        assert value in dim.choices, f"{name}.{key}: {value} not among {dim.choices}"
        numeric = isinstance(value, float) and all(isinstance(c, float) for c in dim.choices)
        if numeric and (name, key) not in NATURAL_BOUNDS:
            assert value < max(dim.choices), f"{name}.{key}: the tuned {value} is the largest choice"
        return
    assert dim.low <= value <= dim.high, f"{name}.{key}: {value} outside [{dim.low}, {dim.high}]"
    if (name, key) not in NATURAL_BOUNDS:
        assert _fraction_from_edge(dim, value) > 0.1, f"{name}.{key}: {value} within 10 % of an edge of {dim}"


def test_lion_lr_range_and_muon_adam_lr_is_absolute() -> None:
    lion = do.get("lion").search_space["lr"]
    assert lion.low <= 1e-4 and lion.high >= 3e-2
    muon = do.get("muon")
    assert "adam_lr_ratio" not in muon.search_space
    assert muon.search_space["adam_lr"] == do.get("adamw").search_space["lr"], "AdamW's own range"
    # on bare parameters (auto groups) the AdamW half starts at adam_lr, whatever lr is
    for lr in (1e-3, 0.05):
        w, b = torch.nn.Parameter(torch.ones(4, 3)), torch.nn.Parameter(torch.ones(3))
        opt = do.create("muon", [w, b], lr=lr, adam_lr=2e-3)
        group = opt.param_groups[0]
        assert group["lr"] * group["adam_lr_ratio"] == pytest.approx(2e-3, rel=1e-12)
    # an explicit ratio still works (and wins)
    opt = do.create("muon", [torch.nn.Parameter(torch.ones(3))], lr=0.02, adam_lr_ratio=0.5)
    assert opt.param_groups[0]["adam_lr_ratio"] == 0.5
    with pytest.raises(ValueError, match="adam_lr"):
        do.create("muon", [torch.nn.Parameter(torch.ones(3))], adam_lr=-1.0)
