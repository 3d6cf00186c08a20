"""`taosprsp ops run` and `ops list`: the declared operations over a stored range, written back with lineage.

Each operation's output goes to a derived super table (TDengine) or table (embedded store) named like its
live table, `<stable>_<operation>`: columns `ts` and `value` (a spectrum: `magnitude`, one subtable per
frequency, so that each frequency is a series over time, a spectrogram), tagged with the lineage: the
input subtable (`source`), the operation's name, kind and parameters as JSON, its input, and the whole
chain from the dataset column (`lineage`). A derived subtable is named after its source, the operation and
a hash of the chain's parameters, so a run with other parameters writes beside the old output instead of
mixing with it, and a second run over the same range rewrites the same (subtable, ts) keys: no duplicates.

Each subtable's range is read once and run through the pipeline in one final step (the last resample bin
closes at the end of the range). On TDengine a resample of a dataset column without fill is pushed down to
`INTERVAL` SQL on the subtable, so its raw rows are not pulled.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from taosprsp.config import Config
from taosprsp.datasets import SUBTABLE_COLUMN, Dataset, Precision, declare, identifier
from taosprsp.errors import ConfigError, TaosprspError
from taosprsp.ops.declare import Operation, declare_operations
from taosprsp.ops.live import FREQUENCY_COLUMN, MAGNITUDE_COLUMN, operation_table_name
from taosprsp.ops.pipeline import Pipeline
from taosprsp.ops.series import Frames, Series
from taosprsp.ops.timing import ticks
from taosprsp.stores import Store, TDengineStore, dataset_for, open_store

VALUE_COLUMN = "value"
BIN_TAG = "bin"
LINEAGE_TAGS = ("source", "operation", "kind", "params", "input", "lineage")
_TAG_TYPES = {
    "source": "VARCHAR(192)",
    "operation": "VARCHAR(192)",
    "kind": "VARCHAR(16)",
    "params": "VARCHAR(1024)",
    "input": "VARCHAR(192)",
    "lineage": "VARCHAR(1024)",
}
_INTERVAL_UNIT: dict[Precision, str] = {"ms": "a", "us": "u", "ns": "b"}
"""TDengine's INTERVAL unit of one tick of each database precision."""
MAX_NAME = 192


def operations_of(config: Config, dataset: Dataset) -> tuple[Operation, ...]:
    """The config's operations checked against `dataset`; ConfigError names the key at fault."""
    return declare_operations(config.operations, dataset, config.origins.get("operations", config.source))


def derived_dataset(operation: Operation, table: str, time_column: str) -> Dataset:
    """The derived table of `operation`'s output, with its lineage tags."""
    value = MAGNITUDE_COLUMN if operation.is_spectrum else VALUE_COLUMN
    tags = [{"name": name, "type": _TAG_TYPES[name]} for name in LINEAGE_TAGS]
    if operation.is_spectrum:
        tags += [{"name": FREQUENCY_COLUMN, "type": "DOUBLE"}, {"name": BIN_TAG, "type": "INT"}]
    declaration = {
        "description": f"{operation.name}: {operation.describe()} of {' -> '.join(operation.lineage[:-1])}",
        "subtable_prefix": f"{table}_",
        "group_tag": "source",
        "columns": [
            {"name": time_column, "type": "TIMESTAMP"},
            {"name": value, "type": "DOUBLE", **({"unit": operation.unit} if operation.unit else {})},
        ],
        "tags": tags,
    }
    return declare(table, declaration, "taosprsp.ops")


def derived_subtable(source: str, operation: Operation) -> str:
    """The derived subtable of `source`'s output of `operation`: a TDengine identifier, the same every run."""
    suffix = f"_{operation.name}_{operation.digest}"
    name = re.sub(r"[^A-Za-z0-9_]", "_", source)
    if not re.match(r"[A-Za-z_]", name):
        name = f"t{name}"
    # spectrum subtables add `_f<bin>`: room for 6 more characters
    return name[: MAX_NAME - len(suffix) - 8] + suffix


def lineage_text(operation: Operation, stable: str) -> str:
    """The chain from the dataset column to `operation`: `meters.current -> current_10hz -> current_lp`."""
    return " -> ".join([f"{stable}.{operation.column}", *operation.lineage[1:]])


@dataclass
class OperationRun:
    """What a run wrote for one operation."""

    name: str
    table: str
    rows_written: int = 0
    pushed_down: bool = False


@dataclass
class OpsRunSummary:
    """What `ops run` did, for people and `--json`."""

    store: str
    subtables: int = 0
    rows_read: int = 0
    seconds: float = 0.0
    operations: list[OperationRun] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Target:
    """One operation's derived table, open for writing."""

    def __init__(self, config: Config, store: Store, operation: Operation, time_column: str) -> None:
        self.operation = operation
        self.table = operation_table_name(config.stable, operation.name)
        self.dataset = derived_dataset(operation, self.table, time_column)
        self.store = open_store(config.replace(dataset={"stable": self.table}), store.kind)
        self.run = OperationRun(operation.name, self.table)
        self.tags = {
            "operation": operation.name,
            "kind": operation.kind,
            "params": operation.params_json(),
            "input": operation.input,
            "lineage": lineage_text(operation, config.stable),
        }

    def write(self, source: str, output: Series | Frames) -> None:
        rows = self._frames(source, output) if isinstance(output, Frames) else self._series(source, output)
        self.run.rows_written += self.store.write(self.dataset, rows)

    def _tagged(self, names: pa.Array, ts: np.ndarray, values: np.ndarray, source: str) -> dict[str, Any]:
        count = len(ts)
        columns: dict[str, Any] = {SUBTABLE_COLUMN: names, self.dataset.timestamp.name: pa.array(ts, pa.int64())}
        columns[self.dataset.value_columns[0].name] = pa.array(values, pa.float64())
        columns["source"] = pa.repeat(pa.scalar(source), count)
        columns.update({name: pa.repeat(pa.scalar(value), count) for name, value in self.tags.items()})
        return columns

    def _series(self, source: str, series: Series) -> pa.Table:
        name = derived_subtable(source, self.operation)
        columns = self._tagged(pa.repeat(pa.scalar(name), len(series)), series.ts, series.values, source)
        return pa.table(columns, schema=self.dataset.arrow_schema())

    def _frames(self, source: str, frames: Frames) -> pa.Table:
        """One subtable per frequency bin: rows grouped by bin, each bin's windows in time order."""
        windows, bins = len(frames), len(frames.frequencies)
        prefix = derived_subtable(source, self.operation)
        names = pa.array([f"{prefix}_f{b}" for b in range(bins)], pa.string()).take(
            pa.array(np.repeat(np.arange(bins), windows))
        )
        columns = self._tagged(names, np.tile(frames.ts, bins), frames.magnitudes.T.ravel(), source)
        columns[FREQUENCY_COLUMN] = pa.array(np.repeat(frames.frequencies, windows))
        columns[BIN_TAG] = pa.array(np.repeat(np.arange(bins), windows).astype(np.int32))
        return pa.table(columns, schema=self.dataset.arrow_schema())

    def close(self) -> None:
        self.store.close()


def _pushed_down(
    store: Store, dataset: Dataset, operation: Operation, subtable: str, start: int | None, end: int | None
) -> Series | None:
    """A resample of a dataset column as TDengine's `INTERVAL` on the subtable (None where it does not apply):
    the same bins (aligned to the epoch, stamped with their start) and values (AVG or LAST, NULLs skipped)."""
    p = operation.params
    if not isinstance(store, TDengineStore) or operation.kind != "resample" or p["fill"] != "none":
        return None
    if operation.input not in [f.name for f in dataset.value_columns]:
        return None
    try:
        table = identifier(subtable)
    except ConfigError:
        return None  # a name TDengine would need quoted differently: pull the rows instead
    precision = store.database.precision
    every = ticks(operation, "every", p["every"], precision)
    ts = f"`{dataset.timestamp.name}`"
    bounds = [f"{ts} >= {int(start)}" if start is not None else "", f"{ts} < {int(end)}" if end is not None else ""]
    where = " AND ".join(bound for bound in bounds if bound)
    aggregate = "AVG" if p["agg"] == "mean" else "LAST"
    sql = (
        f"SELECT CAST(_wstart AS BIGINT), {aggregate}(`{operation.input}`) FROM `{store.database.name}`.`{table}`"
        f"{f' WHERE {where}' if where else ''} INTERVAL({every}{_INTERVAL_UNIT[precision]})"
    )
    result = store.select(sql, pa.schema([("ts", pa.int64()), ("value", pa.float64())]))
    result = result.filter(result["value"].is_valid()).sort_by("ts")
    return Series(np.zeros(result.num_rows, np.int64), result["ts"].to_numpy(), result["value"].to_numpy())


def run_operations(
    config: Config,
    start: int | None = None,
    end: int | None = None,
    subtables: Sequence[str] = (),
    on_progress: Callable[[int, int], None] | None = None,
) -> OpsRunSummary:
    """Apply the declared operations to rows with `start <= ts < end` of `subtables` (all with rows when empty)
    and write each output into its derived table; `on_progress(done, total)` follows the subtables."""
    started = time.perf_counter()
    with open_store(config, create=False) as store:
        dataset = dataset_for(store, config)
        operations = operations_of(config, dataset)
        if not operations:
            raise ConfigError(
                f"no operations are declared in {config.source}: add [operations.NAME] tables (see configs/ops.toml)"
            )
        names = list(subtables) or sorted(store.last_timestamps(dataset))
        summary = OpsRunSummary(store.describe(), len(names))
        targets: list[_Target] = []
        try:
            for operation in operations:
                targets.append(_Target(config, store, operation, dataset.timestamp.name))
                targets[-1].store.ensure_schema(targets[-1].dataset, 0)
            for done, name in enumerate(names, 1):
                summary.rows_read += _run_subtable(config, store, dataset, targets, name, start, end)
                if on_progress is not None:
                    on_progress(done, len(names))
        finally:
            for target in targets:
                target.close()
    summary.operations = [target.run for target in targets]
    summary.seconds = time.perf_counter() - started
    return summary


def _run_subtable(
    config: Config,
    store: Store,
    dataset: Dataset,
    targets: list[_Target],
    name: str,
    start: int | None,
    end: int | None,
) -> int:
    """Run the operations over one subtable's range and write their outputs; returns the raw rows read."""
    operations = [target.operation for target in targets]
    pipeline = Pipeline(operations, dataset, config.database.precision, strict=True)
    code = pipeline.codes.code(name)
    provided: dict[str, Series] = {}
    for target in targets:
        pushed = _pushed_down(store, dataset, target.operation, name, start, end)
        if pushed is not None:
            provided[target.operation.name] = Series(np.full(len(pushed), code, np.int64), pushed.ts, pushed.values)
            target.run.pushed_down = True
    pulled = [op for op in operations if op.name not in provided and op.input in pipeline.columns]
    rows = store.read_range(dataset, start, end, [name]) if pulled else dataset.arrow_schema().empty_table()
    step = pipeline.step(rows, final=True, provided=provided)
    for target in targets:
        output = step.outputs[target.operation.name]
        if len(output):
            target.write(name, output)
    return rows.num_rows


@dataclass(frozen=True)
class StoredVersion:
    """One set of lineage tags found in a derived table, and how many rows carry it."""

    params: str
    input: str
    lineage: str
    rows: int


def describe_operations(config: Config, dataset: Dataset) -> list[dict[str, Any]]:
    """The declared operations for `ops list`: kind, input, parameters, lineage and the tables they fill."""
    return [
        {
            "name": op.name,
            "op": op.kind,
            "input": op.input,
            "describe": op.describe(),
            "params": op.params,
            "rate": op.rate,
            "unit": op.unit,
            "lineage": lineage_text(op, config.stable),
            "live_table": operation_table_name(config.perspective_table, op.name),
            "stored_table": operation_table_name(config.stable, op.name),
        }
        for op in operations_of(config, dataset)
    ]


def list_operations(config: Config, stored: bool = False) -> list[dict[str, Any]]:
    """`ops list`: the declared operations (`describe_operations`) checked against the dataset the store holds,
    and with `stored` what each derived table holds per recorded lineage (`stored_versions`, under "stored").

    Without `stored`, a store that is not there (not seeded yet, not reachable) leaves the configured
    declaration to check them against."""
    try:
        store = open_store(config, create=False)
    except TaosprspError:
        if stored:
            raise
        return describe_operations(config, config.declared_dataset)
    with store:
        dataset = dataset_for(store, config)
        described = describe_operations(config, dataset)
        if stored:
            for entry, operation in zip(described, operations_of(config, dataset), strict=True):
                entry["stored"] = [asdict(version) for version in stored_versions(config, store, operation)]
    return described


def stored_versions(config: Config, store: Store, operation: Operation) -> list[StoredVersion]:
    """The lineage recorded in `operation`'s derived table (empty when `ops run` has not made it)."""
    table = operation_table_name(config.stable, operation.name)
    with open_store(config.replace(dataset={"stable": table}), store.kind, create=False) as derived:
        if derived.discover() is None:
            return []
        if isinstance(derived, TDengineStore):
            tags = "`params`, `input`, `lineage`"
            sql = f"SELECT {tags}, COUNT(*) FROM `{derived.database.name}`.`{table}` GROUP BY {tags}"
        else:
            tags = '"params", "input", "lineage"'
            sql = f'SELECT {tags}, count(*) FROM "{table}" GROUP BY {tags}'
        schema = pa.schema(
            [("params", pa.string()), ("input", pa.string()), ("lineage", pa.string()), ("rows", pa.int64())]
        )
        return [StoredVersion(**row) for row in derived.select(sql, schema).to_pylist()]
