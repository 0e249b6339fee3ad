"""Time per Hessian-vector product: descend.curvature vs PyHessian 0.1 (Yao et al. 2020), side by side.

Model: an MLP ``d_in -> width -> width -> classes`` (tanh), cross-entropy on one random batch, float32, CPU.
Entries (each timed on the same model and batch, interleaved round by round so that machine load hits all
alike; the table shows the median over rounds of the time per product):

* ``pyhessian``            -- ``hessian_vector_product(gradsH, params, v)`` on the graph PyHessian builds once
  (``hessian(model, criterion, data=(x, y), cuda=False)``): one double-backward per product;
* ``descend[autograd]``    -- ``HVPOperator(method="autograd").matvec``: the same double backward on a cached graph
  (what ``method="auto"`` uses for single products);
* ``descend[func]``        -- ``HVPOperator(method="func").matvec``: ``torch.func`` ``jvp(grad)``, forward and
  backward recomputed per product (live for any batch, no graph kept);
* ``descend[func, block]`` -- ``matmat`` of ``--block`` columns through ``vmap(jvp(grad))`` (what Hutchinson,
  Hutch++ and ``method="auto"`` blocks use), per column;
* ``pyhessian[loader]`` / ``descend[loader, ...]`` -- the batch split into ``--loader-batches`` batches, where
  no graph can be kept across products (PyHessian: ``dataloader_hv_product``);
* ``pyhessian.trace`` / ``descend.trace`` -- a whole Hutchinson trace estimate with ``--block`` products each
  (PyHessian: ``trace(maxIter=block, tol=0)``; descend: ``trace(op, "hutchinson", budget=block)``), per product.

Then the top eigenvalue at PyHessian's default tolerance (relative change 1e-3, power iteration) vs
``top_eigenpairs(tol=1e-3)`` (Lanczos), with products counted and a tight Lanczos value as the reference.

Ratios are PyHessian's time divided by descend's (> 1: descend is faster).  Check that the products agree:
the script asserts ``max |Hv_pyhessian - Hv_descend| <= 1e-4 * max |Hv|`` (float32 rounding of two orders of the
same sums) before timing.

Usage::

    python benchmarks/curvature_vs_pyhessian.py --threads 1
    python benchmarks/curvature_vs_pyhessian.py --width 256 --batch 1024 --rounds 20 --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from descend.curvature import HVPOperator, top_eigenpairs, trace


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--d-in", type=int, default=32)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--block", type=int, default=10, help="columns per block product / trace estimate")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--loader-batches", type=int, default=4, help="also time a loader of this many batches (0: no)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", type=str, default=None, help="also write the results here")
    args = ap.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        from pyhessian import hessian
        from pyhessian.utils import hessian_vector_product
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise SystemExit(f"pyhessian is not importable ({e}); pip install pyhessian==0.1") from e

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(args.d_in, args.width), nn.Tanh(), nn.Linear(args.width, args.width), nn.Tanh(),
                          nn.Linear(args.width, args.classes))
    x = torch.randn(args.batch, args.d_in)
    y = torch.randint(0, args.classes, (args.batch,))
    loss_fn = nn.CrossEntropyLoss()
    ph = hessian(model, loss_fn, data=(x, y), cuda=False)
    ops = {m: HVPOperator(model, loss_fn, (x, y), method=m) for m in ("autograd", "func")}
    dim = ops["func"].dim
    g = torch.Generator().manual_seed(1)
    v = torch.randn(dim, generator=g)
    V = torch.randn(dim, args.block, generator=g)

    def unflat(t: torch.Tensor) -> list[torch.Tensor]:
        return list(ops["func"].unflatten(t))

    ref = torch.cat([h.reshape(-1) for h in hessian_vector_product(ph.gradsH, ph.params, unflat(v))])
    for name, op in ops.items():
        err = (op.matvec(v) - ref).abs().max().item()
        assert err <= 1e-4 * ref.abs().max().item(), (name, err)
    blk = ops["func"].matmat(V)
    ref_blk = torch.stack([torch.cat([h.reshape(-1) for h in hessian_vector_product(ph.gradsH, ph.params,
                                                                                      unflat(V[:, j]))])
                           for j in range(args.block)], dim=1)
    assert (blk - ref_blk).abs().max().item() <= 1e-4 * ref_blk.abs().max().item()

    entries: dict[str, tuple[Callable[[], object], int]] = {
        "pyhessian": (lambda: hessian_vector_product(ph.gradsH, ph.params, unflat(v)), 1),
        "descend[autograd]": (lambda: ops["autograd"].matvec(v), 1),
        "descend[func]": (lambda: ops["func"].matvec(v), 1),
        "descend[func, block]": (lambda: ops["func"].matmat(V), args.block),
        "pyhessian.trace": (lambda: ph.trace(maxIter=args.block, tol=0.0), args.block),
        "descend.trace": (lambda: trace(HVPOperator(model, loss_fn, (x, y)), "hutchinson", args.block), args.block),
    }
    if args.loader_batches > 0:  # the same data split into a loader: nothing can be cached across products
        chunks = list(zip(x.chunk(args.loader_batches), y.chunk(args.loader_batches), strict=True))
        ph_loader = hessian(model, loss_fn, dataloader=chunks, cuda=False)
        lops = {m: HVPOperator(model, loss_fn, chunks, method=m) for m in ("autograd", "func")}
        entries["pyhessian[loader]"] = (lambda: ph_loader.dataloader_hv_product(unflat(v)), 1)
        entries["descend[loader, autograd]"] = (lambda: lops["autograd"].matvec(v), 1)
        entries["descend[loader, func]"] = (lambda: lops["func"].matvec(v), 1)
        entries["descend[loader, func, block]"] = (lambda: lops["func"].matmat(V), args.block)
    times: dict[str, list[float]] = {k: [] for k in entries}
    for fn, _ in entries.values():  # warm-up (lazy imports, first traces)
        fn()
    for _ in range(args.rounds):
        for name, (fn, count) in entries.items():
            t0 = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - t0) / count)
    med = {k: statistics.median(ts) for k, ts in times.items()}
    print(f"MLP {args.d_in}-{args.width}-{args.width}-{args.classes}, {dim} parameters, batch {args.batch}, "
          f"float32, threads={torch.get_num_threads()}, {args.rounds} rounds (median time per HVP)")
    print(f"{'entry':24s} {'ms/HVP':>10s} {'pyhessian / this':>18s}")
    for k, t in med.items():
        base = med["pyhessian.trace" if "trace" in k else "pyhessian[loader]" if "loader" in k else "pyhessian"]
        print(f"{k:24s} {1e3 * t:10.3f} {base / t:18.2f}")
    # top eigenvalue: PyHessian's power iteration (its default tol 1e-3, maxIter 100) vs Lanczos, HVPs counted
    import sys

    ph_module = sys.modules["pyhessian.hessian"]

    calls = [0]
    original = ph_module.hessian_vector_product

    def counted(*a: object, **kw: object) -> object:
        calls[0] += 1
        return original(*a, **kw)

    ph_module.hessian_vector_product = counted  # type: ignore[assignment]
    try:
        torch.manual_seed(2)
        t0 = time.perf_counter()
        lam_ph = ph.eigenvalues(maxIter=100, tol=1e-3)[0][0]
        t_ph = time.perf_counter() - t0
    finally:
        ph_module.hessian_vector_product = original
    op = HVPOperator(model, loss_fn, (x, y))
    t0 = time.perf_counter()
    eig = top_eigenpairs(op, 1, tol=1e-3, seed=2)
    t_d = time.perf_counter() - t0
    exact = top_eigenpairs(HVPOperator(model, loss_fn, (x, y)), 1, tol=1e-7, seed=3).eigenvalues[0].item()
    print(f"\ntop eigenvalue (tol 1e-3; reference {exact:.6g} by Lanczos at tol 1e-7):")
    print(f"  pyhessian power iteration: {lam_ph:.6g} in {calls[0]} HVPs, {t_ph:.2f} s")
    print(f"  descend Lanczos:           {eig.eigenvalues[0].item():.6g} in {eig.n_hvp} HVPs, {t_d:.2f} s")
    med["eig_pyhessian_hvps"] = calls[0]
    med["eig_descend_hvps"] = eig.n_hvp
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"dim": dim, "args": vars(args), "median_s_per_hvp": med}, f, indent=1)


if __name__ == "__main__":
    main()
