r"""Layer-wise Adam + Armijo line search ("PLASLS" / "ADAMSLS" with per-layer step sizes).

Paper: Philip Kenneweg, Leonardo Galli, Tristan Kenneweg, Barbara Hammer (2023), "Faster Convergence for
Transformer Fine-tuning with Line Search Methods", IJCNN 2023, arXiv:2403.18506 (DOI 10.1109/IJCNN54540.2023.10192001):
Adam's preconditioned gradient as the search direction, the split of the network into units (layers) each
with its own line search, searched in a cycle ("cycle" strategy), and the optional smoothed Armijo
condition (equations below as in the authors' code).

**Parameter groups are the layers**: pass one group per layer (e.g. embeddings, each encoder block, the
head).  Each group :math:`i` has its own step size :math:`\eta_i`.  Per step :math:`k = 1, 2, \dots`, with
loss :math:`f` (closure, same mini-batch for every evaluation) and gradient :math:`g`:

.. math::

    m &\leftarrow \beta_1 m + (1-\beta_1) g, \quad v \leftarrow \beta_2 v + (1-\beta_2) g^2, \quad
    P = 1/\big(\sqrt{v/(1-\beta_2^k)} + \epsilon\big), \quad \hat m = m/(1-\beta_1^k),\\
    h_i &= \sum_{p \in i} \langle g_p, P_p g_p\rangle, \qquad
    \eta_i \leftarrow \eta_i\,\gamma^{1/b} \ (\text{reset\_option } 1),\\
    \bar h_c &\leftarrow \beta_s \bar h_c + (1-\beta_s) h_c \quad (c = \text{the group whose turn it is}).

*Search* for the group(s) :math:`S` (trial :math:`x_S - \eta P g_S`, the other groups fixed): accept when

.. math::

    \text{smooth=False: } & f(x) - f(x_{try}) \ \ge\ c\,\eta\,h_S\\
    \text{smooth=True: } & \frac{\beta_s\bar\delta_S + (1-\beta_s)(f(x) - f(x_{try}))}{1-\beta_s^{k}}
        \ \ge\ c\,\eta\,\frac{\bar h_S}{1-\beta_s^{k}},

else :math:`\eta \leftarrow \beta_b \eta` (at most ``max_trials`` = 100 trials; on acceptance
:math:`\bar\delta_S \leftarrow \beta_s\bar\delta_S + (1-\beta_s)(f(x) - f(x_{try}))`).  The step taken is
then **with momentum**: :math:`x_i \leftarrow x_i - \text{lr}_i\,\eta_i\, P\hat m_i` for every group, from the
saved start point.  No search when :math:`f(x) = 0` or the (bias-corrected) :math:`\bar h_S < 10^{-8}`.

*Schedule* ("cycle"): during the first ``warmup_steps`` (6) steps one global search over all groups sets one
shared :math:`\eta` for every group; afterwards only the group whose turn it is (cycling 0, 1, …) searches,
the others step with their grown :math:`\eta_i`.  Groups are processed in order, so the searching group's
trials see the groups before it already moved; every test compares against the loss at the start point.

Defaults (the reference constructor's): ``init_step_size=0.1, c=0.2, betas=(0.9, 0.999), beta_b=0.9,
beta_s=0.999, gamma=2, n_batches_per_epoch=500, reset_option=1, smooth=False`` (the paper's experiments:
``c=0.1, smooth=False``).  ``lr`` multiplies the step taken (the LR-scheduler knob; the search and the
stored :math:`\eta_i` never see it); ``lr=1`` is the reference; a group with ``lr=0`` is skipped entirely.
The hyperparameters of the global warm-up search (``c``, ``beta_b``, ``beta_s``, ``max_trials``) are the first
group's.

Reference: ``TheMody/Faster-Convergence-for-Transformer-Fine-tuning-with-Line-Search-Methods@dd23386``
``sls/adam_sls.py`` + ``sls/sls_base.py`` (not on PyPI).  Checked live against the later
``SaLSa-Optimizer==0.1.0`` ``salsa.adam_sls.AdamSLS`` with ``speed_up=False`` (tests marked ``reference``),
which computes the same iterates: that package (i) adds a ``speed_up`` option that skips searches (SaLSa's)
and defaults to ``smooth=True``; (ii) drops the :math:`1/(1-\beta_s^k)` factors, which cancel in the
smoothed test and only move the :math:`10^{-8}` no-search threshold; (iii) allows 200 trials instead of 100;
(iv) adds ``only_decrease``/``smooth_after``.  No golden fixture exists.

Reference behaviour reproduced on purpose (documented quirks):

* In the warm-up with several groups the non-smoothed test uses the **last** group's :math:`h` (not the
  sum), the smoothed one :math:`\sum_i\bar h_i` of which only group 0's is ever updated during the warm-up;
  at its end every :math:`\bar h_i` is set to group 0's and every :math:`\bar\delta_i` to the last group's.
* Without smoothing, every trial overwrites :math:`\bar\delta_S` and :math:`\bar h_S` with the raw values.
* If no trial is accepted, the momentum step is still taken with :math:`\eta\beta_b^{100}`.

Deviations: closure convention and randomness (:mod:`descend.optim.linesearch.engine`); float64 Python
arithmetic for every decision; a non-finite trial loss is a rejected trial that leaves the averages alone;
a non-finite start loss/gradient skips the step; ``combine_threshold`` (merging groups whose step size
collapsed, 0 = off by default in the reference) is not implemented.

LR schedulers scale ``lr``; ``OneCycleLR(cycle_momentum=True)`` finds ``betas`` and cycles ``betas[0]``
(Adam's :math:`\beta_1`), keeping the other entries.

State: per parameter ``exp_avg``, ``exp_avg_sq`` (float32 for bfloat16/float16 parameters), per group
(replicated) ``step_size``, ``avg_decrease``, ``avg_norm``, optimizer-wide (replicated) ``step``,
``warmup_done``, ``next_group``: all 0-d float64.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .._validate import check_betas, check_choice, check_float, check_int
from ..registry import Categorical, FloatRange, OptimizerSpec, register
from .directions import AdamPreconditioner
from .engine import (
    AcceptanceRule,
    Backtracking,
    Line,
    LineSearchOptimizer,
    StepContext,
    Verdict,
    backtrack,
    check_common,
    check_reset,
    hyper,
    reset_step_size,
)

__all__ = ["LayerwiseAdamSLS"]


class LayerwiseAdamSLS(LineSearchOptimizer):
    """Adam-preconditioned Armijo line search with one step size per parameter group (layer), cycled.

    ``step(closure)``: ``closure()`` returns the mini-batch loss, with or without calling ``backward()``
    (see :mod:`descend.optim.linesearch.engine`).
    """

    _name = "LayerwiseAdamSLS"
    _state_keys = frozenset({"exp_avg", "exp_avg_sq", "step_size", "avg_decrease", "avg_norm", "step",
                             "warmup_done", "next_group"})

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1.0,
        *,
        init_step_size: float = 0.1,
        c: float = 0.2,
        betas: Sequence[float] = (0.9, 0.999),
        beta_b: float = 0.9,
        beta_s: float = 0.999,
        gamma: float = 2.0,
        n_batches_per_epoch: int = 500,
        reset_option: int = 1,
        smooth: bool = False,
        eps: float = 1e-8,
        max_trials: int = 100,
        warmup_steps: int = 6,
        repeat_rng: bool = False,
    ) -> None:
        defaults = dict(lr=lr, init_step_size=init_step_size, c=c, betas=tuple(betas), beta_b=beta_b,
                        beta_s=beta_s, gamma=gamma, n_batches_per_epoch=n_batches_per_epoch,
                        reset_option=reset_option, smooth=smooth, eps=eps, max_trials=max_trials)
        check_int("warmup_steps", warmup_steps, 0)
        self.warmup_steps = warmup_steps
        super().__init__(params, defaults, repeat_rng=repeat_rng)

    @staticmethod
    def _check(h: Mapping[str, Any]) -> None:
        check_common(h)
        check_reset(h)
        check_float("c", h["c"], 0.0, 1.0, low_open=True, high_open=True)
        check_betas("betas", h["betas"], 2)
        check_float("beta_b", h["beta_b"], 0.0, 1.0, low_open=True, high_open=True)
        check_float("beta_s", h["beta_s"], 0.0, 1.0, high_open=True)
        check_choice("smooth", h["smooth"], (True, False))
        check_float("eps", h["eps"], 0.0, low_open=True)

    def _step(self, ctx: StepContext) -> dict[str, float]:
        groups = self.param_groups
        hs = [hyper(g) for g in groups]
        n = len(groups)
        params = [[p for p in g["params"] if p in ctx.grads] if h["lr"] != 0 else []
                  for g, h in zip(groups, hs, strict=True)]
        live = [bool(ps) for ps in params]
        if not any(live):
            return {}
        gl = ctx.read([p for g in groups for p in g["params"]],
                      {"step": 0.0, "warmup_done": 0.0, "next_group": 0.0})
        k = int(gl["step"]) + 1
        cycle = int(gl["next_group"]) % n
        sc = [ctx.read(g["params"], {"step_size": float(h["init_step_size"]), "avg_decrease": 0.0,
                                     "avg_norm": 0.0}) for g, h in zip(groups, hs, strict=True)]

        # per group: Adam moments, the search line (along P g), the step line (along P m_hat), h_i = <g, P g>
        search: list[Line] = []
        steps: list[Line] = []
        norms = [0.0] * n
        for i, (h, ps) in enumerate(zip(hs, params, strict=True)):
            adam = AdamPreconditioner(ctx, ps, h["betas"][0], h["betas"][1], h["eps"], k)
            search.append(ctx.line(ps, adam.gradient()))
            steps.append(ctx.line(ps, adam.momentum()))
            norms[i] = adam.gradient_norm()
            sc[i]["step_size"] = reset_step_size(sc[i]["step_size"], h)

        if live[cycle]:
            bs = hs[cycle]["beta_s"]
            sc[cycle]["avg_norm"] = sc[cycle]["avg_norm"] * bs + norms[cycle] * (1 - bs)

        trials_before = ctx.trials
        in_warmup = gl["warmup_done"] < self.warmup_steps
        if in_warmup:  # one global search sets one step size for every group
            members = [i for i in range(n) if live[i]]
            last = members[-1]
            eta = self._search(ctx, members, last, sc[0]["step_size"], norms, sc, k, search,
                               smoothed_norm=sum(s["avg_norm"] for s in sc))
            for i in members:
                sc[i]["step_size"] = eta
                steps[i].place(hs[i]["lr"] * eta)
            gl["warmup_done"] += 1
            if gl["warmup_done"] >= self.warmup_steps:
                for i in range(n):
                    sc[i]["avg_norm"] = sc[0]["avg_norm"]
                    sc[i]["avg_decrease"] = sc[last]["avg_decrease"]
        else:  # the group whose turn it is searches; every group steps with its own step size
            for i in range(n):
                if not live[i]:
                    continue
                if i == cycle:
                    sc[i]["step_size"] = self._search(ctx, [i], i, sc[i]["step_size"], norms, sc, k, search,
                                                      smoothed_norm=sc[i]["avg_norm"])
                steps[i].place(hs[i]["lr"] * sc[i]["step_size"])
            gl["next_group"] = float((cycle + 1) % n)

        gl["step"] = float(k)
        for i, g in enumerate(groups):
            ctx.write(g["params"], {**sc[i], **gl})
        first = next(i for i in range(n) if live[i])
        return {"step_size": sc[first]["step_size"], "line_search_trials": float(ctx.trials - trials_before),
                "searched_group": float(-1 if in_warmup else cycle)}

    def _search(self, ctx: StepContext, members: list[int], idx: int, eta: float, norms: list[float],
                sc: list[dict[str, float]], k: int, lines: list[Line], *, smoothed_norm: float) -> float:
        """Backtrack on the groups ``members`` (averages kept at index ``idx``); return the step size.

        The momentum step follows whatever the search returns, accepted or not (reference behaviour)."""
        g0 = hyper(self.param_groups[members[0]])
        corr = 1 - g0["beta_s"] ** k
        if ctx.f0 == 0 or not smoothed_norm / corr >= 1e-8:
            return eta
        rule = _armijo(ctx.f0, g0["c"], g0["beta_s"], corr, smoothed_norm / corr, norms[idx], sc[idx],
                       smooth=self.param_groups[idx]["smooth"])
        result = backtrack([lines[i] for i in members], eta, rule, ctx.evaluate,
                           Backtracking(g0["beta_b"], g0["max_trials"]))
        return result.step


def _armijo(f0: float, c: float, beta_s: float, corr: float, smoothed: float, raw: float, s: dict[str, float],
            *, smooth: bool) -> AcceptanceRule:
    """Armijo on the groups searched, as in the reference: with ``smooth`` the bias-corrected smoothed
    decrease against the smoothed norm; without, the raw decrease against the raw norm ``raw``, and every
    trial overwrites the averages ``s`` with the raw values (reference quirk).  ``avg_decrease`` is updated
    once more on acceptance."""
    suff = smoothed

    def rule(eta: float, f_new: float) -> Verdict:
        nonlocal suff
        decrease = (s["avg_decrease"] * beta_s + (f0 - f_new) * (1 - beta_s)) / corr
        if not smooth:
            decrease = f0 - f_new
            s["avg_decrease"] = decrease
            suff = raw
            s["avg_norm"] = suff
        if decrease >= eta * c * suff:
            s["avg_decrease"] = s["avg_decrease"] * beta_s + (f0 - f_new) * (1 - beta_s)
            return Verdict.ACCEPT
        return Verdict.SHORTER
    return rule


register(OptimizerSpec(
    name="adam_sls",
    factory=LayerwiseAdamSLS,
    paper="Kenneweg, Galli, Kenneweg, Hammer 2023, Faster Convergence for Transformer Fine-tuning with Line "
          "Search Methods (IJCNN), arXiv:2403.18506",
    reference="TheMody/Faster-Convergence-for-Transformer-Fine-tuning-with-Line-Search-Methods@dd23386 "
              "sls/adam_sls.py (live check: SaLSa-Optimizer==0.1.0 salsa.adam_sls.AdamSLS, speed_up=False)",
    search_space={"c": FloatRange(0.05, 0.5, log=True), "smooth": Categorical((False, True))},
    summary="Adam direction with an Armijo line search per layer (parameter group), searched in a cycle",
    requires_closure=True,
    lr_key="lr",
))
