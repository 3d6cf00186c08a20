"""The derived tables `serve` hosts: the default grid and line chart tables, and one per declared operation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from taosprsp.config import Config, format_duration
from taosprsp.datasets import SUBTABLE_COLUMN, Dataset
from taosprsp.derived.specs import (
    DEFAULT_BUCKET_SECONDS,
    DEFAULT_HORIZON_SECONDS,
    MAX_CHART_CELLS,
    DerivedSpec,
    numeric_columns,
)
from taosprsp.errors import ConfigError
from taosprsp.ops.declare import declare_operations
from taosprsp.ops.live import operation_table_name


def groups_table_name(table: str, group_by: str) -> str:
    return f"{table}_by_{group_by}"


def pivot_table_name(table: str, group_by: str, bucket_seconds: float) -> str:
    width = f"{bucket_seconds:g}s" if bucket_seconds >= 1 else f"{bucket_seconds * 1000:g}ms"
    return f"{table}_{group_by}_{width}"


def default_specs(
    dataset: Dataset,
    table: str,
    groups: Sequence[Any],
    bucket_seconds: float = DEFAULT_BUCKET_SECONDS,
    horizon_seconds: float = DEFAULT_HORIZON_SECONDS,
) -> tuple[DerivedSpec, ...]:
    """The derived tables the default dashboard views: per-group aggregates of every numeric column, and the mean
    of the first headline column per bucket with a column per value of `groups`, for the line chart.

    Both cover the same horizon, so the grid and the line chart describe the same span of time.
    """
    columns = numeric_columns(dataset)
    group = dataset.group_tag
    charted = next((name for name in dataset.headline if name in columns), columns[0])
    return (
        DerivedSpec(
            groups_table_name(table, group),
            "groups",
            group,
            columns,
            bucket_seconds=bucket_seconds,
            horizon_seconds=horizon_seconds,
        ),
        DerivedSpec(
            pivot_table_name(table, group, bucket_seconds),
            "pivot",
            group,
            (charted,),
            bucket_seconds=bucket_seconds,
            horizon_seconds=horizon_seconds,
            groups=tuple(groups),
        ),
    )


def declared_groups(dataset: Dataset, tables: int) -> list[Any]:
    """The group tag's values of `tables` subtables of `dataset` as declared (their names when it groups by
    subtable), in order of first appearance."""
    if dataset.group_tag == SUBTABLE_COLUMN:
        return list(dataset.subtable_names(tables))
    return list(dict.fromkeys(dataset.field(dataset.group_tag).tag_values(tables).to_pylist()))


def derived_specs(config: Config, dataset: Dataset, groups: Sequence[Any] | None = None) -> tuple[DerivedSpec, ...]:
    """The derived tables `serve` hosts and the default dashboard views: `default_specs` at `server.bucket` and
    `server.horizon` (none for a dataset without a numeric column), and one table per declared operation
    (`operation_specs`).

    `groups`: the group tag's values the line chart draws a series of (serve passes those its store holds);
    by default those of `dataset.tables` subtables as declared (`declared_groups`).

    The line chart over the pivot table draws at most `MAX_CHART_CELLS` points (buckets x groups). A horizon
    set in the config that passes it is refused (ConfigError); the default one is shortened to fit.
    """
    operations = operation_specs(config, dataset)
    if not numeric_columns(dataset):
        return operations
    bucket, horizon = config.server.bucket, config.server.horizon
    if groups is None:
        groups = declared_groups(dataset, config.dataset.tables)
    series = max(1, len(groups))
    fits = bucket * max(1, MAX_CHART_CELLS // series)
    chosen = [key for key in ("server.horizon", "server.bucket") if key in config.origins]
    if horizon > fits and not chosen:
        horizon = fits
    specs = default_specs(dataset, config.perspective_table, groups, bucket, horizon)
    cells = max(spec.held_buckets or 1 for spec in specs) * series
    if cells > MAX_CHART_CELLS and chosen:
        where = ", ".join(f"{key} in {config.origins[key]}" for key in chosen)
        raise ConfigError(
            f"{where}: {format_duration(horizon)} of {format_duration(bucket)} buckets x {series} "
            f"{dataset.group_tag} values = {cells:,} points, more than the line chart draws ({MAX_CHART_CELLS:,}); "
            f"use a horizon of at most {format_duration(fits)} or wider buckets"
        )
    return (*specs, *operations)


def operation_specs(config: Config, dataset: Dataset) -> tuple[DerivedSpec, ...]:
    """One table per operation of `[operations.NAME]`, checked against `dataset` (ConfigError naming the key)."""
    where = config.origins.get("operations", config.source)
    return tuple(
        DerivedSpec(
            operation_table_name(config.perspective_table, operation.name),
            "spectrum" if operation.is_spectrum else "series",
            SUBTABLE_COLUMN,
            (operation.input,),
            horizon_seconds=None,
            operation=operation,
        )
        for operation in declare_operations(config.operations, dataset, where)
    )
