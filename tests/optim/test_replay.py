"""Every golden fixture replays within its own tolerance, and the replayer refuses what it cannot interpret."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import descend.optim  # noqa: F401  (registers every optimizer)
from descend.optim import registry
from descend.optim.replay import FixtureError, NotRegistered, load_fixture, main, replay, replay_file

from ..conftest import fixture_files

FILES = fixture_files()


def _replayable(path: Path) -> Any:
    """The fixture as a test case; one of an optimizer descend does not register is listed as skipped."""
    key = json.loads(path.read_text(encoding="utf-8")).get("optimizer")
    if any(key in registry.get(n).fixture_names for n in registry.available()):
        return pytest.param(path, id=path.stem)
    return pytest.param(path, id=path.stem,
                        marks=pytest.mark.skip(reason=f"no registered optimizer for fixture optimizer {key!r}"))


def test_fixtures_are_present() -> None:
    assert len(FILES) >= 20
    registered = [p for p in FILES if not _replayable(p).marks]
    assert len(registered) >= 28, "every optimizer with fixtures that descend registers is replayed"


@pytest.mark.parametrize("path", [_replayable(p) for p in FILES])
def test_fixture_replays_within_tolerance(path: Path) -> None:
    result = replay_file(path)
    assert result.passed, (f"{path.name}: max err/tol {result.max_ratio:.3g} (max |err| {result.max_abs_error:.3g}), "
                           f"first failing step {result.first_failing_step}, observables {result.observable_ratios}")


def test_a_corrupted_trajectory_is_detected() -> None:
    fx = load_fixture(FILES[0])
    name = fx["param_order"][0]
    fx["trajectory"][-1][name][0] += 1e-3 + 1e-3 * abs(fx["trajectory"][-1][name][0])
    result = replay(fx, "corrupted")
    assert not result.passed and result.first_failing_step == len(fx["trajectory"])


def test_unknown_optimizer_and_format_are_refused(tmp_path: Path) -> None:
    fx = load_fixture(FILES[0])
    fx["optimizer"] = "no_such_optimizer"
    with pytest.raises(NotRegistered, match="no registered optimizer for fixture optimizer 'no_such_optimizer'"):
        replay(fx)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "something-else/9"}))
    with pytest.raises(FixtureError, match="format"):
        load_fixture(bad)
    assert main([str(bad)]) == 2


def test_cli_exit_status(tmp_path: Path) -> None:
    ok = subprocess.run([sys.executable, "-m", "descend.optim.replay", str(FILES[0])],
                        capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "1 passed, 0 failed" in ok.stdout
    fx = load_fixture(FILES[0])
    fx["trajectory"][0][fx["param_order"][0]][0] += 1.0
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(fx))
    bad = subprocess.run([sys.executable, "-m", "descend.optim.replay", str(broken)],
                         capture_output=True, text=True, check=False)
    assert bad.returncode == 1 and "FAIL" in bad.stdout
