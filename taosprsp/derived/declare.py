"""The derived tables `serve` hosts: the default grid and line chart tables, and one per declared operation."""

from __future__ import annotations

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


def buckets_table_name(table: str, group_by: str, bucket_seconds: float) -> str:
    width = f"{bucket_seconds:g}s" if bucket_seconds >= 1 else f"{bucket_seconds * 1000:g}ms"
    return f"{table}_{group_by}_{width}"


def default_specs(
    dataset: Dataset,
    table: str,
    bucket_seconds: float = DEFAULT_BUCKET_SECONDS,
    horizon_seconds: float = DEFAULT_HORIZON_SECONDS,
) -> tuple[DerivedSpec, ...]:
    """The derived tables the default dashboard views: per-group aggregates and per-bucket, per-group ones.

    Both cover the same horizon, so the grid and the line chart describe the same span of time.
    """
    columns = numeric_columns(dataset)
    group = dataset.group_tag
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
            buckets_table_name(table, group, bucket_seconds),
            "buckets",
            group,
            columns,
            bucket_seconds=bucket_seconds,
            horizon_seconds=horizon_seconds,
        ),
    )


def group_count(dataset: Dataset, tables: int) -> int:
    """How many groups `tables` subtables of `dataset` fall into, by the group tag's declared values."""
    if dataset.group_tag == SUBTABLE_COLUMN:
        return tables
    return len(set(dataset.field(dataset.group_tag).tag_values(tables).to_pylist()))


def derived_specs(config: Config, dataset: Dataset) -> tuple[DerivedSpec, ...]:
    """The derived tables `serve` hosts and the default dashboard views: `default_specs` at `server.bucket` and
    `server.horizon` (none for a dataset without a numeric column), and one table per declared operation
    (`operation_specs`).

    The line chart over the buckets table draws at most `MAX_CHART_CELLS` points (buckets x groups). A horizon
    set in the config that passes it is refused (ConfigError); the default one is shortened to fit.
    """
    operations = operation_specs(config, dataset)
    if not numeric_columns(dataset):
        return operations
    bucket, horizon = config.server.bucket, config.server.horizon
    groups = group_count(dataset, config.dataset.tables)
    fits = bucket * max(1, MAX_CHART_CELLS // groups)
    chosen = [key for key in ("server.horizon", "server.bucket") if key in config.origins]
    if horizon > fits and not chosen:
        horizon = fits
    specs = default_specs(dataset, config.perspective_table, bucket, horizon)
    cells = max(spec.held_buckets or 1 for spec in specs) * groups
    if cells > MAX_CHART_CELLS and chosen:
        where = ", ".join(f"{key} in {config.origins[key]}" for key in chosen)
        raise ConfigError(
            f"{where}: {format_duration(horizon)} of {format_duration(bucket)} buckets x {groups} "
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
