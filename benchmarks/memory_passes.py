r"""Why a step takes what it takes: read bandwidth of one thread's loops, and what inductor makes of a reduction.

The step-time table of the README (``benchmarks/step_time.py``) estimates each optimizer's ratio to fused AdamW
from the float32 values its step reads per element.  This script measures the pieces behind that estimate, on
``step_time.block_shapes`` (≈12.6M float32 elements in 17 tensors), each timed alone (median of ``--steps`` after
``--warmup``):

* ``torch.AdamW[fused]`` -- torch's fused kernel: reads p, g, m, v and writes p, m, v (GB/s of its reads);
* ``sum(a*b)`` compiled -- a read-only pass over two streams (one compiled call for the 17 tensor pairs);
* ``AdamW math`` compiled -- AdamW's update as one of descend's math functions (reads p, g, m, v);
* ``AdamW math + 4 sums`` compiled -- the same plus Mechanic's four sums (‖x⁺‖², ‖g‖², ⟨Δ, g⟩, ⟨Δ, x⁺⟩ over
  x⁺ and a fifth stream D) in the same function: inductor emits a reduction loop and a separate store loop,
  so this costs about the two passes it needs rather than one;
* ``Mechanic sums float32`` / ``float64`` -- :func:`descend.optim.mechanic.mechanic_sums` over x⁺, g, D with
  float32 accumulation, and with ``wide`` (Mechanic's fallback: the inputs, Δ and all four sums in float64).

"streams read" counts what the generated loops read: for ``AdamW math + 4 sums`` the reduction loop's five
(p, g, m, v, D) and the store loop's four (p, g, m, v).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/memory_passes.py --threads 1
    TORCH_LOGS=output_code python benchmarks/memory_passes.py 2>&1 | grep -E "for\(int64_t x0|cascade_sum_combine\("
                                                        # the loops inductor generated (the C++ source)
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from collections.abc import Callable

import torch

from descend.optim._fused import _as_compiled_scalars, multi_tensor
from descend.optim.mechanic import mechanic_sums
from step_time import block_shapes  # the script's folder is on sys.path


def adamw_math(p: torch.Tensor, g: torch.Tensor, m: torch.Tensor, v: torch.Tensor, *, beta1: float, beta2: float,
               decay: float, step_size: float, sqrt_bc2: float, eps: float) -> None:
    """AdamW's update of one tensor in place (torch's formula; weight decay as ``decay = 1 - lr·wd``)."""
    m.add_((g - m) * (1.0 - beta1))
    v.mul_(beta2).add_(g * g * (1.0 - beta2))
    p.mul_(decay).sub_(m * step_size / (v.sqrt() / sqrt_bc2 + eps))


def adamw_math_with_sums(p: torch.Tensor, g: torch.Tensor, m: torch.Tensor, v: torch.Tensor, d: torch.Tensor, *,
                         beta1: float, beta2: float, decay: float, step_size: float, sqrt_bc2: float, eps: float,
                         inv_s: float) -> tuple[torch.Tensor, ...]:
    """:func:`adamw_math`, then Mechanic's four sums over the new parameters x⁺, g and Δ = D·inv_s."""
    adamw_math(p, g, m, v, beta1=beta1, beta2=beta2, decay=decay, step_size=step_size, sqrt_bc2=sqrt_bc2, eps=eps)
    delta = d * inv_s
    return (p * p).sum(), (g * g).sum(), (delta * g).sum(), (delta * p).sum()


def dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).sum()


def median_ms(fn: Callable[[], object], steps: int, warmup: int) -> float:
    times = []
    for _ in range(warmup + steps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times[warmup:]) * 1e3


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--d", type=int, default=1024, help="model width of step_time's transformer-block shapes")
    ap.add_argument("--params-m", type=float, default=12.6, help="millions of parameter elements")
    ap.add_argument("--steps", type=int, default=10, help="timed calls per entry")
    ap.add_argument("--warmup", type=int, default=3, help="discarded calls per entry (>= 1: compilation)")
    args = ap.parse_args(argv)
    for name in ("threads", "d", "steps"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.warmup < 1:
        ap.error(f"--warmup must be >= 1 (the first call compiles), got {args.warmup}")
    if not args.params_m > 0:
        ap.error(f"--params-m must be > 0, got {args.params_m}")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    shapes = block_shapes(args.d, int(args.params_m * 1e6))
    n = sum(torch.Size(s).numel() for s in shapes)

    def streams(scale: float = 1.0, positive: bool = False) -> list[torch.Tensor]:
        ts = [torch.randn(s).flatten() * scale for s in shapes]
        return [t.abs() for t in ts] if positive else ts

    p, g, m, v, d = streams(), streams(1e-3), streams(1e-4), streams(1e-6, positive=True), streams(1e-3)
    f32 = 4 * n / 1e9  # GB of one float32 stream
    scalars = _as_compiled_scalars({"beta1": 0.9, "beta2": 0.999, "decay": 1.0, "step_size": 1e-3,
                                    "sqrt_bc2": 0.5, "eps": 1e-8}, p[0])
    rows: list[tuple[str, float, int]] = []

    params = [torch.nn.Parameter(t.clone()) for t in p]
    for q, gq in zip(params, g, strict=True):
        q.grad = gq.clone()
    fused = torch.optim.AdamW(params, lr=1e-3, fused=True)
    rows.append(("torch.AdamW[fused]", median_ms(fused.step, args.steps, args.warmup), 4))

    pairs, adam, adam_d = (list(zip(*ts, strict=True)) for ts in ((p, g), (p, g, m, v), (p, g, m, v, d)))
    c_dot = torch.compile(multi_tensor(dot), dynamic=True)
    rows.append(("sum(a*b) compiled", median_ms(lambda: c_dot(pairs, {}), args.steps, args.warmup), 2))

    c_adamw = torch.compile(multi_tensor(adamw_math), dynamic=True)
    rows.append(("AdamW math compiled", median_ms(lambda: c_adamw(adam, scalars), args.steps, args.warmup), 4))

    c_both = torch.compile(multi_tensor(adamw_math_with_sums), dynamic=True)
    both_scalars = {**scalars, **_as_compiled_scalars({"inv_s": 2.0}, p[0])}
    rows.append(("AdamW math + 4 sums compiled", median_ms(lambda: c_both(adam_d, both_scalars), args.steps,
                                                            args.warmup), 5 + 4))

    c_sums = torch.compile(multi_tensor(mechanic_sums), dynamic=True)
    sums_lists = [(None, x, gx, x, dx) for x, gx, dx in zip(p, g, d, strict=True)]
    for wide in (False, True):
        sc: dict[str, object] = {**_as_compiled_scalars({"offset_scale": 2.0}, p[0]), "kind": "offset", "wide": wide}
        ms = median_ms(functools.partial(c_sums, sums_lists, sc), args.steps, args.warmup)
        rows.append((f"Mechanic sums {'float64 (wide)' if wide else 'float32'}", ms, 3))

    base = rows[0][1]
    print(f"{len(shapes)} tensors, {n / 1e6:.2f}M float32 elements, {args.threads} thread(s), "
          f"torch {torch.__version__}")
    print()
    print("| entry | median ms | ÷ fused AdamW | streams read | GB/s read |")
    print("|---|---:|---:|---:|---:|")
    for name, ms, reads in rows:
        print(f"| {name} | {ms:.2f} | {ms / base:.2f} | {reads} | {reads * f32 / (ms / 1e3):.1f} |")


if __name__ == "__main__":
    main()
