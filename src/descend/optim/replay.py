"""Replay golden trajectories recorded from reference implementations.

A fixture (format ``descend-optimizer-fixture/1``) records a short run of an optimizer's reference code with
fully specified inputs: initial parameters, then either the gradient of every step (``open_loop``) or a loss
(``closed_loop``: least squares, logistic or softmax regression on stored data and mini-batches).  Replaying
it drives the descend optimizer registered for the fixture's ``optimizer`` key with the same inputs and
compares the parameters after every step, and any observable the fixture records (``step_size``, …), within
the fixture's own tolerance: ``|actual - expected| <= atol + rtol * |expected|``.

The replayer is driven by the format alone; optimizer-specific knowledge (how a reference's hyperparameter
names map onto descend's, FRUGAL's recorded random subsets, …) lives in each optimizer's registry entry
(:attr:`~descend.optim.registry.OptimizerSpec.from_fixture`).

Command line::

    python -m descend.optim.replay ../shared/reference/optimizers/*.json

prints one line per fixture (max abs error, max error/tolerance ratio) and exits with status 1 if any
fixture fails and 2 if any cannot be interpreted.  Nothing is skipped silently.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .._fixtures import Comparator, FixtureError, check_tolerance, expand_paths, read_json
from . import registry

__all__ = ["FixtureError", "ReplayResult", "load_fixture", "main", "replay", "replay_file"]

FORMAT = "descend-optimizer-fixture/1"
_DTYPES = {"float64": torch.float64, "float32": torch.float32}
_REQUIRED = ("format", "optimizer", "dtype", "mode", "hyperparameters", "param_order", "params",
             "trajectory", "tolerance")


@dataclass
class ReplayResult:
    """Outcome of replaying one fixture."""

    name: str
    optimizer: str
    steps: int
    max_abs_error: float
    max_ratio: float  # max over steps, elements and observables of |diff| / (atol + rtol |expected|)
    first_failing_step: int | None
    observable_ratios: dict[str, float] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.first_failing_step is None and math.isfinite(self.max_ratio) and self.max_ratio <= 1.0


def load_fixture(path: str | Path) -> dict[str, Any]:
    """Read and check a fixture file; raise :class:`FixtureError` if it is not a readable fixture."""
    fx = read_json(path)
    check_fixture(fx, str(path))
    return fx


def check_fixture(fx: Any, where: str = "fixture") -> None:
    """Raise :class:`FixtureError` unless ``fx`` has the keys and values the format requires."""
    if not isinstance(fx, dict):
        raise FixtureError(f"{where}: a fixture is a JSON object")
    if fx.get("format") != FORMAT:
        raise FixtureError(f"{where}: format {fx.get('format')!r} is not {FORMAT!r}")
    missing = [k for k in _REQUIRED if k not in fx]
    if missing:
        raise FixtureError(f"{where}: missing keys {missing}")
    if fx["dtype"] not in _DTYPES:
        raise FixtureError(f"{where}: dtype {fx['dtype']!r} is not one of {sorted(_DTYPES)}")
    if fx["mode"] == "open_loop":
        if len(fx.get("grads", ())) != len(fx["trajectory"]):
            raise FixtureError(f"{where}: open loop needs one entry of 'grads' per trajectory step")
    elif fx["mode"] == "closed_loop":
        if "problem" not in fx:
            raise FixtureError(f"{where}: closed loop needs a 'problem'")
        kind = fx["problem"].get("kind")
        if kind not in _PROBLEMS:
            raise FixtureError(f"{where}: unknown problem kind {kind!r} (known: {sorted(_PROBLEMS)})")
    else:
        raise FixtureError(f"{where}: unknown mode {fx['mode']!r}")
    check_tolerance(fx, where)
    for name in fx["param_order"]:
        if name not in fx["params"]:
            raise FixtureError(f"{where}: parameter {name!r} of param_order has no entry in params")


# ----------------------------------------------------------------------------------------------------
# closed-loop problems: loss(params, rows) in the fixture's dtype, exactly as the format describes them


def _rows(t: torch.Tensor, batch: Sequence[int] | None) -> torch.Tensor:
    return t if batch is None else t[torch.as_tensor(batch, dtype=torch.long)]


def _least_squares(prob: Mapping[str, Any], P: Mapping[str, torch.Tensor], dt: torch.dtype,
                   batch: Sequence[int] | None) -> torch.Tensor:
    X, Y = torch.tensor(prob["X"], dtype=dt), torch.tensor(prob["Y"], dtype=dt)
    pred = X @ P["weight"].T + P["bias"]
    return 0.5 * ((_rows(pred, batch) - _rows(Y, batch)) ** 2).mean()


def _logistic(prob: Mapping[str, Any], P: Mapping[str, torch.Tensor], dt: torch.dtype,
              batch: Sequence[int] | None) -> torch.Tensor:
    X, y = torch.tensor(prob["X"], dtype=dt), torch.tensor(prob["y"], dtype=dt)
    z = (X @ P["weight"].T + P["bias"])[:, 0]
    loss = F.binary_cross_entropy_with_logits(_rows(z, batch), _rows(y, batch), reduction="mean")
    return loss + 0.5 * prob.get("l2", 0.0) * (P["weight"] ** 2).sum()


def _softmax_regression(prob: Mapping[str, Any], P: Mapping[str, torch.Tensor], dt: torch.dtype,
                        batch: Sequence[int] | None) -> torch.Tensor:
    X, y = torch.tensor(prob["X"], dtype=dt), torch.tensor(prob["y"], dtype=torch.long)
    logits = X @ P["weight"].T + P["bias"]
    loss = F.cross_entropy(_rows(logits, batch), _rows(y, batch), reduction="mean")
    return loss + 0.5 * prob.get("l2", 0.0) * (P["weight"] ** 2).sum()


_PROBLEMS: dict[str, Callable[..., torch.Tensor]] = {
    "least_squares": _least_squares,
    "logistic": _logistic,
    "softmax_regression": _softmax_regression,
}


# ----------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _default_dtype(name: str | None) -> Iterator[None]:
    if name is None:
        yield
        return
    if name not in _DTYPES:
        raise FixtureError(f"replay.torch_default_dtype {name!r} is not one of {sorted(_DTYPES)}")
    old = torch.get_default_dtype()
    torch.set_default_dtype(_DTYPES[name])
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def replay(fx: Mapping[str, Any], name: str = "fixture") -> ReplayResult:
    """Replay one (already loaded) fixture against the registered descend optimizer.

    Raises :class:`FixtureError` if the fixture cannot be interpreted (unknown optimizer, malformed
    content); a numerical mismatch is reported in the result, not raised.
    """
    check_fixture(fx, name)
    try:
        spec = registry.spec_for_fixture(fx["optimizer"])
    except LookupError as exc:
        raise FixtureError(f"{name}: {exc}") from exc
    dt = _DTYPES[fx["dtype"]]
    order = list(fx["param_order"])
    shapes = {n: tuple(fx["params"][n]["shape"]) for n in order}
    P = {n: torch.tensor(fx["params"][n]["init"], dtype=dt).reshape(shapes[n]).requires_grad_(True)
         for n in order}
    replay_opts = fx.get("replay", {}) or {}
    extra = fx.get("extra", {}) or {}
    step_kwargs = dict(replay_opts.get("step_kwargs", {}))
    cmp = Comparator(fx["tolerance"]["rtol"], fx["tolerance"]["atol"])
    obs_cmp: dict[str, Comparator] = {}
    hessian_updates = {int(u["after_step"]): u["grads"] for u in extra.get("hessian_updates", [])}
    steps = len(fx["trajectory"])

    with _default_dtype(replay_opts.get("torch_default_dtype")):
        try:
            if spec.from_fixture is not None:
                opt = spec.from_fixture(fx, P)
            else:
                opt = spec.factory([P[n] for n in order], **fx["hyperparameters"])
        except (TypeError, ValueError, KeyError) as exc:
            raise FixtureError(f"{name}: cannot build {spec.name} from the fixture's hyperparameters: "
                               f"{exc}") from exc
        if hessian_updates and not hasattr(opt, "update_hessian"):
            raise FixtureError(f"{name}: records Hessian updates but {spec.name} has no update_hessian()")

        if fx["mode"] == "closed_loop":
            problem = fx["problem"]
            loss_of = _PROBLEMS[problem["kind"]]
            batches = problem.get("batches")
            if "steps" in replay_opts and int(replay_opts["steps"]) != steps:
                raise FixtureError(f"{name}: replay.steps disagrees with the trajectory length")

        for t in range(steps):
            if fx["mode"] == "open_loop":
                for n in order:
                    P[n].grad = torch.tensor(fx["grads"][t][n], dtype=dt).reshape(shapes[n])
                opt.step(**step_kwargs)
            else:
                batch = None if batches is None else batches[t]

                def loss_fn(batch: Sequence[int] | None = batch) -> torch.Tensor:
                    return loss_of(problem, P, dt, batch)

                if spec.requires_closure:
                    opt.step(loss_fn, **step_kwargs)
                else:
                    def closure(loss_fn: Callable[[], torch.Tensor] = loss_fn) -> torch.Tensor:
                        opt.zero_grad()
                        with torch.enable_grad():
                            loss = loss_fn()
                            loss.backward()
                        return loss
                    opt.step(closure, **step_kwargs)

            for n in order:
                expected = torch.tensor(fx["trajectory"][t][n], dtype=torch.float64)
                cmp.compare(P[n], expected, t + 1)
            if spec.observables is not None:
                for key, value in spec.observables(opt).items():
                    recorded = extra.get(key)
                    if isinstance(recorded, list) and len(recorded) == steps:
                        c = obs_cmp.setdefault(key, Comparator(cmp.rtol, cmp.atol))
                        c.compare([float(value)], [float(recorded[t])], t + 1)
            if t + 1 in hessian_updates:
                g = hessian_updates[t + 1]
                for n in order:
                    P[n].grad = torch.tensor(g[n], dtype=dt).reshape(shapes[n])
                opt.update_hessian()

    first_fail = cmp.first_fail
    for c in obs_cmp.values():
        if c.first_fail is not None:
            first_fail = c.first_fail if first_fail is None else min(first_fail, c.first_fail)
    return ReplayResult(
        name=name,
        optimizer=spec.name,
        steps=steps,
        max_abs_error=cmp.max_abs,
        max_ratio=max([cmp.max_ratio, *(c.max_ratio for c in obs_cmp.values())]),
        first_failing_step=first_fail,
        observable_ratios={k: c.max_ratio for k, c in obs_cmp.items()},
    )


def replay_file(path: str | Path) -> ReplayResult:
    """Load and replay the fixture at ``path``."""
    fx = load_fixture(path)
    return replay(fx, Path(path).name)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the process exit status."""
    import descend.optim  # noqa: F401  (registers every optimizer)

    ap = argparse.ArgumentParser(prog="python -m descend.optim.replay", description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="+", help="fixture files (a directory means every *.json in it)")
    args = ap.parse_args(argv)
    files = expand_paths(args.files)
    if not files:
        print("no fixture files given", file=sys.stderr)
        return 2
    failed = unreadable = 0
    width = max(len(f.name) for f in files)
    print(f"{'fixture':<{width}}  {'optimizer':<14} {'steps':>5} {'max|err|':>10} {'err/tol':>9}  result")
    for f in files:
        try:
            r = replay_file(f)
        except FixtureError as exc:
            unreadable += 1
            print(f"{f.name:<{width}}  CANNOT INTERPRET: {exc}")
            continue
        status = "ok" if r.passed else f"FAIL (first at step {r.first_failing_step})"
        if not r.passed:
            failed += 1
        obs = "".join(f"  {k} {v:.2g}" for k, v in r.observable_ratios.items())
        print(f"{f.name:<{width}}  {r.optimizer:<14} {r.steps:>5} {r.max_abs_error:>10.2e} "
              f"{r.max_ratio:>9.2e}  {status}{obs}")
    print(f"{len(files) - failed - unreadable} passed, {failed} failed, {unreadable} not interpretable")
    return 2 if unreadable else (1 if failed else 0)


if __name__ == "__main__":
    sys.exit(main())
