"""Unit conversion: through pint's unit registry, or a declared scale and offset.

Every conversion pint makes between two units of one dimension is affine (a factor, and an offset for
temperatures), so it is taken once as (scale, offset) and applied to whole batches as one numpy expression.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import numpy as np

from taosprsp.ops.series import Series

if TYPE_CHECKING:
    from taosprsp.ops.declare import Operation


@functools.cache
def unit_registry() -> Any:
    """pint's registry, made once per process (it takes about a second), and only when a unit is converted."""
    import pint

    return pint.UnitRegistry()


def affine(source: str, target: str) -> tuple[float, float]:
    """(scale, offset) with `value in target = value in source * scale + offset`, as pint converts."""
    converted = unit_registry().Quantity(np.array([0.0, 1.0]), source).to(target).magnitude
    return float(converted[1] - converted[0]), float(converted[0])


def convert(values: np.ndarray, source: str, target: str) -> np.ndarray:
    """`values` in unit `source` as unit `target` (e.g. "A" to "mA", "degC" to "degF")."""
    scale, offset = affine(source, target)
    return np.asarray(values, np.float64) * scale + offset


class ConvertState:
    """A conversion carries no state from batch to batch: each sample is converted on its own."""

    def __init__(self, operation: Operation) -> None:
        p = operation.params
        self.scale, self.offset = (p["scale"], p["offset"]) if "scale" in p else affine(p["from"], p["to"])

    def step(self, series: Series, final: bool = False) -> Series:
        return Series(series.codes, series.ts, series.values * self.scale + self.offset)
