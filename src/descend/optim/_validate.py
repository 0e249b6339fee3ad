"""The optimizers' argument checks: re-exported from :mod:`descend._validate`, the one module every family uses.

Kept so that ``from ._validate import check_float`` in the optimizers (and in code written against this path)
keeps working; new code imports :mod:`descend._validate` directly.
"""

from __future__ import annotations

from descend._validate import (
    check_betas,
    check_choice,
    check_flag,
    check_float,
    check_int,
    check_no_sparse_or_complex,
)

__all__ = [
    "check_betas",
    "check_choice",
    "check_flag",
    "check_float",
    "check_int",
    "check_no_sparse_or_complex",
]
