"""Time and memory per hypergradient at equal accuracy: AID-CG, AID-Neumann, ITD, Lanczos (LancBiO's solve).

Quadratic bilevel problem (descend.bilevel.QuadraticProblem, diagonal + rank-10 matrices) at d = 10⁴, float64,
y = y*(x) for AID, y = 0 for ITD.  For each method the smallest budget (CG / Lanczos / Neumann iterations, ITD
unrolled steps) whose relative error ‖ĝ − ∇h‖/‖∇h‖ ≤ 1e-3 is found by doubling then bisection, then timed
(median of repeats) and its peak autograd memory measured (sum of the sizes of the tensors saved for backward,
via torch.autograd.graph.saved_tensors_hooks: what reverse mode keeps alive).  ITD's memory growth with T is
measured separately.

    python benchmarks/hypergradient.py [--dim 10000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from descend.bilevel import QuadraticProblem, hypergradient


class SavedBytes:
    """Bytes of tensors saved for backward while active (a proxy of reverse-mode memory, CPU-friendly)."""

    def __init__(self):
        self.live = 0
        self.peak = 0

    def pack(self, t):
        n = t.numel() * t.element_size()
        self.live += n
        self.peak = max(self.peak, self.live)
        return (t, n)

    def unpack(self, packed):
        return packed[0]

    def __enter__(self):
        self._ctx = torch.autograd.graph.saved_tensors_hooks(self.pack, self.unpack)
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc):
        self._ctx.__exit__(*exc)


def rel_error(p, x, y, method, k):
    est = hypergradient(p, x, y, method, steps=k)
    true = p.true_hypergradient(x)
    return float((est.grad - true).norm() / true.norm())


def budget_for(p, x, y, method, target, kmax=20000):
    return _budget(lambda k: rel_error(p, x, y, method, k), target, kmax)


def measure(p, x, y, method, k, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        est = hypergradient(p, x, y, method, steps=k)
        times.append(time.perf_counter() - t0)
    with SavedBytes() as sb:
        hypergradient(p, x, y, method, steps=k)
    return statistics.median(times), sb.peak, est.counts


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dim", type=int, default=10_000)
    ap.add_argument("--rank", type=int, default=10)
    ap.add_argument("--condition", type=float, default=100.0)
    ap.add_argument("--target", type=float, default=1e-3)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    p = QuadraticProblem(args.dim, args.dim, rank=args.rank, condition=args.condition, seed=0)
    x = torch.randn(args.dim, dtype=torch.float64)
    ys = p.y_star(x)
    y0 = torch.zeros_like(ys)
    print(f"quadratic problem d = {args.dim}, rank {args.rank}, diag condition {args.condition:g}, "
          f"target relative error {args.target:g}, float64, {torch.get_num_threads()} threads")
    print(f"{'method':<10} {'budget':>7} {'rel.err':>9} {'time [ms]':>10} {'saved MiB':>10}  oracle calls")
    rows = []
    for method in ("cg", "lanczos", "neumann", "itd"):
        y = y0 if method == "itd" else ys
        k = budget_for(p, x, y, method, args.target)
        if k is None:
            print(f"{method:<10} budget > 20000")
            continue
        t, mem, counts = measure(p, x, y, method, k, args.repeats)
        err = rel_error(p, x, y, method, k)
        rows.append((method, k, t))
        calls = ", ".join(f"{c} {n}" for c, n in counts.items() if n)
        print(f"{method:<10} {k:>7} {err:>9.2e} {1e3 * t:>10.1f} {mem / 2**20:>10.2f}  {calls}")
    base = dict((m, t) for m, _, t in rows).get("cg")
    if base:
        print("time ratio to AID-CG: " + ", ".join(f"{m} {t / base:.1f}x" for m, _, t in rows))
    print("\nITD memory growth with T (full back-propagation, saved tensors):")
    print(f"{'T':>6} {'saved MiB':>10} {'MiB / step':>11} {'time [ms]':>10}")
    for T in (10, 20, 40, 80, 160):
        t, mem, _ = measure(p, x, y0, "itd", T, 1)
        print(f"{T:>6} {mem / 2**20:>10.2f} {mem / 2**20 / T:>11.3f} {1e3 * t:>10.1f}")
    try:  # optional comparison, only if TorchOpt is importable on this torch
        import torchopt  # noqa: F401
    except Exception as exc:
        print(f"\nTorchOpt comparison skipped: {type(exc).__name__}: {exc}")
        return
    print("\nTorchOpt linear solvers inside the same AID hypergradient (same HVPs), same target:")
    print(f"{'solver':<22} {'iters':>7} {'rel.err':>9} {'time [ms]':>10}  vs descend AID-CG")
    for name in ("solve_cg", "solve_normal_cg"):
        k = _budget(lambda k, name=name: _torchopt_error(p, x, ys, name, k), args.target)
        if k is None:
            print(f"{'torchopt.' + name:<22} budget > 20000")
            continue
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            _torchopt_hypergrad(p, x, ys, name, k)
            times.append(time.perf_counter() - t0)
        t = statistics.median(times)
        ratio = f"{t / base:.2f}x" if base else "–"
        print(f"{'torchopt.' + name:<22} {k:>7} {_torchopt_error(p, x, ys, name, k):>9.2e} {1e3 * t:>10.1f}  {ratio}")


def _torchopt_hypergrad(p, x, y, solver_name, k):
    """∇_x f − J v with v from TorchOpt's linear solver on the inner Hessian (autograd HVPs)."""
    import torchopt

    x = x.detach().requires_grad_(True)
    y = y.detach().requires_grad_(True)
    gy = torch.autograd.grad(p.inner(x, y), y, create_graph=True)[0]
    fx, fy = torch.autograd.grad(p.outer(x, y), (x, y))

    def matvec(v):
        return torch.autograd.grad(gy, y, v, retain_graph=True)[0]

    solver = getattr(torchopt.linear_solve, solver_name)(maxiter=k, rtol=0.0, atol=0.0)
    v = solver(matvec, fy)
    return fx - torch.autograd.grad(gy, x, v)[0]


def _torchopt_error(p, x, y, solver_name, k):
    true = p.true_hypergradient(x)
    return float((_torchopt_hypergrad(p, x, y, solver_name, k) - true).norm() / true.norm())


def _budget(error_of, target, kmax=20000):
    k = 1
    while error_of(k) > target:
        k *= 2
        if k > kmax:
            return None
    lo, hi = k // 2, k
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if error_of(mid) <= target:
            hi = mid
        else:
            lo = mid
    return hi


if __name__ == "__main__":
    main()
