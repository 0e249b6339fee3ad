r"""M-FAC: matrix-free inverse-Fisher-vector products over a sliding window of gradients.

Paper: Elias Frantar, Eldar Kurtic, Dan Alistarh (2021), "M-FAC: Efficient Matrix-Free Approximations of
Second-Order Information", NeurIPS 2021, arXiv:2107.03356.

Algorithm (paper §3 and Algorithm 1, "dynamic algorithm", as the reference's ``MFAC`` optimizer runs it).
All parameters are concatenated, in parameter order, into one vector of length d; the optimizer keeps the
window ``G ∈ R^{m×d}`` of the last m gradients (a ring buffer, **initialised with m zero rows**) and
``GGᵀ``.  With damping λ, the empirical Fisher is always normalised by the window size m
(also while the window is still filling up)::

    F̂ = λ·I + (1/m) Σ_{i=1..m} g_i g_iᵀ = λ·I + GᵀG / m

    step t:  g_t  = concat_p( ∇_p + wd·p )            (coupled / L2 weight decay, before the window)
             G[k] = g_t ; (GGᵀ)[k,:] = (GGᵀ)[:,k] = G g_t ; k ← (k + 1) mod m     (O(m d))
             A    = m·I + GGᵀ/λ = L diag(δ) Lᵀ        (unpivoted LU of the reference = LDLᵀ, O(m³/3))
             u_t  = (1/λ)·g_t − (1/λ)·Gᵀ A⁻¹ (G g_t / λ)  = F̂⁻¹ g_t       (Woodbury, O(m d + m²))
             v_t  = μ v_{t-1} + (1 − μ) u_t ; u_t ← v_t            (only if μ > 0: EMA momentum)
             p   ← p − lr · u_t[slice of p]

The window update and the inverse-Hessian-vector product cost O(dm + m²) (two triangular solves in the
m×m factor); the coefficients are refactored every step from the stored ``GGᵀ`` with LAPACK's Cholesky
(O(m³/3) flops on an m×m matrix, as the reference's unpivoted LU is O(m³)); while the window is still
filling up (step t < m) only the t×t block of non-zero rows is factored.  See
:mod:`descend.optim._linalg` for why the Cholesky-based LDLᵀ gives the unpivoted LU's numbers.

Defaults: the reference's ``MFAC`` (``lr=1e-3, momentum=0, weight_decay=0, ngrads=1024``, window in float32,
``window_dtype``) except ``damp=1e-2`` instead of the reference's ``1e-5`` (pass ``damp=1e-5`` for it; the
fixtures replay with the value they were recorded with).  Why: with ``damp=1e-5`` M-FAC moves *uphill* on
PyTorch's own "goes the right direction" problem (``‖W x + b‖²``, W ~ randn(10, 5), b ~ randn(10), 20 steps
of lr 1e-3, 20 seeds): the loss grew in 20/20 runs with a float32 window (median ×3.49) and 16/20 with a
float64 window; damp 1e-4: 19/20 and 17/20 uphill; damp 1e-3 … 10: down in 40/40; damp 1e-2: median ×0.948,
worst ×0.965 (float32 and float64); on the contract tests' mixed problem (float32, 50 steps, 5 seeds)
1e-5 ends at ×2.9–4.5, 1e-3 at ×0.26–0.40, 1e-2 at ×0.50–0.58, 1e-1 at ×0.81–0.83.  With a small damping
the differences of nearly parallel window gradients look almost flat (empirical-Fisher curvature ≪ λ is not
real curvature) and the step along them explodes; 1e-2 is the smallest value with margin on both problems.
``lr``, ``momentum`` and ``weight_decay`` are per-group hyperparameters (the reference has one group);
``ngrads``, ``damp`` and ``window_dtype`` are global (a group that sets one is rejected).

Reference: ``IST-DASLab/M-FAC@8116367`` ``optim.py`` (``MFAC`` + ``HInvFastUpMulti``), run on the CPU
with an unpivoted LU written in torch.  Checked against its recorded trajectories ``mfac__*.json``
(float64: rtol 1e-9, atol 1e-12; float32: atol 3e-6) and against the closed form (λI + GᵀG/m)⁻¹x in
float64.

State (all tensors, in ``self.state`` of the first parameter that had a gradient): ``window`` (m×d),
``dots`` (m×m), ``last`` (ring position, int64), ``step`` (int64), ``momentum_buffer`` (d, if μ > 0).
The window, ``dots`` and the momentum buffer keep ``window_dtype`` through ``load_state_dict``.

Known deviations from the reference:

* ``F̂⁻¹g`` is computed in the push-through form ``(m/λ) Gᵀ A⁻¹ e_k`` (g is row k of the window) instead of
  the reference's Woodbury form ``(1/λ)(g − Gᵀ A⁻¹ G g/λ)``: equal in exact arithmetic, but the latter
  subtracts two nearly equal vectors once ‖g‖²/(mλ) is large and loses every digit (float32 gradients
  ×1e10 turned the parameters NaN).  Fixture errors: float64 2.7e-14 / 2.7e-15, float32 2.1e-7 (the
  Woodbury form: 2.7e-14 / 3.7e-15 / 2.4e-7), all well inside the fixtures' tolerances.
* The m×m system is formed and factored in float64 also for a float32 window (its entries ‖g‖²/λ are
  often 1e9·m, so float32 rounds m·I away and A becomes singular), by a Cholesky-based LDLᵀ instead of
  the unpivoted LU (same numbers up to rounding); if Cholesky fails, by an eigendecomposition with the
  eigenvalues clamped at m (A = m·I + PSD).  The reference's unpivoted float32 LU divides by ~0 there and
  returns NaN (two equal gradients, damp=1e-5: NaN after two steps).
* Parameters whose ``.grad`` is ``None`` contribute zeros to the window and are not updated (the reference
  crashes); several parameter groups are allowed (the reference concatenates them all the same way).
* The reference raises for m > 1024 even on the CPU (an operator-precedence bug); any m ≥ 1 works here.
* Gradients are cast to ``window_dtype`` before anything else, the update is applied in the parameter's
  dtype; bfloat16 parameters therefore get float32 curvature (the default) and a float32 update.
* ``closure`` is supported (evaluated once, under ``torch.enable_grad()``); the reference rejects it.
* Sparse pruning masks (the reference's ``sparse=True``) and multi-GPU sharding of the window are not
  implemented.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch

from ._base import DescendOptimizer, begin_step
from ._linalg import solve_shifted_psd
from ._validate import check_choice, check_float, check_int
from .registry import Categorical, FloatRange, IntRange, OptimizerSpec, register

__all__ = ["MFAC"]

_WINDOW_DTYPES = (torch.float32, torch.float64)


class MFAC(DescendOptimizer):
    """M-FAC optimizer: SGD preconditioned by the inverse of a sliding-window empirical Fisher.

    Args:
        params: parameters or parameter groups (all of them form one joint vector, in order).
        lr: learning rate.
        momentum: EMA coefficient μ applied to the preconditioned direction (0 = none).
        weight_decay: coupled (L2) weight decay added to the gradient before it enters the window.
        ngrads: window size m (number of gradients kept).
        damp: damping λ > 0 of the empirical Fisher.
        window_dtype: dtype of the window, ``GGᵀ`` and the linear algebra (reference: float32).
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        *,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        ngrads: int = 1024,
        damp: float = 1e-2,
        window_dtype: torch.dtype = torch.float32,
    ) -> None:
        check_float("lr", lr, 0.0)
        check_float("momentum", momentum, 0.0, 1.0, high_open=True)
        check_float("weight_decay", weight_decay, 0.0)
        self.ngrads = check_int("ngrads", ngrads, 1)
        self.damp = check_float("damp", damp, 0.0, low_open=True)
        self.window_dtype: torch.dtype = check_choice("window_dtype", window_dtype, _WINDOW_DTYPES)
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay})

    _STATE_KEYS = ()
    _OPTIONAL_STATE_KEYS = ("window", "dots", "last", "step", "momentum_buffer")
    _STATE_KEY_SETS = (("window", "dots", "last", "step"),)
    _STEP_DTYPE = torch.int64
    _CONFIG_ATTRS = ("ngrads", "damp", "window_dtype")
    _GLOBAL = ("ngrads", "damp", "window_dtype")  # one window for all groups

    def _check_group(self, group: Mapping[str, Any]) -> None:
        check_float("lr", group["lr"], 0.0)
        check_float("momentum", group["momentum"], 0.0, 1.0, high_open=True)
        check_float("weight_decay", group["weight_decay"], 0.0)
        for key in self._GLOBAL:
            if key in group:
                raise ValueError(f"{key} is global in MFAC (one gradient window for all parameters): "
                                 "pass it to the constructor, not in a parameter group")

    def _state_dtype(self, p: torch.Tensor, group: Mapping[str, Any], key: str) -> torch.dtype | None:
        if key in ("last", "step"):
            return torch.int64
        return self.window_dtype if key in ("window", "dots", "momentum_buffer") else None

    # ------------------------------------------------------------------------------------------------

    def _all_params(self) -> list[torch.Tensor]:
        return [p for group in self.param_groups for p in group["params"]]

    def _global_state(self, with_grad: list[torch.Tensor], d: int) -> dict[str, Any]:
        """The state dict holding the window: that of the first parameter that ever had a gradient."""
        for p in self._all_params():
            st = self.state.get(p)
            if st and "window" in st:
                if st["window"].shape[1] != d:
                    raise RuntimeError(f"MFAC: the window was built for {st['window'].shape[1]} coordinates "
                                       f"but the parameters now have {d}; parameters cannot be added")
                return st
        st = self.state[with_grad[0]]
        dev = with_grad[0].device
        st["window"] = torch.zeros(self.ngrads, d, dtype=self.window_dtype, device=dev)
        st["dots"] = torch.zeros(self.ngrads, self.ngrads, dtype=self.window_dtype, device=dev)
        st["last"] = torch.zeros((), dtype=torch.int64)
        st["step"] = torch.zeros((), dtype=torch.int64)
        return st

    def _joint_gradient(self, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        parts = []
        for group in self.param_groups:
            wd = float(group["weight_decay"])
            for p in group["params"]:
                if p.grad is None:
                    parts.append(torch.zeros(p.numel(), dtype=dtype, device=device))
                    continue
                g = p.grad + wd * p if wd > 0 else p.grad
                parts.append(g.reshape(-1).to(dtype))
        return torch.cat(parts)

    def ihvp_update(self, state: dict[str, Any], g: torch.Tensor) -> torch.Tensor:
        """Insert ``g`` into the window (replacing the oldest row), then return ``F̂⁻¹ g``."""
        m = state["window"].shape[0]
        k = int(state["last"])
        # While the window fills up, rows >= filled are still zero: A is block-diagonal with an m·I block
        # that contributes nothing, so only the leading filled × filled block is factored (exactly).
        filled = min(int(state["step"]) + 1, m)
        window, dots = state["window"][:filled], state["dots"][:filled, :filled]
        window[k] = g
        col = window @ g
        dots[k, :] = col
        dots[:, k] = col
        inv_damp = 1.0 / self.damp
        # A is formed and solved in float64 even for a float32 window: its entries ‖g‖²/λ are often 1e9 times
        # m, and float32 would round m·I away (A singular; the reference's LU then returns NaN)
        eye_m = torch.diag(torch.full((filled,), float(m), dtype=torch.float64, device=dots.device))
        # g is row k of the window, so by the push-through identity (λI + GᵀG/m)⁻¹Gᵀ = Gᵀ(λI + GGᵀ/m)⁻¹:
        #     F̂⁻¹ g = (m/λ) Gᵀ A⁻¹ e_k,   A = m·I + GGᵀ/λ.
        # The reference's Woodbury form (1/λ)(g − Gᵀ A⁻¹ G g/λ) subtracts two nearly equal vectors once
        # ‖g‖²/(mλ) is large (small damping, large gradients) and loses every digit; this form does not.
        e_k = torch.zeros(filled, dtype=torch.float64, device=dots.device)
        e_k[k] = 1.0
        y = solve_shifted_psd(inv_damp * dots.to(torch.float64) + eye_m, e_k, float(m))
        state["last"].fill_((k + 1) % m)
        return window.T @ (y * (m * inv_damp)).to(window.dtype)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One M-FAC step; ``closure`` (optional) re-evaluates the loss with gradients enabled."""
        loss = begin_step(self, closure, "MFAC")
        params = self._all_params()
        with_grad = [p for p in params if p.grad is not None]
        if not with_grad:
            return loss
        for group in self.param_groups:  # hyperparameters may have been changed by the user
            self._check_group(group)
        d = sum(p.numel() for p in params)
        state = self._global_state(with_grad, d)
        wdt = state["window"].dtype
        g = self._joint_gradient(wdt, state["window"].device)
        u = self.ihvp_update(state, g)

        offset = 0
        for group in self.param_groups:
            n = sum(p.numel() for p in group["params"])
            mu = float(group["momentum"])
            if mu > 0:
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros(d, dtype=wdt, device=u.device)
                buf = state["momentum_buffer"][offset:offset + n]
                buf.copy_(mu * buf + (1 - mu) * u[offset:offset + n])
                u[offset:offset + n] = buf
            for p in group["params"]:
                if p.grad is not None:
                    p.add_(u[offset:offset + p.numel()].view_as(p), alpha=-float(group["lr"]))
                offset += p.numel()
        state["step"] += 1
        return loss


def _from_fixture(fx: Mapping[str, Any], params: Mapping[str, torch.Tensor]) -> MFAC:
    hp = dict(fx["hyperparameters"])
    replay = fx.get("replay", {}) or {}
    window_dtype = {"float32": torch.float32, "float64": torch.float64}[replay.get("window_dtype", "float32")]
    return MFAC([params[n] for n in fx["param_order"]], lr=hp.pop("lr"), momentum=float(hp.pop("momentum", 0)),
                weight_decay=float(hp.pop("weight_decay", 0)), ngrads=int(hp.pop("ngrads")),
                damp=float(hp.pop("damp")), window_dtype=window_dtype, **hp)


register(OptimizerSpec(
    name="mfac",
    factory=MFAC,
    paper="Frantar, Kurtic & Alistarh 2021, M-FAC: Efficient Matrix-Free Approximations of Second-Order "
          "Information (NeurIPS), arXiv:2107.03356",
    reference="IST-DASLab/M-FAC@8116367:optim.py#MFAC (CPU: unpivoted LU in torch, sequential map)",
    search_space={
        "lr": FloatRange(1e-5, 1e-2, log=True),
        "momentum": Categorical((0.0, 0.9)),
        "weight_decay": FloatRange(1e-6, 1e-2, log=True),
        "ngrads": IntRange(16, 1024, log=True),
        "damp": FloatRange(1e-7, 1e-2, log=True),
    },
    summary="SGD preconditioned by the inverse of a sliding-window empirical Fisher (Woodbury, matrix-free)",
    fixture_names=("mfac",),
    from_fixture=_from_fixture,
))
