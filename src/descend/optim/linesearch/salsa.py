r"""SaLSa: Stable Armijo Line Search Adaptation (Adam-preconditioned, smoothed Armijo line search).

Paper: Philip Kenneweg, Tristan Kenneweg, Fabian Fumagalli, Barbara Hammer (2024), "No learning rates needed:
Introducing SALSA - Stable Armijo Line Search Adaptation", IJCNN 2024, arXiv:2407.20650: the Armijo
condition with exponentially smoothed loss decrease and gradient norm, on Adam's preconditioned direction,
and the speed-up that skips searches while the step size is stable (section numbers not cited: the
equations below are the package's, which the fixtures pin down).

Per step :math:`t = 1, 2, \dots` with loss :math:`f` (closure, same mini-batch for every evaluation),
gradient :math:`g`, Adam moments :math:`m \leftarrow \beta_1 m + (1-\beta_1) g`,
:math:`v \leftarrow \beta_2 v + (1-\beta_2) g^2` and, with :math:`\tau = t+1` (package default, see below):

.. math::

    P &= 1 / \big(\sqrt{v / (1-\beta_2^{\tau})} + \epsilon\big), \qquad
        \hat m = m / (1 - \beta_1^{\tau}),\\
    \eta &= 1.1\,\eta_{t-1}, \qquad
        r = \max(\bar\eta_{fast}/\bar\eta_{slow}, \bar\eta_{slow}/\bar\eta_{fast}),\quad
        F = \min\big(10,\ 1/(r - 1 + 10^{-8})\big),\quad s \leftarrow s + 1.

*Search* (when ``speed_up`` is off, or :math:`t < 10`, or :math:`s \ge F`; then :math:`s \leftarrow 0`):
direction :math:`d = P\odot g` (``use_mv``: :math:`d = P\odot\hat m`),
:math:`\bar h \leftarrow \beta_3 \bar h + (1-\beta_3)\langle g, d\rangle`; for up to 100 trials:
:math:`x_{try} = x - \eta d`, accept when

.. math::

    \beta_3\,\bar\delta + (1-\beta_3)\,\big(f(x) - f(x_{try})\big) \ \ge\ c\,\eta\,\bar h
    \qquad\text{(or } f(x_{try}) = f(x)\text{)},

else :math:`\eta \leftarrow 0.8\,\eta`; on acceptance :math:`\bar\delta \leftarrow \beta_3\bar\delta +
(1-\beta_3)(f(x)-f(x_{try}))`.  The parameters stay at the accepted trial point (no separate momentum step);
:math:`\eta_t = \eta`; :math:`\bar\eta_{slow} \leftarrow 0.99\,\bar\eta_{slow} + 0.01\,\eta`,
:math:`\bar\eta_{fast} \leftarrow 0.9\,\bar\eta_{fast} + 0.1\,\eta` (both start at :math:`10^{-8}`).
If :math:`f(x) = 0` or :math:`\bar h < 10^{-8}`: no search, :math:`x \leftarrow x - \eta P\odot\hat m` and
:math:`\eta_t = \eta`.  If no trial is accepted, the parameters stay at the last trial point and
:math:`\eta_t` is the last shrunk value (reference behaviour; descend returns to :math:`x` instead if that
last trial's loss was not finite).

*Skipped search*: :math:`x \leftarrow x - \eta\,P\odot\hat m` with the grown :math:`\eta`;
:math:`\eta_t = \eta_{t-1}` (unchanged).

Defaults (the package's): ``init_step_size=1, c=0.5, betas=(0.9, 0.999, 0.9)`` (the package's
``momentum``), ``speed_up=True, use_mv=False``, decrease factor 0.8, growth factor 1.1, eps 1e-8.

**Bias correction.**  ``SaLSa-Optimizer==0.1.0`` increments its step counter before use and then corrects
with :math:`1-\beta^{t+1}` (at the first step the second moment is divided by :math:`1-\beta_2^2`, about
2e-3, not :math:`1-\beta_2 = 10^{-3}`).  This off-by-one is what the golden fixtures record, so it is the
default (``bias_correction="package"``); ``bias_correction="textbook"`` uses :math:`1-\beta^{t}`.

``lr`` is a multiplier (default 1) of the step actually taken (the accepted trial step, or the momentum
step of a skipped search), the knob LR schedulers scale.  The search, the stored :math:`\eta` and every
average use the unscaled step; ``lr=1`` is the reference algorithm; a group with ``lr=0`` is skipped
entirely (no evaluation, no move, no state change).

Reference: ``SaLSa-Optimizer==0.1.0`` ``salsa.SaLSA.SaLSA`` (= ``TheMody/No-learning-rates-needed-...@717b41c``
``src/salsa/SaLSA.py`` without the later ``weight_decay``), checked by the golden fixtures ``salsa__*.json``
(closed loop, float64, rtol 1e-9 / atol 1e-12 on parameters, step size, loss, trials, search flag and
``LS_freq``) and live on random problems (``tests/optim/test_linesearch.py``, marked ``reference``).

Known deviations from the reference, and why:

* Closure convention and randomness: see :mod:`descend.optim.linesearch.engine` (the package's closure is
  ``closure(backwards=False)`` and calls ``backward()`` itself; it reseeds torch/numpy from the clock).
* Parameter groups: the package supports one group only; descend runs one independent search per group
  (own step size, averages and counters), all against the loss at the start of the step, in group order.
* The fallback branch (:math:`f(x)=0` or :math:`\bar h < 10^{-8}`) evaluates the loss once more in the package
  only to return it; descend skips that evaluation (no effect on the iterates).
* Accept/reject arithmetic and the step-size averages are float64 for every parameter dtype (the package
  uses the default dtype).  Moments of bfloat16/float16 parameters are float32.  A non-finite trial loss is
  a rejected trial; the package raises ``ValueError('nans detected')`` on a NaN parameter, descend skips a
  step whose start loss or gradient is not finite instead.

LR schedulers scale ``lr``; ``OneCycleLR(cycle_momentum=True)`` finds ``betas`` and cycles ``betas[0]``
(Adam's :math:`\beta_1`), keeping the other entries.

State: per parameter ``exp_avg`` (:math:`m`), ``exp_avg_sq`` (:math:`v`); per group (replicated, 0-d float64)
``step``, ``step_size``, ``since_search``, ``avg_step_slow``, ``avg_step_fast``, ``avg_decrease``,
``avg_norm``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import torch

from .._validate import check_betas, check_choice, check_float
from ..registry import Categorical, FloatRange, OptimizerSpec, register
from .directions import AdamPreconditioner
from .engine import (
    AcceptanceRule,
    Backtracking,
    LineSearchOptimizer,
    StepContext,
    Verdict,
    backtrack,
    check_common,
    observables,
    settle,
)

__all__ = ["SaLSA"]

_SCALARS = ("step", "step_size", "since_search", "avg_step_slow", "avg_step_fast", "avg_decrease", "avg_norm")


class SaLSA(LineSearchOptimizer):
    """Adam-preconditioned stochastic line search with a smoothed Armijo condition (SaLSa).

    ``step(closure)``: ``closure()`` returns the mini-batch loss, with or without calling ``backward()``
    (see :mod:`descend.optim.linesearch.engine`).
    """

    _name = "SaLSA"
    _state_keys = frozenset({"exp_avg", "exp_avg_sq", *_SCALARS})

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1.0,
        *,
        init_step_size: float = 1.0,
        c: float = 0.5,
        betas: Sequence[float] = (0.9, 0.999, 0.9),
        speed_up: bool = True,
        use_mv: bool = False,
        decrease_factor: float = 0.8,
        growth_factor: float = 1.1,
        eps: float = 1e-8,
        max_trials: int = 100,
        bias_correction: Literal["package", "textbook"] = "package",
        repeat_rng: bool = False,
    ) -> None:
        defaults = dict(lr=lr, init_step_size=init_step_size, c=c, betas=tuple(betas), speed_up=speed_up,
                        use_mv=use_mv, decrease_factor=decrease_factor, growth_factor=growth_factor, eps=eps,
                        max_trials=max_trials, bias_correction=bias_correction)
        super().__init__(params, defaults, repeat_rng=repeat_rng)

    @staticmethod
    def _check(h: Mapping[str, Any]) -> None:
        check_common(h)
        check_float("c", h["c"], 0.0, 1.0, low_open=True, high_open=True)
        check_betas("betas", h["betas"], 3)
        check_choice("speed_up", h["speed_up"], (True, False))
        check_choice("use_mv", h["use_mv"], (True, False))
        check_float("decrease_factor", h["decrease_factor"], 0.0, 1.0, low_open=True, high_open=True)
        check_float("growth_factor", h["growth_factor"], 1.0)
        check_float("eps", h["eps"], 0.0, low_open=True)
        check_choice("bias_correction", h["bias_correction"], ("package", "textbook"))

    def _group_step(self, ctx: StepContext, group: Mapping[str, Any], h: Mapping[str, Any],
                    params: list[torch.Tensor]) -> dict[str, float]:
        beta1, beta2, beta3 = h["betas"]
        s = ctx.read(group["params"], {
            "step": 0.0, "step_size": float(h["init_step_size"]), "since_search": 100.0, "avg_step_slow": 1e-8,
            "avg_step_fast": 1e-8, "avg_decrease": 0.0, "avg_norm": 0.0})
        t = int(s["step"]) + 1
        tau = t + 1 if h["bias_correction"] == "package" else t
        rate = s["avg_step_fast"] / s["avg_step_slow"]
        if rate < 1:
            rate = 1 / rate
        needed = min(10, 1 / ((rate - 1) + 1e-8))
        s["since_search"] += 1

        adam = AdamPreconditioner(ctx, params, beta1, beta2, h["eps"], max(1, tau))
        eta = s["step_size"] * h["growth_factor"]  # the step-size update between searches
        lr = h["lr"]
        trials = 0
        searched = not h["speed_up"] or t < 10 or s["since_search"] >= needed
        if searched:
            s["since_search"] = 0.0
            if h["use_mv"]:
                dirs = adam.momentum()
                norm = adam.slope(dirs)
            else:
                dirs = adam.gradient()
                norm = adam.gradient_norm()
            s["avg_norm"] = s["avg_norm"] * beta3 + norm * (1 - beta3)
            if ctx.f0 != 0 and s["avg_norm"] >= 1e-8:
                line = ctx.line(params, dirs)
                bt = Backtracking(h["decrease_factor"], h["max_trials"])
                result = backtrack([line], eta, _smoothed_armijo(ctx.f0, h["c"], beta3, s), ctx.evaluate, bt)
                settle([line], result, lr)
                eta, trials = result.step, result.trials
            else:  # no search: Adam's momentum step with the grown step size
                ctx.line(params, adam.momentum()).place(lr * eta)
            s["step_size"] = eta
            s["avg_step_slow"] = s["avg_step_slow"] * 0.99 + eta * (1 - 0.99)
            s["avg_step_fast"] = s["avg_step_fast"] * 0.9 + eta * (1 - 0.9)
        else:  # skipped search: momentum step with the grown step size, which is not stored
            ctx.line(params, adam.momentum()).place(lr * eta)
        s["step"] = float(t)
        ctx.write(group["params"], s)
        return {"step_size": s["step_size"], "line_search_trials": float(trials),
                "line_search": float(searched), "ls_freq": float(needed)}


def _smoothed_armijo(f0: float, c: float, beta3: float, s: dict[str, float]) -> AcceptanceRule:
    """SaLSa's condition: the smoothed decrease ``beta3 avg_decrease + (1 - beta3)(f(x) - f(x_try))`` is at
    least ``c eta avg_norm``, or the loss did not change at all; ``avg_decrease`` is updated on acceptance."""
    def rule(eta: float, f_new: float) -> Verdict:
        if f0 - f_new == 0:
            return Verdict.ACCEPT
        decrease = s["avg_decrease"] * beta3 + (f0 - f_new) * (1 - beta3)
        if decrease >= eta * c * s["avg_norm"]:
            s["avg_decrease"] = s["avg_decrease"] * beta3 + (f0 - f_new) * (1 - beta3)
            return Verdict.ACCEPT
        return Verdict.SHORTER
    return rule


# -------------------------------------------------------------------------------------------------
# registry


def _from_fixture(fx: Mapping[str, Any], params: Mapping[str, torch.Tensor]) -> SaLSA:
    h = dict(fx["hyperparameters"])
    if "momentum" in h:
        h["betas"] = tuple(h.pop("momentum"))
    return SaLSA([params[n] for n in fx["param_order"]], **h)


register(OptimizerSpec(
    name="salsa",
    factory=SaLSA,
    paper="Kenneweg, Kenneweg, Fumagalli, Hammer 2024, No learning rates needed: Introducing SALSA - Stable "
          "Armijo Line Search Adaptation (IJCNN), arXiv:2407.20650",
    reference="SaLSa-Optimizer==0.1.0 salsa.SaLSA.SaLSA",
    search_space={"c": FloatRange(0.1, 0.9), "use_mv": Categorical((False, True))},
    summary="Adam-preconditioned stochastic line search with a smoothed Armijo condition; no learning rate",
    requires_closure=True,
    lr_key="lr",
    fixture_names=("salsa",),
    from_fixture=_from_fixture,
    observables=observables,
))
