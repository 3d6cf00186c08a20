"""Generator hints: how `produce` and `db seed` make up values for one column, declared beside its type.

A hint is a kind and a few numbers, written inline in the column's declaration (`generator = "walk"`,
`min = 4`, ...). Kinds:

- `walk`: a random walk per subtable. The level starts uniformly in [`min`, `max`] (with `by = "<tag>"`,
  subtables sharing that tag's value share a start level, plus normal `jitter`), moves by normal `step` a
  row and is kept at or above `floor`.
- `sine`: `min`..`max` swung by a sine of `period` seconds (starting at `phase`, a fraction of the period).
- `uniform`: uniform in [`min`, `max`] for every row.
- `choice`: one of `values` (optionally `weights`) for every row.
- `counter`: `start`, then `step` more every row, per subtable, continuing across batches.
- `previous`: the previous row's value of column `of` in the same subtable.
- `above` / `below`: the largest / smallest of the columns `of`, plus / minus `|normal(noise)|`.
- `time`: the row's timestamp (a date column: its day).

Modifiers on the numeric kinds, applied in this order: `season` (a relative swing of period `period`,
phase `phase`: x * (1 + season * sin)), `spikes` (the share of rows multiplied by 1.5-3), `noise` (normal,
added), `floor` (the lowest value); on every kind `nulls`, the share of rows left NULL.
Integer columns are rounded and kept inside their type's range.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from taosprsp.errors import ConfigError

HintKind = Literal["walk", "sine", "uniform", "choice", "counter", "previous", "above", "below", "time"]
HINT_KINDS: tuple[HintKind, ...] = (
    "walk",
    "sine",
    "uniform",
    "choice",
    "counter",
    "previous",
    "above",
    "below",
    "time",
)
DAY_SECONDS = 86_400.0


@dataclass(frozen=True)
class Hint:
    """One column's generator: a kind and its parameters (unset ones take the defaults above)."""

    kind: HintKind
    min: float = 0.0
    max: float = 100.0
    step: float | None = None
    floor: float | None = None
    by: str = ""
    jitter: float = 0.0
    period: float = DAY_SECONDS
    phase: float = 0.0
    season: float = 0.0
    spikes: float = 0.0
    noise: float = 0.0
    nulls: float = 0.0
    start: float = 0.0
    values: tuple[Any, ...] = ()
    weights: tuple[float, ...] = ()
    of: tuple[str, ...] = field(default=())

    @property
    def walk_step(self) -> float:
        """The walk's step: as given, or a hundredth of the start range."""
        return (self.max - self.min) / 100 if self.step is None else self.step

    @property
    def counter_step(self) -> float:
        return 1.0 if self.step is None else self.step

    def parameters(self) -> dict[str, Any]:
        """The parameters that differ from the defaults, as a declaration writes them."""
        written: dict[str, Any] = {"generator": self.kind}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name != "kind" and value != f.default:
                written[f.name] = list(value) if isinstance(value, tuple) else value
        return written


HINT_KEYS = frozenset(f.name for f in fields(Hint)) - {"kind"}
_NUMBERS = frozenset({"min", "max", "step", "floor", "jitter", "period", "phase", "season", "spikes", "noise", "start"})


def parse_hint(raw: dict[str, Any], where: str) -> Hint | None:
    """The hint in a column's declaration (`generator` and the parameters), or None when it names none."""
    kind = raw.get("generator")
    given = {key: value for key, value in raw.items() if key in HINT_KEYS}
    if kind is None:
        if given:
            raise ConfigError(f"{where}: {', '.join(given)} without `generator`; add generator = one of {HINT_KINDS}")
        return None
    if kind not in HINT_KINDS:
        close = difflib.get_close_matches(str(kind), HINT_KINDS, n=1)
        suggestion = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"{where}: generator {kind!r} is not one of {', '.join(HINT_KINDS)}{suggestion}")
    values: dict[str, Any] = {}
    for key, value in given.items():
        if key in _NUMBERS:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{where}: {key} must be a number, got {value!r}")
            values[key] = float(value)
        elif key in ("values", "weights", "of"):
            items = [value] if key == "of" and isinstance(value, str) else value
            if not isinstance(items, list) or not items:
                raise ConfigError(f"{where}: {key} must be a non-empty list, got {value!r}")
            values[key] = tuple(items)
        elif key == "nulls":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise ConfigError(f"{where}: nulls must be a share between 0 and 1, got {value!r}")
            values[key] = float(value)
        else:
            values[key] = str(value)
    hint = Hint(kind, **values)
    if hint.min > hint.max:
        raise ConfigError(f"{where}: min {hint.min:g} is above max {hint.max:g}")
    if kind == "choice" and not hint.values:
        raise ConfigError(f"{where}: generator choice needs `values`")
    if hint.weights and len(hint.weights) != len(hint.values):
        raise ConfigError(f"{where}: {len(hint.weights)} weights for {len(hint.values)} values")
    if kind in ("previous", "above", "below") and not hint.of:
        raise ConfigError(f"{where}: generator {kind} needs `of` (the column or columns it follows)")
    if kind == "previous" and len(hint.of) != 1:
        raise ConfigError(f"{where}: generator previous follows one column, got of = {list(hint.of)}")
    if hint.period <= 0:
        raise ConfigError(f"{where}: period must be positive seconds, got {hint.period:g}")
    return hint
