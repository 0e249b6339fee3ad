r"""One backtracking engine for descend's stochastic line searches (:class:`~.sls.SLS`,
:class:`~.adam_sls.LayerwiseAdamSLS`, :class:`~.salsa.SaLSA`).

A line-search step is three choices over one loop, as in optax's ``scale_by_backtracking_linesearch``
(which composes after any direction):

* a **direction** :math:`d` per parameter (:mod:`.directions`: the gradient, Adam's preconditioned gradient
  or Adam's preconditioned momentum); the trial points are :math:`x_0 - t\,d` (:class:`Line`);
* an **acceptance rule** ``rule(t, f_trial) -> Verdict`` (Armijo, Goldstein, smoothed Armijo), written in
  each algorithm's file with that reference's quirks; a trial whose loss is not finite is rejected before
  the rule sees it;
* a **step-size update**: the rule between steps (:func:`reset_step_size`, or SaLSa's growth factor) and
  within the search (:class:`Backtracking`: shrink on ``SHORTER``, grow on ``LONGER``, bounded).

:func:`backtrack` runs the trials, :func:`settle` leaves the parameters where the algorithm's reference
leaves them, and :class:`LineSearchOptimizer` is the ``torch.optim.Optimizer`` frame around it: closure,
state, validation, copying and loading.

**Closures: both conventions work.**  ``opt.step(closure)`` where ``closure()`` re-evaluates the loss on the
*same* mini-batch and returns it, either

* *without* calling ``backward()`` (descend's convention, the cheap one): the optimizer clears the
  gradients, evaluates the closure once with autograd, calls ``backward()`` itself, and evaluates every
  line-search trial under ``torch.no_grad()``; or
* the torch convention, as for ``torch.optim.LBFGS`` and as PyTorch Lightning calls it:
  ``opt.zero_grad(); loss = f(); loss.backward(); return loss`` (the returned loss may be detached).
  Detected at each step's first evaluation (some parameter has a gradient after it); the trials then run
  with autograd enabled, since the closure calls ``backward()`` (one backward per trial, as in LBFGS), and
  the gradient at the start point is kept aside.

In both conventions ``p.grad`` holds the gradient at the start point after ``step()``, which returns the
(detached) loss at the start point.  A closure that back-propagates may return the loss as a Python number
(``loss.item()``), as LBFGS allows.  If no parameter has a gradient after the first evaluation (the loss
does not depend on them, or the closure returned ``None``), ``step`` is a no-op, as for every torch
optimizer: parameters and state are unchanged.  If the closure raises during the search, the parameters
are restored to where they were before the step and the optimizer state is untouched (state is written
only when the step completes), then the exception propagates.

**Randomness.**  The references (``IssamLaradji/sls``, ``SaLSa-Optimizer``) reseed the global numpy and torch
RNGs from ``time.time()`` around every closure call so that dropout masks repeat.  descend never reseeds:
either the closure is deterministic (``model.eval()``-style, or its own fixed generator), or pass
``repeat_rng=True``: the torch CPU (and, when initialised, CUDA) RNG state is captured before the first
evaluation and restored before every trial, so every evaluation of one step draws the same random numbers;
after the step the RNG continues from where the first evaluation left it, as if the closure had run once.

**Non-finite values.**  A trial whose loss is not finite is a failed trial (the step size shrinks), never
an accepted point.  If the loss or the gradient at the start point is not finite, the step is skipped:
parameters and optimizer state are left untouched and the non-finite loss is returned.

**State.**  Every scalar of the algorithms (step sizes, counters, averages) is a 0-d float64 tensor in
``self.state[p]`` of the parameters it concerns (a per-group scalar is replicated in every parameter of the
group that has state, an optimizer-wide one in every parameter with state), so ``state_dict()`` round-trips
it and parameters without gradients get no state; a state_dict holding Python numbers instead (older
checkpoints) loads too.  ``load_state_dict`` keeps scalars in float64 and moments in the dtype of this
parameter's moments (float32 for bfloat16/float16 parameters, which torch's loader would round), checks that every
parameter's state has exactly this optimizer's keys and validates the saved hyperparameters like the
constructor; ``add_param_group`` validates too.  ``copy.deepcopy`` and pickle keep every public attribute
(``repeat_rng``, ``warmup_steps``, ``last_step_info``).

**Hyperparameters** may be one-element tensors (as torch schedulers sometimes store ``lr``); they are read as
Python numbers at each step.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from .._state import load_state_dict
from .._validate import check_choice, check_float, check_int, check_no_sparse_or_complex

__all__ = [
    "AcceptanceRule",
    "Backtracking",
    "Line",
    "LineSearchOptimizer",
    "SearchResult",
    "StepContext",
    "Verdict",
    "backtrack",
    "check_reset",
    "observables",
    "reset_step_size",
    "settle",
]

Closure = Callable[[], Any]
Loss = torch.Tensor | float  # what a closure returns: a one-element tensor, or a number if it back-propagates
_LOW = (torch.bfloat16, torch.float16)
_MOMENTS = frozenset({"exp_avg", "exp_avg_sq"})  # per-coordinate state; every other key is a scalar
_RngState = tuple[torch.Tensor, list[torch.Tensor] | None]


# ---------------------------------------------------------------------------------------------- the search


class Verdict(enum.Enum):
    """What an acceptance rule says about one trial step."""

    ACCEPT = "accept"
    SHORTER = "shorter"  # reject; try a shorter step
    LONGER = "longer"  # reject; try a longer step (Goldstein's "too short")


AcceptanceRule = Callable[[float, float], Verdict]  # rule(step, finite trial loss)


@dataclass(frozen=True)
class Backtracking:
    """How the step size moves within one search, and how many trials it may take."""

    decrease: float
    max_trials: int
    increase: float = 1.0
    max_step: float = math.inf
    min_step: float = 0.0

    def shorter(self, t: float) -> float:
        return max(t * self.decrease, self.min_step)

    def longer(self, t: float) -> float:
        return min(t * self.increase, self.max_step)


@dataclass(frozen=True)
class SearchResult:
    step: float  # the accepted step, or the last one tried, shrunk/grown once more
    accepted: bool
    trials: int
    at: float | None  # the step at which the parameters sit (None: at the start point)
    last_finite: bool  # the last trial's loss was finite


class Line:
    """The points ``x0 - t * d`` of some parameters (``x0``: their values at the start of the step).

    ``fused=True`` computes them as ``x0 + (-t) d`` in one operation (one rounding where the CPU fuses the
    multiply-add, as the Adam-based references do); ``fused=False`` as ``x0 - (t d)``, two roundings, as the
    SLS reference does.  The golden fixtures tell the two apart."""

    def __init__(self, params: Sequence[torch.Tensor], starts: Sequence[torch.Tensor],
                 dirs: Sequence[torch.Tensor], *, fused: bool = True) -> None:
        self.params, self.starts, self.dirs = list(params), list(starts), list(dirs)
        self._buf: list[torch.Tensor] | None = None if fused else [torch.empty_like(p) for p in self.params]

    def place(self, t: float) -> None:
        if self._buf is None:
            for p, x, d in zip(self.params, self.starts, self.dirs, strict=True):
                p.copy_(x)
                p.add_(d, alpha=-t)
        else:
            for p, x, d, b in zip(self.params, self.starts, self.dirs, self._buf, strict=True):
                torch.mul(d, t, out=b)
                torch.sub(x, b, out=p)

    def restore(self) -> None:
        for p, x in zip(self.params, self.starts, strict=True):
            p.copy_(x)


def backtrack(lines: Sequence[Line], step: float, rule: AcceptanceRule, evaluate: Callable[[], float],
              bt: Backtracking) -> SearchResult:
    """Try ``x0 - t d`` on every line from ``t = step`` until ``rule`` accepts or ``bt.max_trials`` trials."""
    at: float | None = None
    last_finite = True
    for n in range(1, bt.max_trials + 1):
        for line in lines:
            line.place(step)
        at = step
        f = evaluate()
        last_finite = math.isfinite(f)
        verdict = rule(step, f) if last_finite else Verdict.SHORTER
        if verdict is Verdict.ACCEPT:
            return SearchResult(step, True, n, at, True)
        step = bt.longer(step) if verdict is Verdict.LONGER else bt.shorter(step)
    return SearchResult(step, False, bt.max_trials, at, last_finite)


def settle(lines: Sequence[Line], result: SearchResult, lr: float, *, fallback: float | None = None) -> None:
    """Leave the parameters at ``lr`` times the step the search ended on, along the search direction.

    Without acceptance: at ``fallback`` if given (SLS's Armijo: ``1e-6``), else at the last trial point
    (the references' behaviour) unless its loss was not finite (then at the start point)."""
    at = result.at
    if not result.accepted:
        if fallback is not None:
            for line in lines:
                line.place(fallback)
            at = fallback
        elif not result.last_finite:
            for line in lines:
                line.restore()
            at = None
    if at is not None and lr != 1.0:
        for line in lines:
            line.place(lr * at)


# ---------------------------------------------------------------------------------------------- step sizes


def reset_step_size(eta: float, h: Mapping[str, Any]) -> float:
    """The step size a search starts from (Vaswani et al.'s ``reset_option``): 0 keeps the last accepted
    one, 1 grows it by ``gamma ** (1 / n_batches_per_epoch)``, 2 restarts from ``init_step_size``."""
    opt = h["reset_option"]
    if opt == 1:
        return eta * h["gamma"] ** (1.0 / h["n_batches_per_epoch"])
    if opt == 2:
        return float(h["init_step_size"])
    return eta


def check_reset(h: Mapping[str, Any]) -> None:
    check_float("gamma", h["gamma"], 0.0, low_open=True)
    check_int("n_batches_per_epoch", h["n_batches_per_epoch"], 1)
    check_choice("reset_option", h["reset_option"], (0, 1, 2))


def check_common(h: Mapping[str, Any]) -> None:
    """Hyperparameters every line search has."""
    check_float("lr", h["lr"], 0.0)
    check_float("init_step_size", h["init_step_size"], 0.0, low_open=True)
    check_int("max_trials", h["max_trials"], 1)


def hyper(group: Mapping[str, Any]) -> dict[str, Any]:
    """The group's hyperparameters with one-element tensors read as Python numbers."""
    return {k: (v.item() if isinstance(v, torch.Tensor) else v) for k, v in group.items()
            if k not in ("params", "param_names")}


def observables(opt: torch.optim.Optimizer) -> Mapping[str, float]:
    """What a line search reports after each step (the fixture observables): ``last_step_info``."""
    return dict(getattr(opt, "last_step_info", {}))


# ---------------------------------------------------------------------------------------------- closures


def _rng_snapshot() -> _RngState:
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    return torch.get_rng_state(), cuda


def _rng_restore(snap: _RngState) -> None:
    torch.set_rng_state(snap[0])
    if snap[1] is not None:
        torch.cuda.set_rng_state_all(snap[1])


class _ClosureRunner:
    """Runs a user closure, in either convention, for one ``step()``."""

    def __init__(self, closure: Closure | None, optimizer: LineSearchOptimizer) -> None:
        name = optimizer._name
        if closure is None or not callable(closure):
            raise RuntimeError(
                f"{name} is a line search and needs a closure: opt.step(closure), where closure() re-evaluates "
                "the loss on the same mini-batch and returns it, either without calling backward() (cheaper) "
                "or as for LBFGS (opt.zero_grad(); loss = f(); loss.backward(); return loss)")
        self._closure, self._opt, self._name = closure, optimizer, name
        self._repeat_rng = optimizer.repeat_rng
        self._before: _RngState | None = None
        self._after: _RngState | None = None
        self._params = [p for g in optimizer.param_groups for p in g["params"]]
        self.backpropagates = False  # the closure calls backward() itself (torch convention)
        self.start_grads: dict[torch.Tensor, torch.Tensor] = {}
        self.trials = 0

    def _check(self, loss: Any) -> Loss | None:
        number = isinstance(loss, (int, float)) and not isinstance(loss, bool)
        if loss is not None and not number and not (isinstance(loss, torch.Tensor) and loss.numel() == 1):
            raise TypeError(f"{self._name}: the closure must return the loss as a one-element tensor (or a "
                            f"number, if it calls backward() itself), got {type(loss).__name__}")
        return loss

    def first(self) -> Loss | None:
        """Evaluate the loss and the gradient at the start point; return the detached loss."""
        self._opt.zero_grad(set_to_none=True)
        if self._repeat_rng:
            self._before = _rng_snapshot()
        with torch.enable_grad():
            loss = self._check(self._closure())
            self.backpropagates = any(p.grad is not None for p in self._params)
            if not self.backpropagates and isinstance(loss, torch.Tensor) and loss.requires_grad:
                loss.backward()
        if self._repeat_rng:
            self._after = _rng_snapshot()
        grads = {p: p.grad for p in self._params if p.grad is not None}
        if grads and loss is None:
            raise TypeError(f"{self._name}: the closure returned None; a line search needs the loss")
        # the closure zeroes and refills the gradients at every trial: keep the start point's aside
        self.start_grads = {p: g.detach().clone() for p, g in grads.items()} if self.backpropagates else grads
        return loss.detach() if isinstance(loss, torch.Tensor) else loss

    def trial(self) -> float:
        """The loss at the current parameters (without autograd unless the closure back-propagates)."""
        if self._before is not None:
            _rng_restore(self._before)
        with torch.enable_grad() if self.backpropagates else torch.no_grad():
            loss = self._check(self._closure())
        self.trials += 1
        if loss is None:
            raise TypeError(f"{self._name}: the closure returned None; a line search needs the loss")
        return float(loss)

    def finish(self) -> None:
        """Put the start point's gradients back in ``p.grad``; with ``repeat_rng``, leave the RNG where the
        first evaluation left it."""
        if self.backpropagates or self.trials:
            for p in self._params:
                p.grad = self.start_grads.get(p)
        if self._after is not None:
            _rng_restore(self._after)


# ---------------------------------------------------------------------------------------------- the frame


class StepContext:
    """What an algorithm sees during one step: the start point, its loss and gradients, the trial
    evaluator, and the state it reads (``self.state``, untouched) and writes (pending until the step ends)."""

    def __init__(self, optimizer: LineSearchOptimizer, f0: float, runner: _ClosureRunner,
                 starts: dict[torch.Tensor, torch.Tensor]) -> None:
        self.f0 = f0
        self.grads = runner.start_grads
        self.starts = starts
        self.state = optimizer.state
        self.pending: dict[torch.Tensor, dict[str, Any]] = {}
        self._runner = runner

    @property
    def trials(self) -> int:
        return self._runner.trials

    def evaluate(self) -> float:
        return self._runner.trial()

    def line(self, params: Sequence[torch.Tensor], dirs: Sequence[torch.Tensor], *, fused: bool = True) -> Line:
        return Line(params, [self.starts[p] for p in params], dirs, fused=fused)

    def get(self, p: torch.Tensor, key: str) -> Any:
        """The value of ``state[p][key]`` before this step, or ``None``."""
        st = self.state.get(p)
        return None if not st else st.get(key)

    def put(self, p: torch.Tensor, key: str, value: Any) -> None:
        self.pending.setdefault(p, {})[key] = value

    def read(self, params: Iterable[torch.Tensor], defaults: Mapping[str, float]) -> dict[str, float]:
        """The replicated scalars ``defaults`` keys from the first of ``params`` whose state holds them."""
        for p in params:
            st = self.state.get(p)
            if st and all(k in st for k in defaults):
                return {k: float(st[k]) for k in defaults}
        return dict(defaults)

    def write(self, params: Iterable[torch.Tensor], values: Mapping[str, float]) -> None:
        """Store ``values`` as 0-d float64 tensors for every given parameter that has a gradient or state."""
        for p in params:
            if p in self.grads or p in self.state:
                for k, v in values.items():
                    self.put(p, k, torch.tensor(v, dtype=torch.float64))


class LineSearchOptimizer(torch.optim.Optimizer):
    """The ``torch.optim.Optimizer`` frame of a line search (see the module docstring).

    An algorithm sets ``_name`` and ``_state_keys`` (the keys of a parameter's state), implements
    ``_check(hyperparameters)`` (raises ``ValueError`` naming the argument) and either :meth:`_group_step`
    (one search per parameter group) or :meth:`_step` (the whole step).
    """

    _name: ClassVar[str] = "line search"
    _state_keys: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any], *, repeat_rng: bool) -> None:
        self._check(defaults)
        check_choice("repeat_rng", repeat_rng, (True, False))
        self.repeat_rng = bool(repeat_rng)
        self.last_step_info: dict[str, float] = {}
        super().__init__(params, defaults)

    @staticmethod
    def _check(h: Mapping[str, Any]) -> None:
        raise NotImplementedError

    # -- torch.optim.Optimizer API ---------------------------------------------------------------------

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        if isinstance(param_group, Mapping):  # torch rejects anything else
            self._check({**self.defaults, **hyper(param_group)})
        super().add_param_group(param_group)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        name = type(self).__name__
        groups = state_dict.get("param_groups") if isinstance(state_dict, Mapping) else None
        if not isinstance(groups, list) or not isinstance(state_dict.get("state"), Mapping):
            raise ValueError(f"{name}.load_state_dict: expected a dict with 'state' and 'param_groups'")
        required = [k for k in self.defaults if k != "differentiable"]
        for i, g in enumerate(groups):
            missing = [k for k in required if k not in g]
            if missing:
                raise ValueError(f"{name}.load_state_dict: param group {i} lacks {missing} "
                                 "(a state_dict of another optimizer?)")
            self._check(g)
        moments = self._state_keys & _MOMENTS  # absent for parameters that never moved (a group with lr = 0)
        for pid, st in state_dict["state"].items():
            keys = set(st)
            ok = self._state_keys - moments <= keys <= self._state_keys and keys & moments in (set(), moments)
            if st and not ok:
                raise ValueError(f"{name}.load_state_dict: the state of parameter {pid} has keys {sorted(st)}, "
                                 f"expected {sorted(self._state_keys)} (a state_dict of another optimizer?)")
        # descend's one loader (validated above with the line searches' own rules): scalars keep their saved
        # float64, moments take the dtype this parameter's moments have (float32 for bfloat16/float16
        # parameters), e.g. a float64 run's state loaded into float32 parameters
        load_state_dict(self, state_dict)

    def _state_dtype(self, p: torch.Tensor, group: Mapping[str, Any], key: str) -> torch.dtype | None:
        """The dtype :func:`descend.optim._state.load_state_dict` gives a loaded state entry."""
        return state_dtype(p) if key in _MOMENTS else None

    def __getstate__(self) -> dict[str, Any]:
        # torch keeps only defaults, state and param_groups; keep every public attribute
        state = super().__getstate__()
        state.update({k: v for k, v in self.__dict__.items() if not k.startswith("_") and k not in state})
        return state

    @torch.no_grad()
    def step(self, closure: Closure | None = None) -> Loss | None:  # type: ignore[override]
        for group in self.param_groups:
            self._check(group)
        runner = _ClosureRunner(closure, self)
        try:
            loss = runner.first()
            grads = runner.start_grads
            check_no_sparse_or_complex(self._name, grads)
            info: dict[str, float] = {} if loss is None else {"loss": float(loss)}
            if grads and _finite(loss, grads.values()):
                starts = {p: p.detach().clone() for p in grads}
                ctx = StepContext(self, float(loss), runner, starts)  # type: ignore[arg-type]  # finite: not None
                try:
                    info.update(self._step(ctx))
                except BaseException:
                    for p, x in starts.items():
                        p.copy_(x)
                    raise
                for p, values in ctx.pending.items():
                    self.state[p].update(values)
            self.last_step_info = info
        finally:
            runner.finish()
        return loss

    # -- the algorithm's part -------------------------------------------------------------------------

    def _step(self, ctx: StepContext) -> dict[str, float]:
        """The step after a finite start point: by default one :meth:`_group_step` per group with a gradient
        and a nonzero ``lr``; the info of the first group whose info has a step size."""
        info: dict[str, float] = {}
        for group in self.param_groups:
            params = [p for p in group["params"] if p in ctx.grads]
            h = hyper(group)
            if params and h["lr"] != 0:
                g_info = self._group_step(ctx, group, h, params)
                if "step_size" not in info:
                    info.update(g_info)
        return info

    def _group_step(self, ctx: StepContext, group: Mapping[str, Any], h: Mapping[str, Any],
                    params: list[torch.Tensor]) -> dict[str, float]:
        """Search and update one group (``h``: its hyperparameters; ``params``: those with a gradient)."""
        raise NotImplementedError


def _finite(loss: Loss | None, grads: Iterable[torch.Tensor]) -> bool:
    if loss is None or not math.isfinite(float(loss)):
        return False
    total = torch.stack([g.detach().float().pow(2).sum() if g.dtype in _LOW else g.detach().pow(2).sum().double()
                         for g in grads]).sum()
    return bool(torch.isfinite(total))


def state_dtype(p: torch.Tensor) -> torch.dtype:
    """Moments of bfloat16/float16 parameters are kept in float32; otherwise in the parameter's dtype."""
    return torch.float32 if p.dtype in _LOW else p.dtype
