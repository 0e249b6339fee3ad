"""Classic structured solvers from the seed papers (torch-based).

* :mod:`descend.classic.bcd` — greedy block coordinate descent (Nutini, Laradji, Schmidt, JMLR 2022).
* :mod:`descend.classic.gns` — gradient-regularized Newton with gradient-normalized smoothness
  (Semenov, Jaggi, Doikov 2025, Algorithm 1).
* :mod:`descend.classic.adasketch` — AdaSketch-Newton (Hong, Na, Mahoney, Kolar, ICML 2023).

Every solver registers a :class:`~descend.classic.registry.SolverSpec` (see :mod:`descend.classic.registry`),
which is what ``descend classic run`` / ``descend classic report`` use.  Solver modules are imported lazily.
"""

from __future__ import annotations

from . import registry
from .registry import RunRequest, SolverSpec, Trace

__all__ = ["RunRequest", "SolverSpec", "Trace", "registry"]
