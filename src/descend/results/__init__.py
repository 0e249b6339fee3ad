"""The core every study family shares: one database (``db``), one results table (``store``), provenance, and
self-contained HTML reports (``html``).  It imports no family: ``bench``, ``bilevel``, ``claims``, ``classic``,
``rl``, ``surrogate`` import it, never the other way round.
"""

from __future__ import annotations

from .db import StorageError
from .provenance import provenance
from .store import Record, ResultStore

__all__ = ["Record", "ResultStore", "StorageError", "provenance"]
