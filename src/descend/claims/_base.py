"""The claim framework: a validated setting, a prediction computed from it, checks with stated tolerances.

A claim is one class (one file) deriving from :class:`Claim`:

* ``paper`` — authors, year, title (a :class:`Paper`);
* ``Setting`` — a frozen dataclass deriving from :class:`Setting` whose fields are declared with :func:`param`
  (default, allowed range, help); it validates itself on construction, so ``Setting(d=0)`` raises a one-line
  ``ValueError`` naming ``d`` and its range;
* ``predict(setting)`` — the paper's prediction as numbers computed from the setting (recomputed for any override);
* ``measure(setting, seed)`` — trains / simulates, and returns the :class:`Check` list (predicted vs measured, the
  tolerance and its kind) and the curves for the plot;
* ``tolerance_why`` — why each tolerance is what it is (statistical: a Monte-Carlo / seed band; numerical: the
  conditioning of the computation);
* ``reduced`` — the overrides the default test suite uses (smaller, still asserting the prediction).

:meth:`Claim.run` wraps ``measure`` with timing and the verdict: PASS only when every check passes.
"""

from __future__ import annotations

import dataclasses
import math
import time
import types
import typing
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

__all__ = ["Check", "Claim", "ClaimResult", "Paper", "Setting", "param"]

S = TypeVar("S", bound="Setting")

_SCALARS: tuple[type, ...] = (bool, int, float, str)


def param(default: Any, *, lo: float | None = None, hi: float | None = None, choices: Sequence[str] | None = None,
          help: str = "") -> Any:
    """Declare a setting parameter: its default, the closed range ``[lo, hi]`` (for numbers and each element of a
    tuple of numbers) or the allowed ``choices`` (strings), and a one-line help text."""
    return field(default=default, metadata={"lo": lo, "hi": hi, "choices": tuple(choices) if choices else None,
                                            "help": help})


def _describe_range(meta: Mapping[str, Any]) -> str:
    if meta.get("choices"):
        return "one of " + ", ".join(meta["choices"])
    lo, hi = meta.get("lo"), meta.get("hi")
    lo_s = "-inf" if lo is None else f"{lo:g}"
    hi_s = "inf" if hi is None else f"{hi:g}"
    return f"in [{lo_s}, {hi_s}]"


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _tuple_element(tp: Any) -> type | None:
    """For ``tuple[float, ...]`` return ``float``; None for scalar types."""
    origin = typing.get_origin(tp)
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis and args[0] in _SCALARS:
            return typing.cast(type, args[0])
        raise TypeError(f"setting tuples must be tuple[T, ...], got {tp}")
    return None


def _coerce_scalar(name: str, tp: type, value: Any) -> Any:
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "0", "false", "no"):
            return value.lower() in ("1", "true", "yes")
        raise ValueError(f"{name} must be a boolean (true/false), got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ValueError(f"{name} must be an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if tp is float:
        if isinstance(value, bool):
            raise ValueError(f"{name} must be a number, got {value!r}")
        try:
            out = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a number, got {value!r}") from None
        if not math.isfinite(out):
            raise ValueError(f"{name} must be finite, got {value!r}")
        return out
    if tp is str:
        if not isinstance(value, str):
            raise ValueError(f"{name} must be a string, got {value!r}")
        return value
    raise TypeError(f"unsupported setting type {tp} for {name}")


def _check_range(name: str, value: Any, meta: Mapping[str, Any]) -> None:
    choices = meta.get("choices")
    if choices is not None:
        if value not in choices:
            raise ValueError(f"{name} must be {_describe_range(meta)}, got {value!r}")
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    lo, hi = meta.get("lo"), meta.get("hi")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ValueError(f"{name} must be {_describe_range(meta)}, got {value!r}")


@dataclass(frozen=True)
class Setting:
    """Base of every claim's setting: typed fields declared with :func:`param`, validated on construction."""

    def __post_init__(self) -> None:
        hints = _field_types(type(self))
        for f in dataclasses.fields(self):
            tp = hints[f.name]
            value = getattr(self, f.name)
            elem = _tuple_element(tp)
            if elem is not None:
                if isinstance(value, str):
                    value = tuple(v.strip() for v in value.split(",") if v.strip())
                if not isinstance(value, (tuple, list)) or len(value) == 0:
                    raise ValueError(f"{f.name} must be a non-empty comma-separated list, got {value!r}")
                value = tuple(_coerce_scalar(f.name, elem, v) for v in value)
                for v in value:
                    _check_range(f.name, v, f.metadata)
            else:
                value = _coerce_scalar(f.name, typing.cast(type, tp), value)
                _check_range(f.name, value, f.metadata)
            object.__setattr__(self, f.name, value)
        self.validate()

    def validate(self) -> None:
        """Cross-field checks (override; raise ``ValueError`` with a one-line message)."""

    @classmethod
    def with_overrides(cls: type[S], overrides: Mapping[str, Any], base: S | None = None) -> S:
        """A new setting from ``base`` (default: the defaults) with ``overrides`` (strings are parsed by the field's
        type; tuples as comma-separated lists). An unknown key raises ``ValueError`` listing the known ones."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = [k for k in overrides if k not in names]
        if unknown:
            raise ValueError(f"unknown setting {unknown[0]!r}; known: {', '.join(names)}")
        start = base if base is not None else cls()
        return dataclasses.replace(start, **dict(overrides))

    def as_dict(self) -> dict[str, Any]:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
                for f in dataclasses.fields(self)}

    @classmethod
    def describe(cls) -> list[tuple[str, str, str, str]]:
        """(name, default, range, help) per parameter, for ``claims list``."""
        hints = _field_types(cls)
        rows = []
        for f in dataclasses.fields(cls):
            default = f.default
            shown = ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in default) \
                if isinstance(default, tuple) else str(default)
            kind = hints[f.name]
            kind_s = kind.__name__ if isinstance(kind, type) and not isinstance(kind, types.GenericAlias) else str(kind)
            rows.append((f.name, shown, f"{kind_s} {_describe_range(f.metadata)}", f.metadata.get("help", "")))
        return rows


@dataclass(frozen=True)
class Paper:
    authors: str
    year: int
    title: str
    where: str = ""

    def cite(self) -> str:
        return f"{self.authors} ({self.year}). {self.title}." + (f" {self.where}." if self.where else "")


@dataclass(frozen=True)
class Check:
    """One predicted-vs-measured comparison.

    ``kind`` is ``"close"`` (``|measured - predicted| <= tolerance``), ``"at_most"`` (``measured <= predicted``,
    the prediction being a bound; ``tolerance`` is 0) or ``"at_least"`` (``measured >= predicted``)."""

    name: str
    predicted: float
    measured: float
    tolerance: float
    kind: str = "close"
    note: str = ""

    @property
    def passed(self) -> bool:
        if not math.isfinite(self.measured):
            return False
        if self.kind == "close":
            return abs(self.measured - self.predicted) <= self.tolerance
        if self.kind == "at_most":
            return self.measured <= self.predicted + self.tolerance
        if self.kind == "at_least":
            return self.measured >= self.predicted - self.tolerance
        raise ValueError(f"unknown check kind {self.kind!r}")

    @classmethod
    def close(cls, name: str, predicted: float, measured: float, *, atol: float = 0.0, rtol: float = 0.0,
              note: str = "") -> Check:
        return cls(name, float(predicted), float(measured), atol + rtol * abs(float(predicted)), "close", note)

    @classmethod
    def at_most(cls, name: str, measured: float, bound: float, note: str = "") -> Check:
        return cls(name, float(bound), float(measured), 0.0, "at_most", note)

    @classmethod
    def at_least(cls, name: str, measured: float, bound: float, note: str = "") -> Check:
        return cls(name, float(bound), float(measured), 0.0, "at_least", note)

    def expectation(self) -> str:
        if self.kind == "close":
            return f"{self.predicted:.4g} ± {self.tolerance:.2g}"
        return f"{'≤' if self.kind == 'at_most' else '≥'} {self.predicted:.4g}"

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "predicted": self.predicted, "measured": self.measured,
                "tolerance": self.tolerance, "kind": self.kind, "note": self.note, "passed": self.passed}


@dataclass
class ClaimResult:
    claim: str
    setting: dict[str, Any]
    seed: int
    checks: list[Check]
    curve: dict[str, list[float]]
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    @property
    def verdict(self) -> str:
        return "PASS" if self.passed else "FAIL"


class Claim(ABC):
    """One theory claim as an experiment. Subclasses set the class attributes and implement predict / measure."""

    id: ClassVar[str]
    title: ClassVar[str]
    paper: ClassVar[Paper]
    Setting: ClassVar[type[Setting]]
    prediction: ClassVar[str]  # the formula, in words / plain math
    tolerance_why: ClassVar[str]
    reduced: ClassVar[dict[str, Any]] = {}  # overrides for the fast default test suite

    @abstractmethod
    def predict(self, setting: Any) -> dict[str, float]:
        """The paper's prediction for this setting (numbers only; no training)."""

    @abstractmethod
    def measure(self, setting: Any, seed: int) -> tuple[list[Check], dict[str, list[float]]]:
        """Run the experiment: the checks (predicted vs measured) and the curves for the plot."""

    @abstractmethod
    def plot(self, curve: Mapping[str, Sequence[float]], setting: Mapping[str, Any], fig: Any) -> None:
        """Draw measured vs predicted from a stored curve onto a matplotlib Figure (add its own axes)."""

    def setting(self, overrides: Mapping[str, Any] | None = None) -> Any:
        return self.Setting.with_overrides(overrides or {})

    def run(self, setting: Any = None, seed: int = 0) -> ClaimResult:
        if setting is None:
            setting = self.Setting()
        if not isinstance(setting, self.Setting):
            raise TypeError(f"{self.id}: setting must be a {self.Setting.__name__}, got {type(setting).__name__}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be an integer ≥ 0, got {seed!r}")
        start = time.perf_counter()
        checks, curve = self.measure(setting, seed)
        return ClaimResult(self.id, setting.as_dict(), seed, checks,
                           {k: [float(v) for v in vals] for k, vals in curve.items()},
                           time.perf_counter() - start)
