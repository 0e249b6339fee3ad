"""Golden-trajectory replays (fixtures recorded from the authors' code) and the replayer's CLI contract."""

from __future__ import annotations

import copy
import json

import pytest

from descend.bilevel import replay as rp

from ..conftest import BILEVEL_FIXTURES

FILES = sorted(BILEVEL_FIXTURES.glob("*.json"))


def test_fixture_directory_is_populated():
    assert len(FILES) >= 6, f"expected the bilevel fixtures in {BILEVEL_FIXTURES}"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_fixture_replays_within_tolerance(path):
    r = rp.replay_file(path, diagnostics=False)
    assert r.passed, f"{path.name}: err/tol {r.max_ratio:.3g}, first failure at {r.first_failing_iteration}"
    # only the costly diagnostic (and BOME's run summary without a tolerance) may be left unchecked
    assert set(r.unchecked) <= {"hypergrad_norm_estimate", "min_abs_margin"}
    assert r.observable_ratios, "observables were compared"


@pytest.mark.slow
@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_fixture_replays_with_all_diagnostics(path):
    r = rp.replay_file(path, diagnostics=True)
    assert r.passed
    assert set(r.unchecked) <= {"min_abs_margin"}


def _load(stem):
    return json.loads((BILEVEL_FIXTURES / f"{stem}.json").read_text())


def test_perturbed_trajectory_fails():
    fx = _load("amigo_cg__n30_kappa100_K60")
    fx["trajectory"][3]["x"][0] *= 1 + 1e-7
    r = rp.replay(fx, "perturbed", diagnostics=False)
    assert not r.passed and r.first_failing_iteration == fx["trajectory"][3]["k"]


def test_wrong_variant_fails():
    """BOME with φ = η·q (the hyper-cleaning variant) must not match the toy-code fixture."""
    fx = _load("bome__coreset_eta0.1_k10_lr0.02")
    spec = rp._SOLVERS["bome"]
    old = dict(spec.fixed)
    try:
        spec.fixed["phi"] = "value"
        assert not rp.replay(fx, "variant").passed
    finally:
        spec.fixed.clear()
        spec.fixed.update(old)


@pytest.mark.parametrize("mutate, match", [
    (lambda fx: fx.update(format="other/1"), "format"),
    (lambda fx: fx.update(solver="nope"), "no registered solver for fixture solver 'nope'"),
    (lambda fx: fx["hyperparameters"].update(extra=1), "unknown"),
    (lambda fx: fx["hyperparameters"].pop("T"), "missing"),
    (lambda fx: fx.pop("tolerance"), "missing key 'tolerance'"),
    (lambda fx: fx["observables"].update(new_thing=[0.0] * 60), "does not compute"),
])
def test_uninterpretable_fixture_raises(mutate, match):
    fx = copy.deepcopy(_load("stocbio__n30_kappa100_K60"))
    mutate(fx)
    with pytest.raises(rp.FixtureError, match=match):
        rp.replay(fx, "bad", diagnostics=False)


def test_cli_exit_codes(tmp_path, capsys):
    good = BILEVEL_FIXTURES / "soba__n30_kappa100_K80_decay.json"
    assert rp.main(["--no-diagnostics", str(good)]) == 0
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert rp.main([str(bad)]) == 2
    fx = json.loads(good.read_text())
    fx["trajectory"][-1]["v"][0] += 1.0
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps(fx))
    assert rp.main(["--no-diagnostics", str(wrong)]) == 1
    assert rp.main([str(tmp_path / "empty_dir_does_not_exist")]) == 2
    out = capsys.readouterr().out
    assert "REFUSED" in out and "FAIL" in out
