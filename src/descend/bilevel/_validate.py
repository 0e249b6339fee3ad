"""Re-exports :mod:`descend._validate`, the one argument-check module every family uses.

Kept so that code written against this path keeps importing; descend's own modules import
:mod:`descend._validate` directly.
"""

from __future__ import annotations

from descend._validate import (
    check_choice,
    check_finite,
    check_float,
    check_int,
    check_optional_int,
    check_vector,
)

__all__ = ["check_choice", "check_finite", "check_float", "check_int", "check_optional_int", "check_vector"]
