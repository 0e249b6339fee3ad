"""Where a result came from: machine, versions, code revision — stored with every result of every family."""

from __future__ import annotations

import functools
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

__all__ = ["provenance"]


@functools.lru_cache(maxsize=1)
def provenance() -> dict[str, Any]:
    """Machine, versions and code revision (computed once per process)."""
    import torch

    from .. import __version__

    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5, check=False).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        rev = None
    return {"machine": platform.node(), "platform": platform.platform(), "processor": platform.processor(),
            "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "torch": torch.__version__, "descend": __version__,
            "git": rev}
