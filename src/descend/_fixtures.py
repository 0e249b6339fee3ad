"""Machinery shared by the golden-trajectory replayers (:mod:`descend.optim.replay`, :mod:`descend.bilevel.replay`).

A replayer first **validates** a fixture against its format, in one pass and before anything is built
(:func:`read_json`, then a declarative :class:`Schema` plus the format's cross-field checks), so that every
problem with a file is reported as one line naming the file, the place in the file and the problem; only a
file that passes is replayed.  Both formats store recorded values and a tolerance ``{"rtol", "atol"}``; a
value passes when ``|actual - expected| <= atol + rtol * |expected|`` -- a comparison that NaN or an infinity
on either side fails (:class:`Comparator`).

What validation guarantees to the replay code: every number the replay reads is a finite float (or an int
where an int belongs), every array has the length its shape or the trajectory asks for, every name refers
to a parameter that exists, the trajectory is not empty, and the tolerance is finite, non-negative and not
vacuous (``rtol < 1``, and ``atol`` below the largest recorded magnitude, so that an all-zero trajectory
cannot pass).

Outcomes of one file, in increasing severity, and the exit status a command-line run returns for the worst
of them (:func:`run_cli`): ``ok`` (0), ``skipped`` -- the fixture is well formed but nothing in descend
replays its optimizer or solver (0; 3 with ``--strict``), ``FAIL`` (1), ``REFUSED`` -- not a valid fixture (2),
``ERROR`` -- the replay itself raised (2; a bug, the traceback is printed with ``--traceback``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "ANY", "Arr", "Bool", "Comparator", "FixtureError", "Int", "MapOf", "NotRegistered", "Num", "Obj", "OneOf",
    "Outcome", "Schema", "Str", "check_tolerance", "expand_paths", "read_json", "run_cli", "validate",
]

MAX_FILE_BYTES = 64 * 2**20
"""Largest fixture file read (the largest real fixture is well under 1 MiB)."""
MAX_DEPTH = 32
"""Deepest nesting of arrays and objects accepted anywhere in a fixture (real fixtures nest 5 deep)."""
MAX_ELEMENTS = 2**26
_FLOAT32_MAX = 3.4028234663852886e38
"""Largest number of elements a declared parameter shape may have."""


class FixtureError(ValueError):
    """The file is not a fixture the replayer can interpret; the message is one line naming the problem."""


class NotRegistered(FixtureError):
    """The fixture is well formed, but descend has nothing registered that replays its optimizer/solver."""


# ----------------------------------------------------------------------------------------------------
# reading


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            # JSON parsers keep either the first or the last value; a fixture must not depend on which
            raise FixtureError(f"duplicate key {key!r} in one JSON object")
        out[key] = value
    return out


def read_json(path: str | Path) -> Any:
    """The parsed JSON content of ``path``; :class:`FixtureError` (message prefixed by the path) if it is not
    a readable, strict JSON document: at most :data:`MAX_FILE_BYTES`, UTF-8, no duplicate keys, nesting at
    most :data:`MAX_DEPTH`.  ``NaN``/``Infinity`` literals and numbers too large for a float parse (to nan
    or inf) and are refused by the schema, which knows where they sit."""
    where = str(path)
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise FixtureError(f"{where}: cannot read the file ({exc.strerror or exc})") from exc
    if len(raw) > MAX_FILE_BYTES:
        raise FixtureError(f"{where}: larger than {MAX_FILE_BYTES // 2**20} MiB, not a fixture")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FixtureError(f"{where}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})") from exc
    depth = _max_depth(text)
    if depth > MAX_DEPTH:
        raise FixtureError(f"{where}: arrays/objects nested more than {MAX_DEPTH} deep")
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates)
    except FixtureError as exc:
        raise FixtureError(f"{where}: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise FixtureError(f"{where}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from exc
    except (ValueError, RecursionError) as exc:  # e.g. an integer literal longer than Python's 4300-digit limit
        raise FixtureError(f"{where}: not a usable JSON document ({str(exc).splitlines()[0]})") from exc


def _max_depth(text: str) -> int:
    """Deepest bracket nesting outside strings (checked before parsing, so no recursion limit is hit)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > MAX_DEPTH:
                    return deepest
        elif ch in "]}":
            depth -= 1
    return deepest


# ----------------------------------------------------------------------------------------------------
# declarative schema


def _kind(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, (int, float)):
        return "a number"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list):
        return "an array"
    if isinstance(v, dict):
        return "an object"
    return type(v).__name__


def _join(at: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{at}[{key}]"
    return f"{at}.{key}" if at else key


class Schema:
    """A check of one JSON value; :meth:`check` raises :class:`FixtureError` with the value's location."""

    what = "a value"

    def check(self, v: Any, at: str) -> None:
        raise NotImplementedError

    def fail(self, at: str, problem: str) -> FixtureError:
        return FixtureError(f"{at or 'top level'}: {problem}")


@dataclass(frozen=True)
class _Any(Schema):
    """Any JSON value (its nesting is bounded by :func:`read_json`)."""

    what = "any value"

    def check(self, v: Any, at: str) -> None:
        return None


ANY = _Any()


@dataclass(frozen=True)
class Num(Schema):
    """A finite JSON number (never a boolean) in ``[low, high]`` (``high_open``: below ``high``)."""

    low: float | None = None
    high: float | None = None
    high_open: bool = False
    integer: bool = False

    @property
    def what(self) -> str:  # type: ignore[override]
        return "an integer" if self.integer else "a finite number"

    def check(self, v: Any, at: str) -> None:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise self.fail(at, f"expected {self.what}, got {_kind(v)}{_show(v)}")
        if self.integer and not isinstance(v, int):
            raise self.fail(at, f"expected an integer, got {v!r}")
        try:
            x = float(v)
        except OverflowError:
            raise self.fail(at, f"number with {len(str(v))} digits is too large for a float") from None
        if not math.isfinite(x):
            raise self.fail(at, f"{v!r} is not a finite number (NaN, an infinity, or too large for a float)")
        if self.low is not None and x < self.low:
            raise self.fail(at, f"{v!r} is below the allowed minimum {self.low:g}")
        if self.high is not None and (x >= self.high if self.high_open else x > self.high):
            raise self.fail(at, f"{v!r} is not {'below' if self.high_open else 'at most'} {self.high:g}")


def Int(low: int | None = None, high: int | None = None) -> Num:
    """An integer in ``[low, high]``."""
    return Num(low, high, integer=True)


@dataclass(frozen=True)
class Str(Schema):
    """A string; with ``choices``, one of them."""

    choices: tuple[str, ...] | None = None
    what = "a string"

    def check(self, v: Any, at: str) -> None:
        if not isinstance(v, str):
            raise self.fail(at, f"expected a string, got {_kind(v)}{_show(v)}")
        if self.choices is not None and v not in self.choices:
            raise self.fail(at, f"{v!r} is not one of {list(self.choices)}")


@dataclass(frozen=True)
class Bool(Schema):
    what = "a boolean"

    def check(self, v: Any, at: str) -> None:
        if not isinstance(v, bool):
            raise self.fail(at, f"expected true or false, got {_kind(v)}{_show(v)}")


@dataclass(frozen=True)
class Null(Schema):
    what = "null"

    def check(self, v: Any, at: str) -> None:
        if v is not None:
            raise self.fail(at, f"expected null, got {_kind(v)}")


@dataclass(frozen=True)
class OneOf(Schema):
    """The first alternative that accepts the value wins; none does: the error lists what was expected."""

    options: tuple[Schema, ...]

    @property
    def what(self) -> str:  # type: ignore[override]
        return " or ".join(o.what for o in self.options)

    def check(self, v: Any, at: str) -> None:
        errors = []
        for o in self.options:
            try:
                o.check(v, at)
                return
            except FixtureError as exc:
                errors.append(str(exc))
        # the alternative for this kind of value reports its own problem (more useful than "expected …")
        same_kind = [e for o, e in zip(self.options, errors, strict=True) if _kind_schema(o) == _kind(v)]
        if len(same_kind) == 1:
            raise FixtureError(same_kind[0])
        raise self.fail(at, f"expected {self.what}, got {_kind(v)}{_show(v)}")


def _kind_schema(o: Schema) -> str:
    """The :func:`_kind` of the values ``o`` accepts ("" when it is not one kind)."""
    for cls, kind in ((Num, "a number"), (Str, "a string"), (Bool, "a boolean"), (Arr, "an array"),
                      (Obj, "an object"), (MapOf, "an object"), (Null, "null")):
        if isinstance(o, cls):
            return kind
    return ""


@dataclass(frozen=True)
class Arr(Schema):
    """A JSON array of ``item``, with ``min_len <= len <= max_len``."""

    item: Schema = ANY
    min_len: int = 0
    max_len: int | None = None

    @property
    def what(self) -> str:  # type: ignore[override]
        return f"an array of {self.item.what.removeprefix('a ').removeprefix('an ')}s"

    def check(self, v: Any, at: str) -> None:
        if not isinstance(v, list):
            raise self.fail(at, f"expected {self.what}, got {_kind(v)}{_show(v)}")
        if len(v) < self.min_len:
            raise self.fail(at, "is empty" if not v else f"has {len(v)} entries, at least {self.min_len} needed")
        if self.max_len is not None and len(v) > self.max_len:
            raise self.fail(at, f"has {len(v)} entries, at most {self.max_len} allowed")
        if isinstance(self.item, _Any):
            return
        item = self.item
        if type(item) is Num and item.low is None and item.high is None and not item.integer:
            # fast path for the long flat arrays of numbers
            for i, x in enumerate(v):
                if type(x) is float:
                    if x - x != 0.0:  # nan or inf
                        item.check(x, _join(at, i))
                elif type(x) is not int or abs(x) > 2**1023:
                    item.check(x, _join(at, i))
            return
        for i, x in enumerate(v):
            item.check(x, _join(at, i))


@dataclass(frozen=True)
class Obj(Schema):
    """A JSON object with the ``required`` and ``optional`` keys; other keys are refused unless ``other``
    (a schema for their values) is given."""

    required: Mapping[str, Schema] = field(default_factory=dict)
    optional: Mapping[str, Schema] = field(default_factory=dict)
    other: Schema | None = None
    what = "an object"

    def check(self, v: Any, at: str) -> None:
        if not isinstance(v, dict):
            raise self.fail(at, f"expected an object, got {_kind(v)}{_show(v)}")
        missing = [k for k in self.required if k not in v]
        if missing:
            raise self.fail(at, f"missing key{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))}")
        for key, value in v.items():
            schema = self.required.get(key) or self.optional.get(key) or self.other
            if schema is None:
                known = sorted({*self.required, *self.optional})
                raise self.fail(at, f"unknown key {key!r} (known: {', '.join(known)})")
            schema.check(value, _join(at, key))


@dataclass(frozen=True)
class MapOf(Schema):
    """A JSON object with any keys (``keys``: only those) and values of one schema."""

    value: Schema = ANY
    keys: tuple[str, ...] | None = None
    what = "an object"

    def check(self, v: Any, at: str) -> None:
        if not isinstance(v, dict):
            raise self.fail(at, f"expected an object, got {_kind(v)}{_show(v)}")
        for key, value in v.items():
            if self.keys is not None and key not in self.keys:
                raise self.fail(at, f"unknown key {key!r} (known: {', '.join(self.keys)})")
            self.value.check(value, _join(at, key))


def _show(v: Any) -> str:
    if isinstance(v, (str, int, float)) and not isinstance(v, bool):
        text = repr(v)
        return f" {text[:40]}…" if len(text) > 40 else f" {text}"
    return ""


def validate(value: Any, schema: Schema, where: str) -> None:
    """Check ``value`` against ``schema``; :class:`FixtureError` ``"<where>: <location>: <problem>"``."""
    try:
        schema.check(value, "")
    except FixtureError as exc:
        raise FixtureError(f"{where}: {exc}") from None


NUMBERS = Arr(Num())
"""A flat array of finite numbers."""

TOLERANCE = Obj({"rtol": Num(0.0, 1.0, high_open=True), "atol": Num(0.0)}, {"why": Str()})
"""``{"rtol", "atol", "why"?}``: finite, non-negative, rtol < 1 (rtol >= 1 would accept 0 for any value)."""


def check_tolerance(tol: Mapping[str, Any], recorded_max: float, at: str) -> None:
    """Refuse a tolerance that cannot fail: ``atol >= max |recorded|`` would accept an all-zero replay."""
    TOLERANCE.check(tol, at)
    atol = float(tol["atol"])
    if atol > 0 and atol >= recorded_max:
        raise FixtureError(f"{at}: atol {atol:g} is not below the largest recorded magnitude {recorded_max:g}, "
                           f"so it accepts any values")


def numel(shape: Sequence[int], at: str) -> int:
    """The number of elements of a declared shape, refusing absurd ones before anything is allocated."""
    n = 1
    for d in shape:
        n *= int(d)
        if n > MAX_ELEMENTS:
            raise FixtureError(f"{at}: shape {list(shape)} has more than {MAX_ELEMENTS} elements")
    return n


def check_length(values: Sequence[Any], n: int, at: str, why: str) -> None:
    """Refuse ``values`` unless it has ``n`` entries; ``why`` says where ``n`` comes from."""
    if len(values) != n:
        raise FixtureError(f"{at}: {len(values)} entries, expected {n} ({why})")


def max_abs(arrays: Iterable[Sequence[float]]) -> float:
    return max((abs(float(x)) for a in arrays for x in a), default=0.0)


# ----------------------------------------------------------------------------------------------------
# comparison


class Comparator:
    """Accumulates max |diff| and max |diff| / (atol + rtol |expected|) over a replay.

    A value passes when ``|actual - expected| <= atol + rtol * |expected|`` holds, evaluated so that NaN or an
    infinity on either side fails (NaN compares false; ``inf - inf`` is NaN).  ``first_fail`` is the first
    index (step or iteration) with a failing value, ``count`` the number of values compared: a replay that
    compared nothing has not passed.
    """

    def __init__(self, rtol: float, atol: float) -> None:
        self.rtol, self.atol = float(rtol), float(atol)
        self.max_abs = 0.0
        self.max_ratio = 0.0
        self.first_fail: int | None = None
        self.count = 0
        if not (math.isfinite(self.rtol) and math.isfinite(self.atol) and self.rtol >= 0 and self.atol >= 0):
            raise FixtureError(f"tolerance rtol={rtol!r}, atol={atol!r}: both must be finite and >= 0")

    def compare(self, actual: Any, expected: Any, index: int) -> float:
        """Compare one recorded array; returns its max ratio (``inf`` where a value is not finite)."""
        a = torch.as_tensor(actual, dtype=torch.float64).detach().reshape(-1)
        e = torch.as_tensor(expected, dtype=torch.float64).reshape(-1)
        if a.shape != e.shape:
            raise FixtureError(f"step {index}: {a.numel()} values where the fixture has {e.numel()}")
        self.count += a.numel()
        diff = (a - e).abs()
        bound = self.atol + self.rtol * e.abs()
        ok = diff <= bound  # False for NaN on either side, and for inf - inf
        ok &= torch.isfinite(a) & torch.isfinite(e)
        raw = diff / bound  # 0/0 = nan only where bound = 0 and diff = 0 (a pass, set to 0 below)
        raw = torch.where(torch.isnan(raw), math.inf, raw)
        passed_ratio = torch.where(bound > 0, raw, 0.0).clamp(max=1.0)
        ratio = torch.where(ok, passed_ratio, raw.clamp(min=math.nextafter(1.0, math.inf)))
        r = float(ratio.max()) if ratio.numel() else 0.0
        if bool(torch.isfinite(diff).all()) and diff.numel():
            self.max_abs = max(self.max_abs, float(diff.max()))
        elif diff.numel():
            self.max_abs = math.inf
        self.max_ratio = max(self.max_ratio, r)
        if not bool(ok.all()) and self.first_fail is None:
            self.first_fail = index
        return r

    @property
    def passed(self) -> bool:
        return self.first_fail is None and self.max_ratio <= 1.0


# ----------------------------------------------------------------------------------------------------
# command line


def expand_paths(paths: Sequence[str]) -> list[Path]:
    """Files named on a command line; a directory stands for every ``*.json`` in it (sorted)."""
    out: list[Path] = []
    for p in map(Path, paths):
        out.extend(sorted(p.glob("*.json")) if p.is_dir() else [p])
    return out


@dataclass
class Outcome:
    """What a replayer's per-file function reports for a file that was replayed."""

    passed: bool
    columns: str  # the row's numeric part (who replayed it, steps, errors)
    fail_detail: str = ""  # e.g. "first at step 3"
    notes: str = ""  # appended to the row (observable ratios, unchecked observables)
    details: list[str] = field(default_factory=list)  # extra lines printed with --verbose


_STATUS = {"ok": 0, "skipped": 0, "FAIL": 1, "REFUSED": 2, "ERROR": 2}
_SEVERITY = ("ok", "skipped", "FAIL", "REFUSED", "ERROR")


def run_cli(prog: str, description: str, header: str, replay_one: Callable[[Path, argparse.Namespace], Outcome],
            argv: Sequence[str] | None, add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
            packaged: str | None = None) -> int:
    """The replayers' shared command line: every file is reported on one line, whatever happens to the others,
    and the exit status is that of the worst outcome (see the module docstring).  With no file given, the
    fixtures packaged with descend (:mod:`descend.fixtures`, set ``packaged``) are replayed."""
    ap = argparse.ArgumentParser(prog=prog, description=description)
    ap.add_argument("files", nargs="+" if packaged is None else "*",
                    help="fixture files (a directory means every *.json in it)"
                         + ("" if packaged is None else f"; none: the {packaged} fixtures packaged with descend"))
    ap.add_argument("-v", "--verbose", action="store_true", help="print per-observable details")
    ap.add_argument("--strict", action="store_true",
                    help="exit with status 3 when a fixture is skipped (nothing registered replays it)")
    ap.add_argument("--traceback", action="store_true", help="print the traceback of an ERROR")
    if add_arguments is not None:
        add_arguments(ap)
    args = ap.parse_args(argv)
    if not args.files and packaged is not None:
        from descend import fixtures

        args.files = [str(fixtures.directory(packaged))]
        print(f"{prog}: no files given; replaying the fixtures packaged with descend in {args.files[0]}",
              file=sys.stderr)
    files = expand_paths(args.files)
    if not files:
        print(f"{prog}: no fixture files given (a directory given holds no *.json)", file=sys.stderr)
        return 2
    width = max(len(f.name) for f in files)
    print(f"{'fixture':<{width}}  {header}  result")
    counts = dict.fromkeys(_SEVERITY, 0)
    for f in files:
        try:
            out = replay_one(f, args)
        except NotRegistered as exc:
            status, line = "skipped", f"skipped: {_one_line(exc, f)}"
        except FixtureError as exc:
            status, line = "REFUSED", f"REFUSED: {_one_line(exc, f)}"
        except Exception as exc:  # a replayer bug must not hide the remaining files' results
            status, line = "ERROR", f"ERROR: the replay raised {type(exc).__name__}: {_one_line(exc)}"
            if args.traceback:
                traceback.print_exc()
        else:
            status = "ok" if out.passed else "FAIL"
            line = (f"{out.columns}  {'ok' if out.passed else 'FAIL'}"
                    f"{'' if out.passed or not out.fail_detail else f' ({out.fail_detail})'}{out.notes}")
            if args.verbose:
                line += "".join(f"\n{'':<{width}}    {d}" for d in out.details)
        counts[status] += 1
        print(f"{f.name:<{width}}  {line}", flush=True)
    print(f"{counts['ok']} passed, {counts['FAIL']} failed, {counts['REFUSED']} refused (not valid fixtures), "
          f"{counts['skipped']} skipped (nothing registered replays them), {counts['ERROR']} errors")
    worst = max((s for s in _SEVERITY if counts[s]), key=_SEVERITY.index)
    if worst == "skipped" and args.strict:
        return 3
    return _STATUS[worst]


def _one_line(exc: BaseException, path: Path | None = None) -> str:
    """The message on one line, without the file name the row already starts with."""
    text = " ".join(str(exc).split())
    for prefix in ((f"{path}: ", f"{path.name}: ") if path is not None else ()):
        text = text.removeprefix(prefix)
    return text if len(text) <= 400 else text[:400] + "…"


# ----------------------------------------------------------------------------------------------------
# JSON values without non-finite numbers (hyperparameters, step options)


@dataclass(frozen=True)
class _FiniteJson(Schema):
    """Any JSON value whose numbers are all finite (a NaN hyperparameter is not a recorded run)."""

    what = "a JSON value"

    def check(self, v: Any, at: str) -> None:
        if isinstance(v, bool) or v is None or isinstance(v, str):
            return
        if isinstance(v, (int, float)):
            Num().check(v, at)
        elif isinstance(v, list):
            for i, x in enumerate(v):
                self.check(x, _join(at, i))
        elif isinstance(v, dict):
            for k, x in v.items():
                self.check(x, _join(at, k))


FINITE_JSON = _FiniteJson()


class _Notes(Obj):
    """An :class:`Obj` that also accepts free-text ``*_note`` keys."""

    def check(self, v: Any, at: str) -> None:
        if isinstance(v, dict):
            notes = {k: x for k, x in v.items() if k.endswith("_note") and k not in self.required
                     and k not in self.optional}
            for k, x in notes.items():
                Str().check(x, _join(at, k))
            v = {k: x for k, x in v.items() if k not in notes}
        super().check(v, at)


def _check_format(fx: Any, expected: str, where: str) -> None:
    if not isinstance(fx, dict):
        raise FixtureError(f"{where}: a fixture is a JSON object, this file holds {_kind(fx)}")
    fmt = fx.get("format")
    if fmt != expected:
        family = expected.rsplit("/", 1)[0]
        if isinstance(fmt, str) and fmt.rsplit("/", 1)[0] == family:
            raise FixtureError(f"{where}: format version {fmt!r} is not supported (this replayer reads {expected!r})")
        raise FixtureError(f"{where}: format {fmt!r} is not {expected!r}" if "format" in fx
                           else f"{where}: no 'format' key (expected {expected!r})")


# ----------------------------------------------------------------------------------------------------
# format descend-optimizer-fixture/1 (see descend/fixtures/optimizers/README.md)

OPTIMIZER_FORMAT = "descend-optimizer-fixture/1"
DTYPES = ("float64", "float32")
PROBLEM_KINDS = ("least_squares", "logistic", "softmax_regression")
STEP_OBSERVABLES: dict[str, Schema] = {
    "step_size": Num(), "loss": Num(), "line_search_trials": Int(0), "line_search": Bool(), "ls_freq": Num(),
    "s_sum": Num(), "unclipped_fraction": Num(0.0, 1.0),
}
"""``extra`` keys holding one value per step (compared when the optimizer reports the observable)."""

_NAMED = MapOf(NUMBERS)
_STEP_CHOICES = Arr(Obj({"step": Int(1), "choice": MapOf(FINITE_JSON)}))
_OPTIMIZER_SCHEMA = _Notes(
    required={
        "format": Str(), "optimizer": Str(), "dtype": Str(DTYPES), "mode": Str(("open_loop", "closed_loop")),
        "hyperparameters": MapOf(FINITE_JSON), "param_order": Arr(Str(), min_len=1),
        "params": MapOf(Obj({"shape": Arr(Int(0, MAX_ELEMENTS), max_len=8), "init": NUMBERS})),
        "trajectory": Arr(_NAMED, min_len=1), "tolerance": TOLERANCE,
    },
    optional={
        "case": Str(), "description": Str(), "reference": Str(), "reference_patches": ANY,
        "param_groups": Arr(Obj({"params": Arr(Str(), min_len=1)}, other=FINITE_JSON), min_len=1),
        "replay": Obj(optional={
            "torch_default_dtype": Str(DTYPES), "newton_schulz_dtype": Str((*DTYPES, "bfloat16")),
            "window_dtype": Str(DTYPES), "devices": FINITE_JSON, "torch_manual_seed": Int(),
            "solve_dtype": Str(DTYPES), "step_kwargs": MapOf(FINITE_JSON), "steps": Int(1)}),
        "grads": Arr(_NAMED),
        "problem": _Notes({"kind": Str(PROBLEM_KINDS), "X": Arr(NUMBERS, min_len=1)},
                          {"Y": Arr(NUMBERS), "y": NUMBERS, "l2": Num(0.0), "model": Str(), "loss": Str(),
                           "batches": OneOf((Null(), Arr(OneOf((Null(), Arr(Int(0), min_len=1))))))}),
        "extra": _Notes(optional={
            **{k: Arr(s) for k, s in STEP_OBSERVABLES.items()},
            "hessian_updates": Arr(Obj({"after_step": Int(1), "grads": _NAMED})),
            "coordinate_indices": _STEP_CHOICES, "active_blocks": _STEP_CHOICES,
            "armijo_min_relative_margin": Num(), "speed_up_min_margin": Num(), "lb_argmax_min_relative_gap": Num(),
            "merged_shapes": MapOf(Arr(Int(0))), "precond_update_steps": Arr(Int(1)), "balance_steps": Arr(Int(1)),
            "precond_noise": Arr(Obj({"step": Int(1), "params": Arr(Str()), "V": _NAMED})),
        }),
    },
)


def _check_named(arrays: Mapping[str, Sequence[Any]], sizes: Mapping[str, int], at: str) -> None:
    """``arrays`` holds exactly the parameters of ``sizes``, each with its number of elements."""
    missing = [n for n in sizes if n not in arrays]
    if missing:
        raise FixtureError(f"{at}: missing parameter{'s' if len(missing) > 1 else ''} "
                           f"{', '.join(map(repr, missing))}")
    for name, values in arrays.items():
        if name not in sizes:
            raise FixtureError(f"{at}: {name!r} is not a parameter of param_order")
        check_length(values, sizes[name], _join(at, name), "the size of the parameter's shape")


def _check_fixture(fx: Any, where: str, fmt: str, schema: Any,
                   cross_checks: Callable[[Mapping[str, Any]], None]) -> None:
    """The format version, the schema, then the checks across fields; every error prefixed with ``where``."""
    _check_format(fx, fmt, where)
    validate(fx, schema, where)
    try:
        cross_checks(fx)
    except FixtureError as exc:
        raise FixtureError(f"{where}: {exc}") from None


def check_optimizer_fixture(fx: Any, where: str) -> None:
    """Raise :class:`FixtureError` (one line: file, location, problem) unless ``fx`` is a valid
    ``descend-optimizer-fixture/1``.  After this, the replay may index and convert every field it reads."""
    _check_fixture(fx, where, OPTIMIZER_FORMAT, _OPTIMIZER_SCHEMA, _optimizer_cross_checks)


def _optimizer_cross_checks(fx: Mapping[str, Any]) -> None:
    order: list[str] = fx["param_order"]
    if len(set(order)) != len(order):
        raise FixtureError(f"param_order: names repeat ({order})")
    sizes: dict[str, int] = {}
    for name in order:
        if name not in fx["params"]:
            raise FixtureError(f"params: missing parameter {name!r} (listed in param_order)")
        p = fx["params"][name]
        sizes[name] = numel(p["shape"], f"params.{name}.shape")
        check_length(p["init"], sizes[name], f"params.{name}.init", f"the size of shape {p['shape']}")
    for name in fx["params"]:
        if name not in sizes:
            raise FixtureError(f"params.{name}: not in param_order")
    steps = len(fx["trajectory"])
    for t, entry in enumerate(fx["trajectory"]):
        _check_named(entry, sizes, f"trajectory[{t}]")
    if fx["mode"] == "open_loop":
        if "grads" not in fx:
            raise FixtureError("mode open_loop needs 'grads'")
        check_length(fx["grads"], steps, "grads", "one per trajectory step")
        for t, entry in enumerate(fx["grads"]):
            _check_named(entry, sizes, f"grads[{t}]")
    else:
        if "problem" not in fx:
            raise FixtureError("mode closed_loop needs 'problem'")
        _check_problem(fx["problem"], fx["params"], steps)
        if "steps" in fx.get("replay", {}) and fx["replay"]["steps"] != steps:
            raise FixtureError(f"replay.steps: {fx['replay']['steps']}, but the trajectory has {steps} steps")
    for group_index, group in enumerate(fx.get("param_groups", [])):
        for name in group["params"]:
            if name not in sizes:
                raise FixtureError(f"param_groups[{group_index}].params: {name!r} is not a parameter")
    extra = fx.get("extra", {})
    for key in STEP_OBSERVABLES:
        if key in extra:
            check_length(extra[key], steps, f"extra.{key}", "one per trajectory step")
    after = [u["after_step"] for u in extra.get("hessian_updates", [])]
    if len(set(after)) != len(after):
        raise FixtureError(f"extra.hessian_updates: after_step values repeat ({after})")
    for i, update in enumerate(extra.get("hessian_updates", [])):
        if update["after_step"] > steps:
            raise FixtureError(f"extra.hessian_updates[{i}].after_step: {update['after_step']} is beyond the "
                               f"{steps} recorded steps")
        _check_named(update["grads"], sizes, f"extra.hessian_updates[{i}].grads")
    for key in ("coordinate_indices", "active_blocks", "precond_noise"):
        for i, entry in enumerate(extra.get(key, [])):
            if entry["step"] > steps:
                raise FixtureError(f"extra.{key}[{i}].step: {entry['step']} is beyond the {steps} recorded steps")
    recorded = max_abs(v for entry in fx["trajectory"] for v in entry.values())
    if fx["dtype"] == "float32":
        inputs = [p["init"] for p in fx["params"].values()] + [v for g in fx.get("grads", []) for v in g.values()]
        if max(max_abs(inputs), recorded) > _FLOAT32_MAX:
            raise FixtureError("a float32 fixture holds values beyond the float32 range")
    check_tolerance(fx["tolerance"], recorded, "tolerance")


def _matrix(rows: list[list[float]], at: str) -> tuple[int, int]:
    width = len(rows[0])
    for i, r in enumerate(rows):
        if len(r) != width:
            raise FixtureError(f"{at}[{i}]: {len(r)} columns where row 0 has {width}")
    return len(rows), width


def _check_problem(prob: Mapping[str, Any], params: Mapping[str, Any], steps: int) -> None:
    kind = prob["kind"]
    n, d = _matrix(prob["X"], "problem.X")
    for name in ("weight", "bias"):
        if name not in params:
            raise FixtureError(f"params: problem kind {kind!r} needs a parameter {name!r}")
    if kind == "least_squares":
        if "Y" not in prob:
            raise FixtureError("problem: kind 'least_squares' needs 'Y'")
        n_y, k = _matrix(prob["Y"], "problem.Y") if prob["Y"] else (0, 0)
        if n_y != n:
            raise FixtureError(f"problem.Y: {n_y} rows where X has {n}")
    else:
        if "y" not in prob:
            raise FixtureError(f"problem: kind {kind!r} needs 'y'")
        check_length(prob["y"], n, "problem.y", "one label per row of X")
        k = 1
        if kind == "logistic":
            bad = [i for i, v in enumerate(prob["y"]) if v not in (0, 1)]
            if bad:
                raise FixtureError(f"problem.y[{bad[0]}]: {prob['y'][bad[0]]!r} is not a label 0 or 1")
        else:
            k = int(params["weight"]["shape"][0]) if params["weight"]["shape"] else 0
            bad = [i for i, v in enumerate(prob["y"]) if not (float(v).is_integer() and 0 <= v < k)]
            if bad:
                raise FixtureError(f"problem.y[{bad[0]}]: {prob['y'][bad[0]]!r} is not a class index in [0, {k})")
    if list(params["weight"]["shape"]) != [k, d]:
        raise FixtureError(f"params.weight.shape: {params['weight']['shape']}, problem kind {kind!r} with X of "
                           f"{d} columns needs {[k, d]}")
    if list(params["bias"]["shape"]) != [k]:
        raise FixtureError(f"params.bias.shape: {params['bias']['shape']}, problem kind {kind!r} needs {[k]}")
    batches = prob.get("batches")
    if batches is not None:
        check_length(batches, steps, "problem.batches", "one batch or null per trajectory step")
        for t, b in enumerate(batches):
            for i, row in enumerate(b or ()):
                if row >= n:
                    raise FixtureError(f"problem.batches[{t}][{i}]: row {row} does not exist (X has {n} rows)")


# ----------------------------------------------------------------------------------------------------
# format descend-bilevel-fixture/1 (see descend/fixtures/bilevel/README.md)

BILEVEL_FORMAT = "descend-bilevel-fixture/1"
BILEVEL_SUMMARIES = ("restart_iterations", "clipped_iterations")
"""Observables summarising a run: the (1-based, increasing) iterations at which an event happened."""
BILEVEL_SCALARS = ("min_abs_margin",)
"""Observables holding one number for the whole run (recorded for information, never compared)."""

_OBS_TOL = Obj({"rtol": Num(0.0, 1.0, high_open=True)}, {"atol": Num(0.0)})
_BILEVEL_PROBLEMS: dict[str, tuple[Obj, str, dict[str, str], dict[str, str]]] = {
    # name: (schema, iterations key of the hyperparameters, trajectory variable -> length key,
    #        init array -> length key); a length key "n" means problem["n"], "a*b" the product
    "lancbio_synthetic": (
        _Notes({"name": Str(), "n": Int(1, MAX_ELEMENTS), "gamma": Num(), "c": NUMBERS, "c_x": NUMBERS,
                "c_y": NUMBERS, "G": NUMBERS},
               {"kappa": Num(), "f": Str(), "g": Str(), "oracles": ANY, "shapes": ANY, "generation": Str()}),
        "K", {"x": "n", "y": "n", "v": "n"}, {"x0": "n", "y0": "n", "v0": "n"}),
    "bome_toy_coreset": (
        _Notes({"name": Str(), "dim": Int(1, MAX_ELEMENTS), "ncts": Int(1, MAX_ELEMENTS), "xcts0": NUMBERS,
                "xcts": NUMBERS},
               {"variables": Str(), "f": Str(), "g": Str(), "shapes": ANY}),
        "maxIter", {"x": "dim", "w": "ncts"}, {"x0": "dim", "w0": "ncts"}),
}
_BILEVEL_SCHEMA = _Notes(
    required={
        "format": Str(), "solver": Str(), "dtype": Str(DTYPES),
        "problem": Obj({"name": Str(tuple(_BILEVEL_PROBLEMS))}, other=ANY),
        "hyperparameters": MapOf(FINITE_JSON), "init": MapOf(NUMBERS),
        "trajectory_iterations": Arr(Int(1), min_len=1),
        "trajectory": Arr(Obj({"k": Int(1)}, other=NUMBERS), min_len=1),
        "tolerance": TOLERANCE,
    },
    optional={
        "case": Str(), "description": Str(), "reference": Str(), "reference_problem": Str(),
        "reference_patches": ANY, "reference_args": ANY,
        "observables": Obj(optional={"iterations": Str(),
                                     "diagnostic_settings": Obj({"gd_steps": Int(0, 10**6), "cg_steps": Int(0, 10**6),
                                                                 "eps": Num(0.0), "theta": Num()}),
                                     **{k: Num() for k in BILEVEL_SCALARS},
                                     **{k: Arr(Int(1)) for k in BILEVEL_SUMMARIES}},
                           other=Arr(OneOf((Num(), Bool(), NUMBERS)))),
        "observables_tolerance": Obj(optional={"float": MapOf(_OBS_TOL), "exact": Arr(Str()), "why": Str()},
                                     other=_OBS_TOL),
    },
)


def _size(problem: Mapping[str, Any], key: str) -> int:
    n = 1
    for part in key.split("*"):
        n *= int(problem[part])
    return n


def check_bilevel_fixture(fx: Any, where: str) -> None:
    """Raise :class:`FixtureError` (one line: file, location, problem) unless ``fx`` is a valid
    ``descend-bilevel-fixture/1``.  After this, the replay may index and convert every field it reads."""
    _check_fixture(fx, where, BILEVEL_FORMAT, _BILEVEL_SCHEMA, _bilevel_cross_checks)


def _bilevel_cross_checks(fx: Mapping[str, Any]) -> None:
    prob = fx["problem"]
    schema, iter_key, variables, inits = _BILEVEL_PROBLEMS[prob["name"]]
    schema.check(prob, "problem")
    if prob["name"] == "lancbio_synthetic":
        n = int(prob["n"])
        numel([n, n], "problem.n")
        for key in ("c", "c_x", "c_y"):
            check_length(prob[key], n, f"problem.{key}", "problem.n")
        check_length(prob["G"], n * n, "problem.G", "an n x n matrix")
    else:
        dim, ncts = int(prob["dim"]), int(prob["ncts"])
        numel([dim, ncts], "problem.dim, ncts")
        check_length(prob["xcts0"], dim, "problem.xcts0", "problem.dim")
        check_length(prob["xcts"], dim * ncts, "problem.xcts", "an ncts x dim matrix")
    hp = fx["hyperparameters"]
    if iter_key not in hp:
        raise FixtureError(f"hyperparameters: missing {iter_key!r} (the number of outer iterations)")
    Int(1, 10**7).check(hp[iter_key], f"hyperparameters.{iter_key}")
    iterations = int(hp[iter_key])
    for key, length in inits.items():
        if key in fx["init"]:
            check_length(fx["init"][key], _size(prob, length), f"init.{key}", f"problem.{length}")
        elif key != "v0":
            raise FixtureError(f"init: missing {key!r}")
    for key in fx["init"]:
        if key not in inits:
            raise FixtureError(f"init.{key}: unknown starting-point array (known: {', '.join(inits)})")
    its = fx["trajectory_iterations"]
    if any(b <= a for a, b in itertools.pairwise(its)):
        raise FixtureError("trajectory_iterations: not strictly increasing")
    if its[-1] > iterations:
        raise FixtureError(f"trajectory_iterations: {its[-1]} is beyond the {iterations} iterations "
                           f"({iter_key}) of the run")
    check_length(fx["trajectory"], len(its), "trajectory", "one per trajectory_iterations entry")
    for i, (entry, k) in enumerate(zip(fx["trajectory"], its, strict=True)):
        if entry["k"] != k:
            raise FixtureError(f"trajectory[{i}].k: {entry['k']}, trajectory_iterations[{i}] is {k}")
        missing = [v for v in variables if v not in entry]
        if missing:
            raise FixtureError(f"trajectory[{i}]: missing variable{'s' if len(missing) > 1 else ''} "
                               f"{', '.join(map(repr, missing))}")
        for var, values in entry.items():
            if var == "k":
                continue
            if var not in variables:
                raise FixtureError(f"trajectory[{i}].{var}: unknown variable (known: {', '.join(variables)})")
            check_length(values, _size(prob, variables[var]), f"trajectory[{i}].{var}",
                         f"problem.{variables[var]}")
    recorded = max_abs(v for entry in fx["trajectory"] for k, v in entry.items() if k != "k")
    check_tolerance(fx["tolerance"], recorded, "tolerance")

    obs = {k: v for k, v in fx.get("observables", {}).items() if k not in ("iterations", "diagnostic_settings")}
    for key, values in obs.items():
        if key in BILEVEL_SCALARS:
            continue
        if key in BILEVEL_SUMMARIES:
            if any(b <= a for a, b in itertools.pairwise(values)) or any(v > iterations for v in values):
                raise FixtureError(f"observables.{key}: not increasing iteration numbers within 1..{iterations}")
            continue
        check_length(values, iterations, f"observables.{key}", f"one per iteration, hyperparameters.{iter_key}")
    otol = fx.get("observables_tolerance", {})
    tolerances = {**otol.get("float", {}), **{k: v for k, v in otol.items() if k not in ("float", "exact", "why")}}
    for key in [*tolerances, *otol.get("exact", [])]:
        if key not in obs:
            raise FixtureError(f"observables_tolerance: {key!r} names no recorded observable")
        if key in BILEVEL_SCALARS:
            raise FixtureError(f"observables_tolerance: {key!r} is a recorded-for-information scalar")
    for key in otol.get("exact", []):
        if key in tolerances:
            raise FixtureError(f"observables_tolerance: {key!r} is both exact and float")
    for key, tol in tolerances.items():
        values = obs[key]
        flat = [x for v in values for x in (v if isinstance(v, list) else [v])]
        if any(isinstance(x, bool) for x in flat):
            raise FixtureError(f"observables_tolerance.{key}: a float tolerance for true/false values")
        check_tolerance({"atol": 0.0, **tol}, max_abs([flat]), f"observables_tolerance.{key}")
