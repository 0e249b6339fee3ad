"""The fair optimizer benchmark: ``descend bench`` on the command line, :func:`compare` from Python."""

from .compare import CompareResult, compare

__all__ = ["CompareResult", "compare"]
