"""Every claim at its reduced setting (smaller, still asserting the paper's prediction: each check is the claim's
own predicted-vs-measured comparison with its stated tolerance); full settings under ``slow``."""

from __future__ import annotations

import pytest

from descend.claims import claim_ids, get_claim

# Claims whose default setting does not reproduce (measured, explained in the claim's docstring and in the README
# notes). strict: if one starts passing, the test says so and the entry must go.
KNOWN_FAIL = {
    "E2": "per-head OV last-entry-only / off-diagonal KQ fail at d=5, n=20, H=4: heads sharing a KQ only identify "
          "the sum of their OV rows (see e2_softmax_heads docstring)",
    "E5": "c=0.75 slope −0.62, not −0.75: with i.i.d. init the initial output grows as m^(c−1/2) (see "
          "e5_theta_lazy docstring)",
}


def _assert_pass(result) -> None:
    bad = [f"{c.name}: predicted {c.expectation()}, measured {c.measured:.4g} {c.note}" for c in result.checks
           if not c.passed]
    assert result.passed, "; ".join(bad)


@pytest.mark.parametrize("cid", claim_ids())
def test_claim_at_reduced_setting(cid):
    claim = get_claim(cid)
    result = claim.run(claim.setting(claim.reduced), seed=0)
    assert result.checks and result.curve
    _assert_pass(result)


@pytest.mark.slow
@pytest.mark.parametrize("cid", [pytest.param(c, marks=pytest.mark.xfail(strict=True, reason=KNOWN_FAIL[c]))
                                 if c in KNOWN_FAIL else c for c in claim_ids()])
def test_claim_at_default_setting(cid):
    result = get_claim(cid).run(seed=0)
    _assert_pass(result)


def test_e5_symmetric_init_recovers_the_slope():
    """The E5 finding, checked: with f_0 = 0 the c=0.75 slope is −c within the band (reduced widths)."""
    claim = get_claim("E5")
    result = claim.run(claim.setting({"widths": (100, 400, 1600), "cs": (0.75,), "symmetric_init": True,
                                      "max_steps": 6000}))
    _assert_pass(result)
