"""The core every study family shares: one database (``db``), one results table (``store``), provenance,
self-contained HTML reports (``html``), and what runs a study in many processes: leases with heartbeats
(``leases``), plans keyed by family (``plans``), a store with both (``study``) and the generic runner
(``runner.drain``: pending work → claim → run → store, threads or Ray, until nothing is missing).  It imports no
family: ``bench``, ``bilevel_bench``, ``claims``, ``classic``, ``rl``, ``surrogate`` import it and plug in their
adapters (a :class:`~descend.results.runner.Work`), never the other way round.
"""

from __future__ import annotations

from .db import StorageError
from .provenance import provenance
from .store import Record, ResultStore

__all__ = ["Record", "ResultStore", "StorageError", "provenance"]
