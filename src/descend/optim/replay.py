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

    python -m descend.optim.replay
    python -m descend.optim.replay ../shared/reference/optimizers/*.json

replays, with no path, the fixtures packaged with descend (:mod:`descend.fixtures`, ``optimizers``: a copy of
``shared/reference/optimizers/``, so a pip install can replay them), or the given files and directories; it
prints one line per fixture -- max abs error and max error/tolerance ratio, or why it was not replayed -- and
exits with the status of the worst file: 0 every file replayed within tolerance (a well-formed fixture of an
optimizer descend does not register is listed as ``skipped: no registered optimizer for fixture optimizer
'X'``; status 3 with ``--strict``), 1 a fixture fails, 2 a file is not a valid fixture (``REFUSED``, one line
naming the file, the place and the problem: every file is validated against the whole format before it is
replayed) or the replay raised (``ERROR``).  Nothing is skipped silently.
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

from .._fixtures import (
    OPTIMIZER_FORMAT,
    STEP_OBSERVABLES,
    Comparator,
    FixtureError,
    NotRegistered,
    Outcome,
    check_optimizer_fixture,
    read_json,
    run_cli,
)
from . import registry

__all__ = ["FixtureError", "NotRegistered", "ReplayResult", "check_fixture", "load_fixture", "main", "replay",
           "replay_file", "spec_for"]

FORMAT = OPTIMIZER_FORMAT
_DTYPES = {"float64": torch.float64, "float32": torch.float32}


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
    unchecked: list[str] = field(default_factory=list)  # recorded observables the optimizer does not report
    compared: int = 0  # number of parameter values compared

    @property
    def passed(self) -> bool:
        return (self.first_failing_step is None and self.compared > 0 and math.isfinite(self.max_ratio)
                and self.max_ratio <= 1.0)


def load_fixture(path: str | Path) -> dict[str, Any]:
    """Read and validate a fixture file; raise :class:`FixtureError` (one line) if it is not a valid fixture."""
    fx = read_json(path)
    check_fixture(fx, Path(path).name)
    return fx


def check_fixture(fx: Any, where: str = "fixture") -> None:
    """Raise :class:`FixtureError` unless ``fx`` is a valid fixture of this format (the whole format: keys,
    types, finite numbers, array lengths against shapes and steps, a tolerance that can fail); see
    :func:`descend._fixtures.check_optimizer_fixture`."""
    check_optimizer_fixture(fx, where)


def spec_for(fx: Mapping[str, Any], name: str) -> registry.OptimizerSpec:
    """The registered spec that replays ``fx``; :class:`NotRegistered` if there is none."""
    key = fx["optimizer"]
    claimed = [n for n in registry.available() if key in getattr(registry.get(n), "fixture_names", ())]
    if not claimed:
        raise NotRegistered(f"{name}: no registered optimizer for fixture optimizer {key!r}")
    try:
        return registry.spec_for_fixture(key)
    except LookupError as exc:
        raise FixtureError(f"{name}: {exc}") from exc


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
    return _replay(fx, name)


def _replay(fx: Mapping[str, Any], name: str) -> ReplayResult:
    """:func:`replay` of a fixture that :func:`check_fixture` accepted."""
    spec = spec_for(fx, name)
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
                opt: Any = spec.from_fixture(fx, P)  # step(closure) and update_hessian() vary by optimizer
            else:
                opt = spec.factory([P[n] for n in order], **fx["hyperparameters"])
        except (TypeError, ValueError, LookupError) as exc:
            raise FixtureError(f"{name}: cannot build {spec.name} from the fixture's hyperparameters: "
                               f"{exc}") from exc
        if hessian_updates and not hasattr(opt, "update_hessian"):
            raise FixtureError(f"{name}: records Hessian updates but {spec.name} has no update_hessian()")

        if fx["mode"] == "closed_loop":
            problem = fx["problem"]
            loss_of = _PROBLEMS[problem["kind"]]
            batches = problem.get("batches")

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
                    if key in extra and key in STEP_OBSERVABLES:  # validated: one finite value per step
                        c = obs_cmp.setdefault(key, Comparator(cmp.rtol, cmp.atol))
                        c.compare([float(value)], [float(extra[key][t])], t + 1)
            if t + 1 in hessian_updates:
                g = hessian_updates[t + 1]
                for n in order:
                    P[n].grad = torch.tensor(g[n], dtype=dt).reshape(shapes[n])
                opt.update_hessian()

    first_fail = cmp.first_fail
    for c in obs_cmp.values():
        if c.first_fail is not None:
            first_fail = c.first_fail if first_fail is None else min(first_fail, c.first_fail)
    ratios = [cmp.max_ratio, *(c.max_ratio for c in obs_cmp.values())]
    return ReplayResult(
        name=name,
        optimizer=spec.name,
        steps=steps,
        max_abs_error=cmp.max_abs,
        max_ratio=math.inf if any(math.isnan(r) for r in ratios) else max(ratios),
        first_failing_step=first_fail,
        observable_ratios={k: c.max_ratio for k, c in obs_cmp.items()},
        unchecked=sorted(k for k in STEP_OBSERVABLES if k in extra and k not in obs_cmp),
        compared=cmp.count,
    )


def replay_file(path: str | Path) -> ReplayResult:
    """Load and replay the fixture at ``path``."""
    return _replay(load_fixture(path), Path(path).name)


def _replay_one(path: Path, args: argparse.Namespace) -> Outcome:
    r = replay_file(path)
    obs = "".join(f"  {k} {v:.2g}" for k, v in r.observable_ratios.items())
    unchecked = f"  unchecked: {', '.join(r.unchecked)}" if r.unchecked else ""
    return Outcome(passed=r.passed,
                   columns=f"{r.optimizer:<14} {r.steps:>5} {r.max_abs_error:>10.2e} {r.max_ratio:>9.2e}",
                   fail_detail=f"first at step {r.first_failing_step}", notes=obs + unchecked)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the process exit status (see the module docstring)."""
    import descend.optim  # noqa: F401  (registers every optimizer)

    return run_cli("python -m descend.optim.replay", __doc__.split("\n\n")[0],
                   f"{'optimizer':<14} {'steps':>5} {'max|err|':>10} {'err/tol':>9}", _replay_one, argv,
                   packaged="optimizers")


if __name__ == "__main__":
    sys.exit(main())
