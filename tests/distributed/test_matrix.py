"""Matrix optimizers at scale (issue 14, item 1), on 2 and 3 spawned gloo processes, float64.

DDP: every registered optimizer's parameters are bitwise identical on all ranks after each step, and bitwise
equal to one process that accumulates the ranks' micro-batch gradients in rank order and divides by N — with
:func:`descend.distributed.deterministic_allreduce_hook`, which sums in exactly that order.  With gloo's own
ring all-reduce (no hook) the ranks still agree bitwise, and the step equals the single-process one up to the
rounding of a differently ordered sum of N float64 gradients (relative 1e-15 per coordinate); three steps of
AdamW/Muon amplify it by at most ~1/(√v̂+ε)·|g| ≈ O(1) (AdamW) and the Newton–Schulz polynomial's Lipschitz
constant (< 10 on 5 iterations of a normalised input), so 1e-12 leaves room and is far below any wrong-update
difference (O(lr) = 1e-3).

FSDP2 (``fully_shard``, DTensor parameters, shards of 3/2 rows on 2 ranks, 2/2/1 on 3): with the same
(synthetic) gradients, every step of Muon, SOAP, Shampoo, FRUGAL, Scion (gathered whole matrices) and the
elementwise optimizers (on shards) equals the unsharded step bitwise; owner mode splits the state (the
per-rank state bytes sum to the single-process bytes, and no rank holds all of it); an end-to-end FSDP
backward + owner-mode Muon matches the single-process run to 1e-12 (same reasoning as the ring all-reduce:
FSDP's reduce-scatter orders the sum its own way).  Checkpoints: saved by DCP on 2 ranks, loaded on 3, the
resumed trajectory equals 6 uninterrupted single-process steps bitwise.
"""

from __future__ import annotations

from typing import Any

import pytest

import descend.optim as do

from ._spawn import spawn
from .matrix_workers import CKPT_OPTIMIZERS, FSDP_OPTIMIZERS, everything

NAMES = do.available()


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[int, list[dict[str, Any]]]:
    ckpt = str(tmp_path_factory.mktemp("dcp"))
    two = spawn(everything, 2, NAMES, ckpt, None)
    three = spawn(everything, 3, NAMES, None, ckpt)
    return {2: two, 3: three}


@pytest.mark.parametrize("world", [2, 3])
@pytest.mark.parametrize("name", [*NAMES, "muon[owner]", "soap[owner]", "shampoo[owner]"])
def test_ddp_step_equals_single_process(runs: dict[int, list[dict[str, Any]]], world: int, name: str) -> None:
    for rank, res in enumerate(runs[world]):
        r = res["ddp"][name]
        assert r["ranks_equal"], f"{name}: parameters differ across ranks"
        assert r["rel_diff"] == 0.0, f"{name} on rank {rank}: relative difference {r['rel_diff']:.3g}"
        assert r["moved"] > 0.0, f"{name}: the parameters did not move"


@pytest.mark.parametrize("world", [2, 3])
@pytest.mark.parametrize("name", ["adamw", "muon"])
def test_ddp_ring_allreduce(runs: dict[int, list[dict[str, Any]]], world: int, name: str) -> None:
    for res in runs[world]:
        r = res["ddp_ring"][name]
        assert r["ranks_equal"]
        assert r["rel_diff"] <= 1e-12


@pytest.mark.parametrize("world", [2, 3])
@pytest.mark.parametrize("name", FSDP_OPTIMIZERS)
def test_fsdp_step_equals_unsharded(runs: dict[int, list[dict[str, Any]]], world: int, name: str) -> None:
    for res in runs[world]:
        assert res["fsdp"][name]["equal"], f"{name} under FSDP2 differs from the unsharded step"


@pytest.mark.parametrize("world", [2, 3])
@pytest.mark.parametrize("name", ["muon", "soap", "shampoo"])
def test_owner_mode_splits_state(runs: dict[int, list[dict[str, Any]]], world: int, name: str) -> None:
    r = runs[world][0]["fsdp"][name]
    assert r["mode"] == "owner"
    assert sum(r["state_bytes"]) == r["single_state_bytes"]
    assert max(r["state_bytes"]) < r["single_state_bytes"]


@pytest.mark.parametrize("world", [2, 3])
def test_fsdp_end_to_end(runs: dict[int, list[dict[str, Any]]], world: int) -> None:
    for res in runs[world]:
        assert res["fsdp"]["muon_end_to_end"]["rel_diff"] <= 1e-12


@pytest.mark.parametrize("name", CKPT_OPTIMIZERS)
def test_checkpoint_two_to_three_ranks(runs: dict[int, list[dict[str, Any]]], name: str) -> None:
    for res in runs[3]:
        assert res["fsdp"]["checkpoint"][name]["resumed_equal"], f"{name}: resumed trajectory differs"
