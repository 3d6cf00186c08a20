"""Declared operations: `[operations.NAME]` tables of the config, checked against a dataset.

Each operation names its input, a numeric column of the dataset or another operation (so they chain), and
its parameters. What can be checked before a row is seen is checked here, each problem as one line naming
the key: an unknown kind or key, an unknown input, a chain that loops, a cutoff at or above the Nyquist
frequency of the input's sample rate, an unknown unit.

The sample rate (Hz) a filter or spectrum assumes comes from its input: a `resample` upstream fixes it
(1 / `every`), filters, conversions and shifts pass it on, and an operation on a dataset column declares it
(`rate`).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from taosprsp.config import parse_duration
from taosprsp.datasets import SUBTABLE_COLUMN, Dataset, identifier
from taosprsp.errors import ConfigError
from taosprsp.ops.units import unit_registry

OperationKind = Literal["lowpass", "highpass", "bandpass", "spectrum", "convert", "resample", "shift"]
KINDS: tuple[OperationKind, ...] = ("lowpass", "highpass", "bandpass", "spectrum", "convert", "resample", "shift")
FILTERS = ("lowpass", "highpass", "bandpass")
SPECTRUM_METHODS = ("fft", "welch")
RESAMPLE_AGGREGATES = ("mean", "last")
RESAMPLE_FILLS = ("none", "previous")
DEFAULT_POINTS = 500
"""Samples per subtable a live operation table holds: enough for a chart, small enough to redraw at once."""
MAX_POINTS = 100_000
INDEX_COLUMN = "rid"
"""The integer a live operation table is indexed by: a ring slot per subtable, or a (subtable, frequency) pair."""
MAX_PARAMS_LENGTH = 1024
"""The longest parameters JSON: the width of the `params` tag of a derived table."""
COMMON_KEYS = ("op", "input", "rate", "points")
KEYS: dict[str, tuple[str, ...]] = {
    "lowpass": ("cutoff", "order"),
    "highpass": ("cutoff", "order"),
    "bandpass": ("cutoff", "order"),
    "spectrum": ("size", "every", "method", "window", "segment"),
    "convert": ("from", "to", "scale", "offset"),
    "resample": ("every", "agg", "fill"),
    "shift": ("by",),
}


@dataclass(frozen=True)
class Operation:
    """One declared operation, checked: its kind, input and parameters (defaults filled in).

    `rate` is the input's sample rate in Hz where known; `unit` the output's unit where known; `lineage`
    the names from the dataset column at the root to this operation.
    """

    name: str
    kind: OperationKind
    input: str
    parameters: tuple[tuple[str, Any], ...]
    rate: float | None
    unit: str
    points: int
    lineage: tuple[str, ...]
    digest: str
    """A short hash of this operation and everything upstream of it: outputs of other parameters stay apart."""

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.parameters)

    @property
    def column(self) -> str:
        """The dataset column at the root of the chain."""
        return self.lineage[0]

    @property
    def is_spectrum(self) -> bool:
        return self.kind == "spectrum"

    @property
    def keeps_time(self) -> bool:
        """Whether each output sample is its input sample transformed, at the same time (filters, convert)."""
        return self.kind in (*FILTERS, "convert")

    @property
    def output_rate(self) -> float | None:
        """The output's sample rate: a resample sets it, a spectrum has none, the others keep the input's."""
        if self.kind == "resample":
            return 1.0 / self.params["every"]
        return None if self.is_spectrum else self.rate

    def params_json(self) -> str:
        """The parameters (and the input's rate) as compact JSON with sorted keys: the `params` lineage tag."""
        recorded = self.params | ({"rate": self.rate} if self.rate is not None else {})
        return json.dumps(recorded, sort_keys=True, separators=(",", ":"))

    def describe(self) -> str:
        """For people: `lowpass 5 Hz, order 4`."""
        p = self.params
        if self.kind in FILTERS:
            cutoff = "-".join(f"{c:g}" for c in p["cutoff"]) if self.kind == "bandpass" else f"{p['cutoff']:g}"
            return f"{self.kind} {cutoff} Hz, order {p['order']}"
        if self.kind == "spectrum":
            return f"{p['method']} spectrum of {p['size']} samples every {p['every']}"
        if self.kind == "convert":
            if "to" in p:
                return f"{p['from']} to {p['to']}"
            return f"x {p['scale']:g} + {p['offset']:g}"
        if self.kind == "resample":
            fill = ", gaps filled" if p["fill"] == "previous" else ""
            return f"{p['agg']} every {p['every']:g} s{fill}"
        return f"shifted {p['by']:+g} s"


def _closest(word: str, choices: Sequence[str]) -> str:
    match = difflib.get_close_matches(word, list(choices), n=1)
    return f"; did you mean {match[0]!r}?" if match else ""


class _Declaration:
    """One `[operations.NAME]` table being checked; errors name `operations.NAME.KEY` and where it was read."""

    def __init__(self, name: str, raw: Any, where: str) -> None:
        self.name = name
        self.where = where
        if not isinstance(raw, Mapping):
            raise self.error("", "must be a table of keys (op, input, parameters)")
        self.raw = dict(raw)

    def error(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"operations.{self.name}{'.' + key if key else ''} in {self.where}: {problem}")

    def number(self, key: str, default: float | None = None, positive: bool = True) -> float:
        value = self.raw.get(key, default)
        if value is None:
            raise self.error(key, "is required")
        return self.checked_number(key, value, positive)

    def checked_number(self, key: str, value: Any, positive: bool = True) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise self.error(key, f"expected a number, got {value!r}")
        if positive and value <= 0:
            raise self.error(key, f"must be positive, got {value:g}")
        return float(value)

    def integer(self, key: str, default: int, minimum: int = 1, maximum: int | None = None) -> int:
        value = self.raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"expected an integer, got {value!r}")
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"{minimum} to {maximum}" if maximum is not None else f"at least {minimum}"
            raise self.error(key, f"must be {bound}, got {value}")
        return value

    def choice(self, key: str, choices: Sequence[str]) -> str:
        value = self.raw.get(key, choices[0])
        if value not in choices:
            raise self.error(key, f"{value!r} is not one of {', '.join(choices)}{_closest(str(value), choices)}")
        return value

    def seconds(self, key: str, signed: bool = False) -> float:
        value = self.raw.get(key)
        if value is None:
            raise self.error(key, "is required (a duration such as '100ms' or '2s')")
        negative = signed and isinstance(value, str) and value.strip().startswith("-")
        if signed and isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
            negative, value = True, -value
        text = value.strip().removeprefix("-") if negative else value
        seconds = parse_duration(text, f"operations.{self.name}.{key} in {self.where}")
        return -seconds if negative else seconds


def declare_operations(raw: Mapping[str, Any], dataset: Dataset, where: str = "the config") -> tuple[Operation, ...]:
    """The operations of `[operations.NAME]` tables, checked against `dataset`, upstream ones first.

    A `ConfigError` names the first key at fault.
    """
    if not isinstance(raw, Mapping):
        raise ConfigError(f"[operations] in {where} must hold one table per operation, [operations.NAME]")
    declarations = {name: _Declaration(name, table, where) for name, table in raw.items()}
    columns = [f.name for f in dataset.value_columns if f.is_numeric and not f.is_time]
    for name, declaration in declarations.items():
        identifier(name, f"operations.{name} in {where}: the name")
        if name in [f.name for f in dataset.fields]:
            raise declaration.error("", f"is named like a field of {dataset.name}; an input would be ambiguous")
        if name in (SUBTABLE_COLUMN, INDEX_COLUMN):
            raise declaration.error("", f"{name!r} names a column of every operation table: choose another name")
        kind = declaration.raw.get("op")
        if kind is None:
            raise declaration.error("op", f"is required: one of {', '.join(KINDS)}")
        if kind not in KINDS:
            raise declaration.error("op", f"{kind!r} is not one of {', '.join(KINDS)}{_closest(str(kind), KINDS)}")
        allowed = (*COMMON_KEYS, *KEYS[kind])
        for key in declaration.raw:
            if key not in allowed:
                raise declaration.error(key, f"is not a key of a {kind} operation{_closest(key, allowed)}")
        source = declaration.raw.get("input")
        if not isinstance(source, str) or not source:
            raise declaration.error("input", "is required: a numeric column of the dataset or another operation")
        if source not in columns and source not in declarations:
            known = [*columns, *declarations]
            raise declaration.error(
                "input",
                f"{source!r} is neither a numeric column of {dataset.name} nor an operation{_closest(source, known)}",
            )
    declared: dict[str, Operation] = {}
    for name in _upstream_first(declarations):
        declared[name] = _operation(declarations[name], dataset, declared)
    return tuple(declared.values())


def _upstream_first(declarations: Mapping[str, _Declaration]) -> list[str]:
    """Names in an order where each operation comes after the one it takes as input; a loop is refused."""
    ordered: list[str] = []
    placed: set[str] = set()
    for start in declarations:
        path: list[str] = []
        name = start
        while name in declarations and name not in placed:
            if name in path:
                loop = " -> ".join([*path[path.index(name) :], name])
                raise declarations[name].error("input", f"the operations {loop} take each other as input, in a loop")
            path.append(name)
            name = declarations[name].raw["input"]
        for step in reversed(path):
            ordered.append(step)
            placed.add(step)
    return ordered


def _operation(declaration: _Declaration, dataset: Dataset, upstream: Mapping[str, Operation]) -> Operation:
    raw = declaration.raw
    kind: OperationKind = raw["op"]
    source = raw["input"]
    parent = upstream.get(source)
    if parent is not None and parent.is_spectrum:
        raise declaration.error("input", f"{source!r} is a spectrum (frequency, magnitude), not a time series")
    inherited = parent.output_rate if parent is not None else None
    if "rate" in raw and inherited is not None:
        raise declaration.error("rate", f"{source!r} already sets the sample rate ({inherited:g} Hz); leave rate out")
    rate = declaration.number("rate") if "rate" in raw else inherited
    unit = parent.unit if parent is not None else dataset.field(source).unit
    parameters = _parameters(declaration, kind, rate, unit)
    if kind == "convert":
        unit = parameters.get("to", "")
    lineage = (*(parent.lineage if parent is not None else (source,)), declaration.name)
    chain = [parent.digest if parent is not None else source, kind, sorted(parameters.items()), rate]
    digest = hashlib.sha1(json.dumps(chain, default=list).encode()).hexdigest()[:8]
    points = declaration.integer("points", DEFAULT_POINTS, maximum=MAX_POINTS)
    frozen = tuple((key, tuple(value) if isinstance(value, list) else value) for key, value in parameters.items())
    operation = Operation(declaration.name, kind, source, frozen, rate, unit, points, lineage, digest)
    if len(operation.params_json()) > MAX_PARAMS_LENGTH:
        raise declaration.error("", f"its parameters take more than {MAX_PARAMS_LENGTH} characters as JSON")
    return operation


def _parameters(declaration: _Declaration, kind: OperationKind, rate: float | None, unit: str) -> dict[str, Any]:
    """The parameters of `kind`, checked, with their defaults: what the lineage records."""
    if kind in FILTERS:
        return _filter_parameters(declaration, kind, _needs_rate(declaration, rate))
    if kind == "spectrum":
        return _spectrum_parameters(declaration, _needs_rate(declaration, rate))
    if kind == "convert":
        return _convert_parameters(declaration, unit)
    if kind == "resample":
        every = declaration.seconds("every")
        if every <= 0:
            raise declaration.error("every", "must be longer than zero")
        return {
            "every": every,
            "agg": declaration.choice("agg", RESAMPLE_AGGREGATES),
            "fill": declaration.choice("fill", RESAMPLE_FILLS),
        }
    return {"by": declaration.seconds("by", signed=True)}


def _needs_rate(declaration: _Declaration, rate: float | None) -> float:
    if rate is None:
        raise declaration.error(
            "rate",
            f"the sample rate of {declaration.raw['input']!r} is not known: declare rate (Hz), "
            "or take a resample as input",
        )
    return rate


def _filter_parameters(declaration: _Declaration, kind: OperationKind, rate: float) -> dict[str, Any]:
    nyquist = rate / 2
    raw_cutoff = declaration.raw.get("cutoff")
    if kind == "bandpass":
        if not isinstance(raw_cutoff, list) or len(raw_cutoff) != 2:
            raise declaration.error("cutoff", f"a bandpass takes [low, high] in Hz, got {raw_cutoff!r}")
        low, high = (declaration.checked_number("cutoff", edge) for edge in raw_cutoff)
        if not low < high:
            raise declaration.error("cutoff", f"low ({low:g} Hz) must be below high ({high:g} Hz)")
        cutoff: Any = [low, high]
        top = high
    else:
        cutoff = top = declaration.number("cutoff")
    if top >= nyquist:
        raise declaration.error(
            "cutoff",
            f"{top:g} Hz is at or above the Nyquist frequency, {nyquist:g} Hz at a sample rate of {rate:g} Hz",
        )
    return {"cutoff": cutoff, "order": declaration.integer("order", 4, maximum=20)}


def _spectrum_parameters(declaration: _Declaration, rate: float) -> dict[str, Any]:
    from scipy.signal import get_window

    size = declaration.integer("size", 256, minimum=8, maximum=65_536)
    method = declaration.choice("method", SPECTRUM_METHODS)
    window = declaration.raw.get("window", "hann")
    try:
        get_window(window, size)
    except (ValueError, TypeError) as exc:
        raise declaration.error("window", f"{window!r} is not a window scipy.signal knows: {exc}") from None
    parameters: dict[str, Any] = {
        "size": size,
        "every": declaration.integer("every", size),
        "method": method,
        "window": window,
    }
    if method == "welch":
        parameters["segment"] = declaration.integer("segment", size // 4, minimum=4, maximum=size)
    elif "segment" in declaration.raw:
        raise declaration.error("segment", "is the Welch segment length: only with method = 'welch'")
    return parameters


def _convert_parameters(declaration: _Declaration, unit: str) -> dict[str, Any]:
    raw = declaration.raw
    by_unit = "to" in raw or "from" in raw
    by_factor = "scale" in raw or "offset" in raw
    if by_unit == by_factor:
        raise declaration.error(
            "", "convert with `to` (a unit, and `from` unless the input has one) or with scale/offset"
        )
    if by_factor:
        return {
            "scale": declaration.number("scale", 1.0, positive=False),
            "offset": declaration.number("offset", 0.0, positive=False),
        }
    if "to" not in raw:
        raise declaration.error("to", "is required: the unit to convert to")
    source = raw.get("from", unit)
    if not source:
        raise declaration.error("from", f"the unit of {raw['input']!r} is not declared: give from")
    registry = unit_registry()
    for key, name in (("from", source), ("to", raw["to"])):
        if not isinstance(name, str):
            raise declaration.error(key, f"expected a unit name, got {name!r}")
        try:
            registry.Unit(name)
        except Exception as exc:  # pint raises UndefinedUnitError, or a parse error for malformed text
            raise declaration.error(key, f"unknown unit {name!r} ({exc})") from None
    try:
        registry.Quantity(1.0, source).to(raw["to"])
    except Exception as exc:  # pint's DimensionalityError
        raise declaration.error("to", f"cannot convert {source} to {raw['to']}: {exc}") from None
    return {"from": source, "to": raw["to"]}
