"""Every claim at its reduced setting (smaller, still asserting the paper's prediction: each check is the claim's
own predicted-vs-measured comparison with its stated tolerance); full settings under ``slow``."""

from __future__ import annotations

import pytest

from descend.claims import claim_ids, get_claim


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
@pytest.mark.parametrize("cid", claim_ids())
def test_claim_at_default_setting(cid):
    result = get_claim(cid).run(seed=0)
    _assert_pass(result)
