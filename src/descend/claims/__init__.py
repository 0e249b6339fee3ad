"""Theory claims from descend's seed papers, each as a small CPU experiment with a verdict.

Each claim is one module (paper; the setting as a validating dataclass; the prediction as a formula of the setting;
the tolerance and why; ``run(setting, seed) -> ClaimResult`` with predicted vs measured numbers, a curve for the plot
and PASS / FAIL). The registry maps the claim id (``E1`` … ``E7``) to the claim object::

    from descend.claims import get_claim
    claim = get_claim("E1")
    result = claim.run(claim.setting({"d": 8, "n": 40}), seed=0)
    print(result.verdict, [(c.name, c.predicted, c.measured) for c in result.checks])
"""

from __future__ import annotations

import importlib
import importlib.util

from ._base import Check, Claim, ClaimResult, Paper, Setting, param

__all__ = ["Check", "Claim", "ClaimResult", "Paper", "Setting", "claim_ids", "get_claim", "param"]

# id -> module (one file per claim); imported on first use so `import descend.claims` stays cheap.
_MODULES: dict[str, str] = {
    "E1": "e1_lsa_gd",
    "E2": "e2_softmax_heads",
    "E3": "e3_matrix_sensing",
    "E4": "e4_sgd_stability",
    "E5": "e5_theta_lazy",
    "E6": "e6_dlgn",
    "E7": "e7_benign_overfitting",
}
_CACHE: dict[str, Claim] = {}


def claim_ids() -> list[str]:
    """The registered claim ids whose module is present, in order."""
    out = []
    for cid, mod in _MODULES.items():
        if importlib.util.find_spec(f"{__name__}.{mod}") is not None:
            out.append(cid)
    return out


def get_claim(claim_id: str) -> Claim:
    """The claim registered under ``claim_id`` (case-insensitive); ``KeyError`` listing the known ids otherwise."""
    key = claim_id.upper()
    if key not in _MODULES or key not in claim_ids():
        raise KeyError(f"unknown claim {claim_id!r}; known: {', '.join(claim_ids())}")
    if key not in _CACHE:
        module = importlib.import_module(f"{__name__}.{_MODULES[key]}")
        _CACHE[key] = module.CLAIM
    return _CACHE[key]
