"""Every script in examples/ runs as a user would run it (a subprocess from the repository root) and checks
its own result (each ends with an assert on what it trained)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Lightning and the HF Trainer start slowly and the workload example runs a small compare(): the slow step
SLOW = {"lightning_module.py", "hf_trainer.py", "custom_workload.py"}


@pytest.mark.parametrize("script", [pytest.param(p, marks=pytest.mark.slow) if p.name in SLOW else p
                                    for p in sorted((ROOT / "examples").glob("*.py"))], ids=lambda p: p.name)
def test_example_runs(script: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1", "DESCEND_COMPILE": "0",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=900, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
