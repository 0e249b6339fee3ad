"""Step time and optimizer-state memory of every registered descend optimizer vs torch's AdamW.

Parameters: transformer-block shapes (``d×d`` q/k/v/o, ``d×4d`` and ``4d×d`` MLP, their biases, two
layer norms) repeated until ``--params-m`` million elements, topped up with a ``rows×d`` embedding.
Defaults: ``d = 1024``, ≈15M parameters, float32, CPU.

Entries:

* ``torch.AdamW[for-loop|foreach|fused]`` -- the baselines; every ratio is relative to ``fused``;
* ``descend.<name>`` for every name in ``descend.optim.available()`` (or ``--optimizers``), with its
  registry defaults; ``descend.<name>[fused]`` too when its factory takes a ``fused`` flag.  Optimizers that
  need a closure are skipped (noted); ``matrix_only`` ones get the ≥2-D parameters only (noted);
* ``ref.<name>`` -- the reference package where one is installed (:data:`REFERENCES`).

Timing: the same fixed gradients every step; entries are interleaved step by step so that load from other
processes hits all alike; the first ``--warmup`` steps (compilation included) are discarded and the table
shows the median ``step()`` time, the ratio to fused AdamW, the first step's time (set-up, compilation) and
the bytes of optimizer state per parameter element.  An entry whose step takes longer than
``--max-step-s`` is dropped (noted).

Usage::

    python benchmarks/step_time.py                                # everything, ≈15M params
    python benchmarks/step_time.py --optimizers lion,adabelief --steps 30
    python benchmarks/step_time.py --params-m 4 --no-reference --no-fused
"""

from __future__ import annotations

import argparse
import inspect
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

import descend.optim as do


def _adabelief_ref(params: list[nn.Parameter]) -> torch.optim.Optimizer:
    from adabelief_pytorch import AdaBelief
    return AdaBelief(params, print_change_log=False)


def _lion_ref(params: list[nn.Parameter]) -> torch.optim.Optimizer:
    from lion_pytorch import Lion
    return Lion(params)


def _sophia_ref(params: list[nn.Parameter]) -> torch.optim.Optimizer:
    from sophia_opt import SophiaG
    return SophiaG(params)


#: Reference packages by registry name (defaults = the package's defaults).
REFERENCES: dict[str, Callable[[list[nn.Parameter]], torch.optim.Optimizer]] = {
    "adabelief": _adabelief_ref,
    "lion": _lion_ref,
    "sophia_g": _sophia_ref,
}


def block_shapes(d: int, target: int) -> list[tuple[int, ...]]:
    """Transformer-block parameter shapes totalling about ``target`` elements."""
    block = [(d, d)] * 4 + [(d,)] * 4 + [(4 * d, d), (4 * d,), (d, 4 * d), (d,)] + [(d,)] * 4
    per_block = sum(torch.Size(s).numel() for s in block)
    shapes = block * max(1, target // per_block)
    rest = target - sum(torch.Size(s).numel() for s in shapes)
    if rest >= d:
        shapes.append((rest // d, d))
    return shapes


@dataclass
class Entry:
    name: str
    build: Callable[[list[nn.Parameter]], torch.optim.Optimizer]
    matrix_only: bool = False
    params: list[nn.Parameter] = field(default_factory=list)
    opt: torch.optim.Optimizer | None = None
    times: list[float] = field(default_factory=list)
    note: str = ""


def entries(args: argparse.Namespace) -> tuple[list[Entry], list[str]]:
    out = [Entry("torch.AdamW[for-loop]", lambda p: torch.optim.AdamW(p, foreach=False)),
           Entry("torch.AdamW[foreach]", lambda p: torch.optim.AdamW(p, foreach=True)),
           Entry("torch.AdamW[fused]", lambda p: torch.optim.AdamW(p, fused=True))]
    notes: list[str] = []
    names = args.optimizers.split(",") if args.optimizers else do.available()
    for name in names:
        spec = do.get(name)
        if spec.requires_closure:
            notes.append(f"skipped descend.{name}: needs a closure (line search), not a fixed-gradient step")
            continue
        if spec.matrix_only:
            notes.append(f"descend.{name}: matrix-only, timed on the ≥2-D parameters only")
        out.append(Entry(f"descend.{name}", lambda p, s=spec: s.create(p), spec.matrix_only))
        if not args.no_fused and "fused" in inspect.signature(spec.factory).parameters:
            out.append(Entry(f"descend.{name}[fused]", lambda p, s=spec: s.create(p, fused=True), spec.matrix_only))
        if not args.no_reference and name in REFERENCES:
            out.append(Entry(f"ref.{name}", REFERENCES[name], spec.matrix_only))
    return out, notes


def state_bytes_per_param(opt: torch.optim.Optimizer, n: int) -> float:
    seen, total = set(), 0
    for st in opt.state.values():
        for v in st.values():
            if isinstance(v, torch.Tensor) and v.untyped_storage().data_ptr() not in seen:
                seen.add(v.untyped_storage().data_ptr())
                total += v.untyped_storage().nbytes()
    return total / n


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--params-m", type=float, default=15.0, help="millions of parameter elements")
    ap.add_argument("--d", type=int, default=1024, help="model width")
    ap.add_argument("--steps", type=int, default=20, help="timed steps per entry")
    ap.add_argument("--warmup", type=int, default=3, help="discarded steps per entry (compilation included)")
    ap.add_argument("--optimizers", default="", help="comma-separated registry names (default: all)")
    ap.add_argument("--no-fused", action="store_true", help="skip the fused (compiled) variants")
    ap.add_argument("--no-reference", action="store_true", help="skip the reference packages")
    ap.add_argument("--max-step-s", type=float, default=5.0, help="drop entries slower than this per step")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64", "bfloat16"])
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    torch.manual_seed(0)
    shapes = block_shapes(args.d, int(args.params_m * 1e6))
    init = [torch.randn(s, dtype=dtype) * 0.02 for s in shapes]
    grads = [torch.randn(s, dtype=dtype) * 1e-3 for s in shapes]
    n_all = sum(t.numel() for t in init)
    print(f"{len(shapes)} tensors, {n_all / 1e6:.2f}M parameters, {args.dtype}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}")

    todo, notes = entries(args)
    live: list[Entry] = []
    for e in todo:
        idx = [i for i, s in enumerate(shapes) if len(s) >= 2 or not e.matrix_only]
        e.params = [nn.Parameter(init[i].clone()) for i in idx]
        for p, i in zip(e.params, idx, strict=True):
            p.grad = grads[i]
        try:
            e.opt = e.build(e.params)
        except Exception as exc:  # a benchmark reports, it does not stop
            notes.append(f"skipped {e.name}: cannot build ({type(exc).__name__}: {exc})")
            continue
        live.append(e)

    for k in range(args.warmup + args.steps):
        print(f"round {k + 1}/{args.warmup + args.steps}: {len(live)} entries", file=sys.stderr, flush=True)
        for e in list(live):
            t0 = time.perf_counter()
            try:
                e.opt.step()
            except Exception as exc:
                notes.append(f"dropped {e.name}: step failed ({type(exc).__name__}: {exc})")
                live.remove(e)
                continue
            dt = time.perf_counter() - t0
            e.times.append(dt)
            if len(e.times) > 1 and dt > args.max_step_s:
                notes.append(f"dropped {e.name}: {dt:.1f} s per step > --max-step-s")
                live.remove(e)

    base = next((e for e in todo if e.name == "torch.AdamW[fused]"), None)
    base_t = statistics.median(base.times[args.warmup:]) if base and len(base.times) > args.warmup else float("nan")
    print(f"\n{'entry':<30} {'median ms':>10} {'IQR ms':>15} {'x fused AdamW':>14} {'first step s':>13} "
          f"{'state B/param':>14}")
    for e in live:
        timed = e.times[args.warmup:]
        if not timed:
            continue
        q = statistics.quantiles(timed, n=4) if len(timed) >= 2 else [timed[0]] * 3
        med = statistics.median(timed)
        n = sum(p.numel() for p in e.params)
        print(f"{e.name:<30} {med * 1e3:>10.2f} {q[0] * 1e3:>7.1f}-{q[2] * 1e3:<7.1f} {med / base_t:>14.2f} "
              f"{e.times[0]:>13.2f} {state_bytes_per_param(e.opt, n):>14.1f}")
    for note in notes:
        print("note:", note)


if __name__ == "__main__":
    main()
