"""The claim framework: settings validate (one-line errors naming the parameter), overrides parse by type, the
prediction follows the setting, and checks compare as documented."""

from __future__ import annotations

import math

import pytest

from descend.claims import Check, claim_ids, get_claim


def test_registry_has_every_claim_file():
    ids = claim_ids()
    assert ids[:1] == ["E1"] and set(ids) <= {f"E{i}" for i in range(1, 8)}
    for cid in ids:
        claim = get_claim(cid)
        assert claim.id == cid and claim.paper.year > 2000 and claim.prediction and claim.tolerance_why
        claim.Setting()  # defaults validate
        claim.Setting.with_overrides(claim.reduced)  # the test setting validates
    with pytest.raises(KeyError, match="unknown claim 'E99'"):
        get_claim("E99")


def test_overrides_parse_by_type_and_recompute_the_prediction():
    e1 = get_claim("E1")
    s = e1.setting({"d": "8", "n": "40", "sigma": "0.5"})
    assert (s.d, s.n, s.sigma) == (8, 40, 0.5)
    assert e1.predict(s)["vgamma_iso"] == pytest.approx(40 / (40 + 8 + 1 + 0.25), rel=1e-15)
    assert e1.predict(e1.setting())["risk_iso"] == pytest.approx(5 * 6 / 26, rel=1e-12)  # d(d+1)/(n+d+1)
    e7 = get_claim("E7")
    s7 = e7.setting({"ps": "300,500"})
    assert s7.ps == (300, 500)
    assert e7.predict(s7)["var_p300"] == pytest.approx(100 / 199, rel=1e-15)


@pytest.mark.parametrize(("over", "message"), [
    ({"d": "0"}, r"^d must be in \[1, 32\], got 0$"),
    ({"d": "2.5"}, r"^d must be an integer, got '2.5'$"),
    ({"lr": "nan"}, r"^lr must be finite"),
    ({"nope": "1"}, r"^unknown setting 'nope'; known: d, n"),
])
def test_bad_overrides_are_one_line_errors(over, message):
    with pytest.raises(ValueError, match=message):
        get_claim("E1").setting(over)


def test_cross_field_validation():
    with pytest.raises(ValueError, match="k must be > r"):
        get_claim("E3").setting({"k": "2", "r": "2"})
    with pytest.raises(ValueError, match="ps must all be > n"):
        get_claim("E7").setting({"n": "100", "ps": "101,400"})


def test_checks():
    assert Check.close("a", 1.0, 1.04, atol=0.05).passed
    assert not Check.close("a", 1.0, 1.06, atol=0.05).passed
    assert Check.close("a", 2.0, 2.09, rtol=0.05).passed
    assert not Check.close("a", 1.0, math.nan, atol=1.0).passed
    assert Check.at_most("b", 0.9, 1.0).passed and not Check.at_most("b", 1.1, 1.0).passed
    assert Check.at_least("c", 1.1, 1.0).passed and not Check.at_least("c", 0.9, 1.0).passed


def test_run_rejects_bad_seed_and_foreign_setting():
    e3, e7 = get_claim("E3"), get_claim("E7")
    with pytest.raises(ValueError, match="seed must be an integer ≥ 0"):
        e3.run(seed=-1)
    with pytest.raises(TypeError, match="setting must be a MatrixSensingSetting"):
        e3.run(e7.setting())
