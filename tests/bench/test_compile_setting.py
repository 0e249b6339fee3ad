"""``DESCEND_COMPILE`` is a per-trial setting: set while a trial runs, restored after it (never process-wide)."""

from __future__ import annotations

import os
import threading

import pytest

from descend.bench.executors import drain
from descend.bench.protocol import Plan
from descend.bench.storage import Storage
from descend.bench.trial import compile_setting, run_trial
from descend.optim._fused import ENV_VAR, compile_available

from .test_executors import fake_run


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)


def _seen_during_trial(**kwargs) -> list[str | None]:
    seen: list[str | None] = []
    run_trial("matrix_sensing", "s", "adamw", {"lr": 1e-3}, 0, 2, evaluations=1,
              progress=lambda k: seen.append(os.environ.get(ENV_VAR)), **kwargs)
    return seen


def test_trials_are_eager_by_default_and_leave_the_environment_alone(no_env):
    assert _seen_during_trial() == ["0", "0"]
    assert ENV_VAR not in os.environ  # restored: nothing set for the rest of the process (or Ray's workers)
    assert _seen_during_trial(compile=True) == ["1", "1"]
    assert ENV_VAR not in os.environ


def test_a_user_setting_is_honoured_and_kept(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "1")
    assert _seen_during_trial() == ["1", "1"]
    assert _seen_during_trial(compile=False) == ["0", "0"]
    assert os.environ[ENV_VAR] == "1"


def test_concurrent_trials_keep_the_setting_until_the_last_ends(no_env):
    inside, release = threading.Event(), threading.Event()
    seen: list[str | None] = []

    def long_trial() -> None:
        with compile_setting(None):
            inside.set()
            release.wait(10)
            seen.append(os.environ.get(ENV_VAR))
            seen.append(str(compile_available("cpu")))

    t = threading.Thread(target=long_trial)
    t.start()
    inside.wait(10)
    with compile_setting(None):  # a second trial starts and ends while the first still runs
        pass
    release.set()
    t.join()
    assert seen == ["0", "False"]  # the first trial's setting outlived the second trial's exit
    assert ENV_VAR not in os.environ


def test_drain_does_not_set_the_variable_process_wide(tmp_path, no_env):
    plan = Plan(name="env", cells=(("matrix_sensing", "s"),), optimizers=("adamw",), trials=1, seeds=1,
                budget_scale=0.1, ladder=(), noise_floor=False, widen=0, trial_scaling="fixed")
    assert drain(Storage(str(tmp_path / "e.db")), plan, executor=fake_run, poll=0.01) == 2
    assert ENV_VAR not in os.environ
