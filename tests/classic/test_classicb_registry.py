"""The registry hooks of solvers 4–6 (SOR bandit, DCDM, convex ReLU): run on tiny options, draw the figure."""

from __future__ import annotations

import pytest

from descend.classic import registry

pytest.importorskip("matplotlib")
pytest.importorskip("cvxpy")


@pytest.mark.parametrize("name,problem,options,methods", [
    ("sor", "low", {"T": 40, "window": 20, "stride": 5}, {"tsallis", "chebcb", "fixed-omega", "instance-optimal"}),
    ("dcdm", "poisson", {"m": 8, "steps": 3, "channels": 4, "n_test": 2}, {"cg", "dcdm-cnn"}),
    ("convex-relu", "synthetic", {"n": 6, "iterations": 20}, {"cvxpy", "admm", "adam-nonconvex"}),
])
def test_hook_runs_and_draws(name, problem, options, methods):
    assert name in registry.available()
    spec = registry.get(name)
    said: list[str] = []
    traces = spec.run(registry.RunRequest(problem, seed=0, quick=True, options=options, progress=said.append))
    assert {t.method for t in traces} == methods and said
    for t in traces:
        lengths = {len(v) for v in t.curve.values()}
        assert all(n >= 1 for n in lengths)
    assert spec.figure is not None
    fig = spec.figure(traces)
    assert fig.axes
    with pytest.raises(ValueError, match="--problem"):
        spec.check_problem("nope")
