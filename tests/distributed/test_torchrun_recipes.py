"""The README's ``torchrun`` recipes for the seed algorithms run as written (``benchmarks/distributed_seeds.py``
under ``python -m torch.distributed.run --standalone``, gloo on localhost) and compute what the in-process runs
compute."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from descend.distributed._comm import InProcess
from descend.distributed.examples import sliding_nodes
from descend.distributed.sliding import gradient_sliding, l1_lo, ring

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "distributed_seeds.py"


def _torchrun(nproc: int, *args: str) -> list[Any]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
                          str(SCRIPT), *args, "--torchrun", "--json"], capture_output=True, text=True, env=env,
                         timeout=600, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_compositional_recipe_on_three_ranks_equals_autograd_gd() -> None:
    """The random 6-problem instance, two subproblems per rank: every iterate within 1e-12 of autograd GD on the
    composite (the same products summed in another order; a contraction does not amplify the ulps) and the end
    point within 1e-8 of the closed-form minimiser, as in tests/distributed/test_compositional.py."""
    per_rank = _torchrun(3, "compositional", "--problem", "random")
    assert sorted(w for r in per_rank for w in r["workers"]) == list(range(6))
    assert all(r["worst_step_diff"] <= 1e-12 and r["minimiser_err"] <= 1e-8 for r in per_rank)
    assert all(r["rounds"] == r["steps"] for r in per_rank)  # one all-reduce per iteration


def test_sliding_recipe_on_two_ranks_equals_the_in_process_run() -> None:
    """Nodes spread over two ranks exchange along the ring's edges by point-to-point messages; each node does the
    same float operations in the same order as in one process (only the transport differs), so the iterates
    are bitwise equal, and the counters too."""
    per_rank = _torchrun(2, "sliding", "--graph", "ring", "--steps", "12")
    graph = ring(8)
    nodes = sliding_nodes(m=8)
    lf = max(float(torch.linalg.matrix_norm(n.A, 2) ** 2) / (4 * len(n.A)) for n in nodes.values())
    xs, cnt = gradient_sliding(nodes, graph, l1_lo(3.0), 10, 12, InProcess(), lipschitz=lf, r=0.05 * lf,
                               tol=0.01 * lf * 36.0)
    got = per_rank[0]["sliding"]
    for i, x in xs.items():
        assert torch.equal(torch.tensor(got["x"][str(i)], dtype=torch.float64), x)
    counters = {int(i): c for r in per_rank for i, c in r["sliding"]["counters"].items()}
    assert counters == {i: vars(c) for i, c in cnt.items()}
    assert _sane(got["gap"]) and _sane(got["consensus"])


def _sane(v: float) -> bool:
    return v == v and v >= -1e-9  # finite, and the gap of a feasible average is never below F*


@pytest.mark.slow
def test_dat_recipe_on_two_ranks_trains() -> None:
    """One epoch of DAT with 4-bit gradients on two ranks: it runs as written and learns (chance is 0.1)."""
    per_rank = _torchrun(2, "dat", "--epochs", "1", "--bits", "4")
    assert per_rank[0]["clean"] > 0.5 and per_rank[0]["robust"] > 0.1
