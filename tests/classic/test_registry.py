"""The classic-solver registry: registration rules, lazy loading, and the one-line errors the CLI shows."""

import doctest

import pytest

from descend.classic import registry


def test_doctest():
    failures, _ = doctest.testmod(registry)
    assert failures == 0


def test_every_listed_module_registers_a_spec():
    names = registry.available()
    assert len(names) >= len(registry.MODULES)
    for name in names:
        spec = registry.get(name)
        assert spec.problems and spec.paper


def test_duplicate_and_unknown_names_are_errors():
    spec = registry.SolverSpec(name="dup-test", title="t", paper="p", problems={"a": "a"}, run=lambda r: [])
    registry.register(spec)
    try:
        with pytest.raises(ValueError, match="already registered"):
            registry.register(registry.SolverSpec(name="dup-test", title="t", paper="p", problems={"a": "a"},
                                                  run=lambda r: []))
        with pytest.raises(ValueError, match="--problem must be one of"):
            spec.check_problem("b")
    finally:
        registry.unregister("dup-test")
    with pytest.raises(ValueError, match="SOLVER must be one of"):
        registry.get("no-such-solver")
    with pytest.raises(ValueError, match="name must be"):
        registry.SolverSpec(name="bad name", title="t", paper="p", problems={"a": "a"}, run=lambda r: [])
