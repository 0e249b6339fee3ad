"""The data-constrained mode's ensembles: the metric, the plan's checks, and a real (tiny) run end to end."""

from __future__ import annotations

import math
import random

import pytest
from typer.testing import CliRunner

from descend.bench.executors import drain
from descend.bench.metrics import ensemble_metrics
from descend.bench.protocol import Plan
from descend.bench.report import summarize, write_html
from descend.bench.storage import Storage
from descend.cli import app


def _member(rng: random.Random, labels: list[int], classes: int = 4) -> dict:
    rows = []
    for _ in labels:
        logits = [rng.gauss(0.0, 2.0) for _ in range(classes)]
        m = max(logits)
        z = m + math.log(sum(math.exp(v - m) for v in logits))
        rows.append([v - z for v in logits])
    return {"val": {"log_probs": rows, "labels": labels}}


def _nll(member: dict) -> float:
    part = member["val"]
    return -sum(r[y] for r, y in zip(part["log_probs"], part["labels"], strict=True)) / len(part["labels"])


def test_ensemble_of_one_model_is_the_model_and_of_many_is_below_their_mean_loss():
    """K copies of one model score exactly that model (up to the log-sum-exp's rounding, a few ulps of values of
    order 1); the ensemble's cross-entropy is at most its members' mean (Jensen: -log is convex), and is
    computed example by example as -log of the averaged probability of the true class."""
    rng = random.Random(0)
    labels = [rng.randrange(4) for _ in range(50)]
    a = _member(rng, labels)
    assert ensemble_metrics([a, a, a])["val_loss"] == pytest.approx(_nll(a), rel=1e-12)
    members = [_member(rng, labels) for _ in range(3)]
    ens = ensemble_metrics(members)
    assert ens["val_loss"] <= sum(_nll(m) for m in members) / 3
    i = 7
    p = sum(math.exp(m["val"]["log_probs"][i][labels[i]]) for m in members) / 3
    one = ensemble_metrics([{"val": {"log_probs": [m["val"]["log_probs"][i]], "labels": [labels[i]]}}
                            for m in members])
    assert one["val_loss"] == pytest.approx(-math.log(p), rel=1e-12)
    assert 0.0 <= ens["val_acc"] <= 1.0
    with pytest.raises(ValueError, match="labels"):
        ensemble_metrics([a, _member(rng, [(y + 1) % 4 for y in labels])])
    with pytest.raises(ValueError, match="at least one"):
        ensemble_metrics([])


def test_plan_refuses_ensembles_outside_the_data_constrained_mode_or_beyond_its_seeds():
    cells = (("mlp_mnist1d", "s4k"),)
    with pytest.raises(ValueError, match="ensemble"):
        Plan(name="x", cells=cells, optimizers=("adamw",), seeds=3, ensemble=2)  # standard mode
    with pytest.raises(ValueError, match="ensemble"):
        Plan(name="x", cells=cells, optimizers=("adamw",), seeds=2, ensemble=3, mode="data-constrained")
    with pytest.raises(ValueError, match="predictions"):
        Plan(name="x", cells=(("matrix_sensing", "s"),), optimizers=("adamw",), seeds=2, ensemble=2,
             mode="data-constrained")
    plain = Plan(name="x", cells=cells, optimizers=("adamw",))
    assert "ensemble" not in plain.to_dict()  # plans without ensembles keep their stored form and digest
    with_ens = Plan(name="x", cells=cells, optimizers=("adamw",), seeds=2, ensemble=2, mode="data-constrained")
    assert Plan.from_dict(with_ens.to_dict()) == with_ens


def test_cli_refuses_a_bad_ensemble_with_exit_2(tmp_path):
    res = CliRunner().invoke(app, ["bench", "run", "--workloads", "mlp_mnist1d:s4k", "--optimizers", "adamw",
                                   "--ensemble", "2", "--storage", str(tmp_path / "b.db")])
    assert res.exit_code == 2 and "--ensemble" in res.output and "data-constrained" in res.output
    assert not (tmp_path / "b.db").exists()


def test_data_constrained_run_scores_the_ensemble_of_its_final_seeds(tmp_path):
    """Real trials on the 5 000-signal MNIST-1D MLP (tiny budget): the final runs of the first K seeds store
    their held-out predictions, the summary's ensemble is recomputed from them, and the report shows it."""
    plan = Plan(name="ens", cells=(("mlp_mnist1d", "s4k"),), optimizers=("adamw",), trials=1, seeds=2,
                budget_scale=0.05, mode="data-constrained", ladder=(), noise_floor=False, widen=0, ensemble=2)
    storage = Storage(str(tmp_path / "ens.db"))
    storage.save_plan(plan.name, plan.to_dict())
    drain(storage, plan)
    finals = sorted(storage.runs(plan=plan.name, phase="final"), key=lambda r: r.seed)
    assert len(finals) == 2 and all("predictions" in r.provenance for r in finals)
    assert all("predictions" not in r.provenance for r in storage.runs(plan=plan.name, phase="tune"))
    for r in finals:  # each member's stored predictions give back its own final metrics
        own = ensemble_metrics([r.provenance["predictions"]])
        # the same float32 log-probabilities, summed in float32 by torch's cross-entropy (pairwise reduction:
        # relative error <= log2(N) * eps32 ~ 6e-7 for N = 500) and in float64 here: 1e-5 is well above that
        assert own["test_loss"] == pytest.approx(r.final["test_loss"], rel=1e-5)
    res = summarize(storage, plan.name).cells["mlp_mnist1d:s4k"]["adamw"]
    expected = ensemble_metrics([r.provenance["predictions"] for r in finals])
    assert res.ensemble == expected
    assert res.ensemble["test_loss"] <= res.ensemble_members["test_loss"]
    page = write_html(summarize(storage, plan.name), tmp_path / "r.html").read_text()
    assert "<h2>Ensembles</h2>" in page and "an ensemble of 2 adamw runs" in page
