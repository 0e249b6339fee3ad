r"""SGD with a stochastic Armijo (or Goldstein) line search: "SLS".

Paper: Sharan Vaswani, Aaron Mishkin, Issam Laradji, Mark Schmidt, Gauthier Gidel, Simon Lacoste-Julien
(2019), "Painless Stochastic Gradient: Interpolation, Line-Search, and Convergence Rates", NeurIPS 2019,
arXiv:1905.09997.  Algorithm 1 (SGD + stochastic Armijo backtracking), the step-size reset heuristic that
grows the step between searches (the paper's "reset" routine, ``reset_option=1``) and the Goldstein variant
of the appendix (algorithm numbers as in the arXiv v1 numbering; not re-checked against the final PDF).

Per step, with mini-batch loss :math:`f_k` evaluated through the closure (same batch for every evaluation),
gradient :math:`g = \nabla f_k(x)` and the step size :math:`\eta_{k-1}` accepted at the previous step:

.. math::

    \eta &\leftarrow \begin{cases} \eta_{k-1} & \text{reset\_option}=0\\
        \eta_{k-1}\,\gamma^{1/b} & \text{reset\_option}=1 \quad(b = \text{n\_batches\_per\_epoch})\\
        \eta_0 & \text{reset\_option}=2 \end{cases}\\
    \text{Armijo: }& \text{repeat } \eta \leftarrow \beta_b\,\eta \text{ until }
        f_k(x - \eta g) \le f_k(x) - c\,\eta\,\|g\|^2 \quad(\le \text{max\_trials} \text{ trials})\\
    \text{Goldstein: }& \text{accept when also } f_k(x - \eta g) \ge f_k(x) - (1-c)\,\eta\,\|g\|^2;
        \text{ if only the first holds } \eta \leftarrow \min(\beta_f\eta, \eta_{\max}),
        \text{ if only the second } \eta \leftarrow \max(\beta_b\eta, 10^{-8})\\
    x &\leftarrow x - \text{lr}\cdot\eta\, g, \qquad \eta_k \leftarrow \eta .

No search (and no move) when :math:`\|g\| < 10^{-8}`; :math:`\eta` is still stored.  If Armijo accepts no
trial in ``max_trials`` (100), the reference moves to :math:`x - 10^{-6} g` and stores the last shrunk
:math:`\eta`; descend does the same.  If Goldstein accepts none, the parameters stay at the last trial point
(reference behaviour) unless that trial's loss was not finite, in which case they return to :math:`x`.

Defaults (the reference's): ``init_step_size=1, c=0.1, beta_b=0.9, gamma=2, beta_f=2, n_batches_per_epoch=500,
reset_option=1, eta_max=10, bound_step_size=True, line_search="armijo"``.  Set ``n_batches_per_epoch`` to the
number of mini-batches per epoch, as the paper does: it sets the growth :math:`\gamma^{1/b}` per step.

``lr`` is not a learning rate in the usual sense: it is a multiplier (default 1) of the accepted step, the
knob LR schedulers scale (warm-up, decay on top of the search).  The search itself and the stored
:math:`\eta` never see it; ``lr=1`` is the reference algorithm and a group with ``lr=0`` is skipped entirely
(no trials, no move, no state change).

Reference: ``IssamLaradji/sls@19346532fc45956e025461bfad516796736a4ec0:sls/sls.py`` (``Sls``), checked by
the golden fixtures ``sls_armijo_sgd__*.json`` (closed loop, float64, rtol 1e-9 / atol 1e-12 on the
parameters and on the accepted step size, loss and number of trials of every step).  The reference is not on
PyPI, so there is no live comparison.

Known deviations from the reference, and why:

* Closure convention and randomness: see :mod:`descend.optim.linesearch.engine` (the reference calls
  ``closure()`` + ``backward()`` itself but leaves zeroing the gradients to the user, and reseeds the global
  RNGs from the clock; descend zeroes the gradients and offers ``repeat_rng`` instead of reseeding).
* Several parameter groups: the reference starts every group's search from one shared step size and keeps
  the last group's; descend keeps one step size per group (identical for a single group).  As in the
  reference, every group's Armijo test compares against the loss at the start of the step, and groups are
  searched in order (group 2's trials see group 1 already moved).
* Accept/reject arithmetic is done in float64 Python floats for every parameter dtype (the reference uses
  the loss's dtype); identical for float64.  A trial with a non-finite loss is rejected (the reference would
  accept ``-inf``; for Goldstein it would raise).  A non-finite loss or gradient at the start skips the step.

LR schedulers scale ``lr``.  SLS has no momentum: ``OneCycleLR`` needs ``cycle_momentum=False`` (torch's own
error says so otherwise).

State (per parameter, replicated per group): ``step_size`` (accepted :math:`\eta`) and ``step``, 0-d float64.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

import torch

from .._validate import check_choice, check_float
from ..registry import FloatRange, OptimizerSpec, register
from .directions import sq_norm
from .engine import (
    AcceptanceRule,
    Backtracking,
    LineSearchOptimizer,
    StepContext,
    Verdict,
    backtrack,
    check_common,
    check_reset,
    observables,
    reset_step_size,
    settle,
)

__all__ = ["SLS"]


class SLS(LineSearchOptimizer):
    """SGD whose step size is found by a stochastic Armijo (or Goldstein) backtracking line search.

    ``step(closure)``: ``closure()`` returns the mini-batch loss, with or without calling ``backward()``
    (see :mod:`descend.optim.linesearch.engine`).
    """

    _name = "SLS"
    _state_keys = frozenset({"step_size", "step"})

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1.0,
        *,
        init_step_size: float = 1.0,
        c: float = 0.1,
        beta_b: float = 0.9,
        gamma: float = 2.0,
        beta_f: float = 2.0,
        n_batches_per_epoch: int = 500,
        reset_option: int = 1,
        eta_max: float = 10.0,
        bound_step_size: bool = True,
        line_search: Literal["armijo", "goldstein"] = "armijo",
        max_trials: int = 100,
        repeat_rng: bool = False,
    ) -> None:
        defaults = dict(lr=lr, init_step_size=init_step_size, c=c, beta_b=beta_b, gamma=gamma, beta_f=beta_f,
                        n_batches_per_epoch=n_batches_per_epoch, reset_option=reset_option, eta_max=eta_max,
                        bound_step_size=bound_step_size, line_search=line_search, max_trials=max_trials)
        super().__init__(params, defaults, repeat_rng=repeat_rng)

    @staticmethod
    def _check(h: Mapping[str, Any]) -> None:
        check_common(h)
        check_reset(h)
        check_choice("line_search", h["line_search"], ("armijo", "goldstein"))
        if h["line_search"] == "goldstein":
            check_float("c", h["c"], 0.0, 0.5, low_open=True)  # c > 1/2 makes both conditions fail at once
        else:
            check_float("c", h["c"], 0.0, 1.0, low_open=True, high_open=True)
        check_float("beta_b", h["beta_b"], 0.0, 1.0, low_open=True, high_open=True)
        check_float("beta_f", h["beta_f"], 1.0)
        check_float("eta_max", h["eta_max"], 0.0, low_open=True)
        check_choice("bound_step_size", h["bound_step_size"], (True, False))

    def _group_step(self, ctx: StepContext, group: Mapping[str, Any], h: Mapping[str, Any],
                    params: list[torch.Tensor]) -> dict[str, float]:
        sc = ctx.read(group["params"], {"step_size": float(h["init_step_size"]), "step": 0.0})
        eta = reset_step_size(sc["step_size"], h)
        grads = [ctx.grads[p] for p in params]
        norm = sq_norm(grads) ** 0.5
        trials = 0
        if norm >= 1e-8:
            goldstein = h["line_search"] == "goldstein"
            rule = _goldstein if goldstein else _armijo
            bt = Backtracking(h["beta_b"], h["max_trials"], increase=h["beta_f"],
                              max_step=h["eta_max"] if h["bound_step_size"] else float("inf"),
                              min_step=1e-8 if goldstein else 0.0)
            line = ctx.line(params, grads, fused=False)  # the reference computes x - (eta g)
            result = backtrack([line], eta, rule(ctx.f0, h["c"], norm * norm), ctx.evaluate, bt)
            # Armijo without acceptance: the reference moves to x - 1e-6 g (and keeps the shrunk eta)
            settle([line], result, h["lr"], fallback=None if goldstein else 1e-6)
            eta, trials = result.step, result.trials
        ctx.write(group["params"], {"step_size": eta, "step": sc["step"] + 1})
        return {"step_size": eta, "line_search_trials": float(trials)}


def _armijo(f0: float, c: float, gn2: float) -> AcceptanceRule:
    """Armijo: ``f(x - eta g) <= f(x) - c eta ||g||^2`` (``gn2``: the reference squares the rounded norm),
    evaluated in the reference's order of operations."""
    def rule(eta: float, f_new: float) -> Verdict:
        return Verdict.ACCEPT if f_new - (f0 - eta * c * gn2) <= 0 else Verdict.SHORTER
    return rule


def _goldstein(f0: float, c: float, gn2: float) -> AcceptanceRule:
    """Goldstein: Armijo, and ``f(x - eta g) >= f(x) - (1 - c) eta ||g||^2`` (else the step was too short)."""
    def rule(eta: float, f_new: float) -> Verdict:
        if f_new <= f0 - eta * c * gn2:
            return Verdict.ACCEPT if f_new >= f0 - eta * (1 - c) * gn2 else Verdict.LONGER
        return Verdict.SHORTER
    return rule


# -------------------------------------------------------------------------------------------------
# registry


def _from_fixture(fx: Mapping[str, Any], params: Mapping[str, torch.Tensor]) -> SLS:
    h = dict(fx["hyperparameters"])
    h["line_search"] = h.pop("line_search_fn", "armijo")
    return SLS([params[n] for n in fx["param_order"]], **h)


register(OptimizerSpec(
    name="sls",
    factory=SLS,
    paper="Vaswani, Mishkin, Laradji, Schmidt, Gidel, Lacoste-Julien 2019, Painless Stochastic Gradient: "
          "Interpolation, Line-Search, and Convergence Rates (NeurIPS), arXiv:1905.09997",
    reference="IssamLaradji/sls@19346532fc45956e025461bfad516796736a4ec0:sls/sls.py#Sls",
    search_space={"c": FloatRange(0.01, 0.5, log=True), "beta_b": FloatRange(0.5, 0.95)},
    summary="SGD with a stochastic Armijo backtracking line search (step size grows between searches)",
    requires_closure=True,
    lr_key="lr",
    fixture_names=("sls_armijo_sgd",),
    from_fixture=_from_fixture,
    observables=observables,
))
