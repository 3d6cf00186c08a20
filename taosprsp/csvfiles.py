"""`import csv` and `export csv`: CSV files into a store and back, columnar through pyarrow's CSV reader and writer.

Import reads each file in large blocks (every column as text first, so that one bad value costs one row, not
a block), converts each column to its field's type with Arrow compute, and writes the block in the order the
store takes history fastest (`Store.bulk_order`, under `Store.bulk_load`), reading the next block meanwhile.
The schema is the table the store already holds, else a declared dataset, else inferred from the first
block of the first file (integers BIGINT, decimals DOUBLE, true/false BOOL, text VARCHAR). A column names the
subtable (`tbname` unless told; without one, each file is one subtable named after it), and the columns
given as tags are tags: a new subtable takes the tags of its first row.

Bad rows are never dropped silently: a row with the wrong number of fields or a value that does not convert
(or a string longer than its VARCHAR/NCHAR) is counted and reported with its line number. Line numbers are
found by a second read of the file with Python's CSV reader, only when a file has bad rows; a quoted value
may hold newlines (RFC 4180), so a row may span lines, and its line is the one it starts on.

Over 400 lines: import and export share the time formats, the schema choice and the file naming; the import
pipeline (blocks, conversion, bad-row location) is one job read top to bottom.

Importing the same file twice writes no row twice: TDengine keeps one row per timestamp per subtable, and so
does the embedded store (its (ts, tbname) key replaces a row written again).

Times in a CSV are ISO 8601 (a zone offset or `Z`; without one, UTC) or epoch integers in the database
precision, one or the other for a whole file: the file's first time decides, and a time written the other
way is a bad row saying so. Export writes ISO 8601
in UTC, NULL as an empty field and an empty string as `""`, which import reads back as NULL and as the empty
string.
"""

from __future__ import annotations

import csv as text_csv
import difflib
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as csv

from taosprsp.datasets import SUBTABLE_COLUMN, TICKS_PER_SECOND, Dataset, Field, Precision, with_dashboard_defaults
from taosprsp.errors import TaosprspError
from taosprsp.stores.base import Store
from taosprsp.stores.discover import resolve_dataset

BLOCK_BYTES = 4 << 20
"""Bytes of CSV per block read, and so per write: about 25,000-60,000 rows. Small enough that the first write
starts soon after the command does (a 16 MiB block kept the store idle ~0.4 s), large enough that a write's
own cost stays small beside its rows'."""
INFERRED_STRING_LENGTH = 256
LOCATE_CHUNK = 4096
SHOWN_BAD_ROWS = 20
_UNITS = {"ms": "ms", "us": "us", "ns": "ns"}
_EPOCH = re.compile(r"^\s*-?\d+\s*$")
TimeFormat = Literal["epoch", "iso"]
_TIME_FORMAT_WORDS: dict[TimeFormat, str] = {"epoch": "an epoch integer", "iso": "an ISO 8601 time"}


@dataclass(frozen=True)
class CsvOptions:
    """How a CSV's columns map onto a super table."""

    subtable: str = SUBTABLE_COLUMN
    time: str = ""
    tags: tuple[str, ...] = ()
    delimiter: str = ","


@dataclass(frozen=True)
class BadRow:
    file: str
    line: int
    reason: str


@dataclass
class ImportSummary:
    """What `import csv` did; `as_dict` is its `--json` output."""

    store: str
    dataset: str
    files: int = 0
    rows_read: int = 0
    rows_written: int = 0
    rows_bad: int = 0
    seconds: float = 0.0
    bad_rows: list[BadRow] = field(default_factory=list)

    @property
    def rows_per_second(self) -> float:
        return self.rows_written / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict:
        data = asdict(self)
        data["bad_rows"] = data["bad_rows"][:SHOWN_BAD_ROWS]
        data["rows_per_second"] = round(self.rows_per_second, 1)
        return data


def _refused(message: str) -> TaosprspError:
    return TaosprspError(message)


def time_format(text: pa.Array) -> TimeFormat | None:
    """How the first present value of `text` writes a time: `epoch` (an integer) or `iso`; None when no value
    is present."""
    present = pc.drop_null(text)
    if not len(present):
        return None
    return "epoch" if _EPOCH.match(present[0].as_py()) else "iso"


def epoch_ticks_of(text: pa.Array, precision: Precision, written: TimeFormat) -> pa.Array:
    """Times as text, all `written` one way (ISO 8601, or epoch integers in `precision`) -> epoch integers;
    a value written otherwise raises."""
    if written == "epoch":
        return pc.cast(pc.utf8_trim_whitespace(text), pa.int64())
    try:
        stamps = pc.cast(text, pa.timestamp("ns", tz="UTC"))
    except pa.ArrowInvalid:
        stamps = pc.cast(text, pa.timestamp("ns"))  # no zone offset: taken as UTC
    nanos = pc.cast(stamps, pa.int64())
    return pc.divide(nanos, 1_000_000_000 // TICKS_PER_SECOND[precision])


def parse_time(text: str, precision: Precision, what: str) -> int:
    """One time from the command line (ISO 8601 or epoch integer) as epoch integer in `precision`."""
    value = pa.array([text])
    try:
        return epoch_ticks_of(value, precision, time_format(value) or "iso")[0].as_py()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise TaosprspError(f"{what}: {text!r} is not a time (ISO 8601, e.g. 2024-05-01T12:00:00Z, or epoch)") from None


def _convert(column: pa.Array, f: Field, precision: Precision, times: TimeFormat) -> pa.Array:
    if f.is_time:
        return epoch_ticks_of(column, precision, times)
    if f.spec.arrow == pa.string():
        return column
    return pc.cast(column, f.spec.arrow)


def _located(column: pa.Array, f: Field, precision: Precision, times: TimeFormat) -> tuple[pa.Array, np.ndarray]:
    """`column` converted for `f`, and a mask of the values that do not convert (NULL in the result).

    The whole column converts in one call when it can; otherwise chunks narrow down the bad values, and only
    the values of a failing chunk are tried one by one.
    """
    bad = np.zeros(len(column), dtype=bool)
    try:
        converted = _convert(column, f, precision, times)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pieces = []
        for start in range(0, len(column), LOCATE_CHUNK):
            chunk = column.slice(start, LOCATE_CHUNK)
            try:
                pieces.append(_convert(chunk, f, precision, times))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                values = []
                for i in range(len(chunk)):
                    try:
                        values.append(_convert(chunk.slice(i, 1), f, precision, times))
                    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                        bad[start + i] = True
                        values.append(pa.nulls(1, f.spec.arrow if not f.is_time else pa.int64()))
                pieces.append(pa.concat_arrays([v.cast(values[0].type) for v in values]))
        converted = pa.concat_arrays([p.cast(pieces[0].type) for p in pieces])
    if f.spec.arrow == pa.string() and f.length:
        size = pc.utf8_length(column) if f.kind == "nchar" else pc.binary_length(column)
        bad |= pc.fill_null(pc.greater(size, f.length), False).to_numpy(zero_copy_only=False)
    return converted, bad


def _parse_options(
    options: CsvOptions, invalid_row_handler: Callable[[csv.InvalidRow], str] | None = None
) -> csv.ParseOptions:
    """RFC 4180 as Python's CSV reader reads it too (a quoted value may hold newlines), so both count rows alike."""
    return csv.ParseOptions(
        delimiter=options.delimiter, newlines_in_values=True, invalid_row_handler=invalid_row_handler
    )


def _first_block_schema(path: Path, options: CsvOptions) -> pa.Schema:
    """The columns of a CSV, typed as pyarrow infers them from its first block (rows it cannot parse skipped)."""
    parse = _parse_options(options, lambda row: "skip")
    try:
        reader = csv.open_csv(path, parse_options=parse, convert_options=_read_options(options)["convert_options"])
    except (pa.ArrowInvalid, OSError) as exc:
        raise _refused(f"{path}: not a CSV file this can read: {exc}") from None
    schema = reader.schema
    reader.close()
    return schema


def _subtable_name(path: Path) -> str:
    name = re.sub(r"[^A-Za-z0-9_]", "_", path.stem) or "csv"
    return f"t_{name}" if name[0].isdigit() else name


def _read_options(options: CsvOptions, columns: Sequence[str] | None = None) -> dict:
    """Options of pyarrow's reader: every column as text, NULL only for an unquoted empty field."""
    convert = csv.ConvertOptions(
        column_types={name: pa.string() for name in columns} if columns else None,
        strings_can_be_null=True,
        quoted_strings_can_be_null=False,
        null_values=[""],
    )
    return {
        # one thread: the blocks are read on a thread of their own (`_ahead`) beside the store's writes, which
        # set the pace; more threads parsing only take a core from the writer
        "read_options": csv.ReadOptions(block_size=BLOCK_BYTES, use_threads=False),
        "parse_options": _parse_options(options),
        "convert_options": convert,
    }


def infer_dataset(path: Path, stable: str, options: CsvOptions) -> Dataset:
    """A dataset for a CSV no table or declaration describes, from the types pyarrow infers in its first block."""
    schema = _first_block_schema(path, options)
    names = [n for n in schema.names if n != options.subtable]
    time_name = options.time or names[0]
    for name in (time_name, *options.tags):
        if name not in names:
            raise _refused(f"{path}: no column {name!r}{_closest(name, names)}")

    def field_of(name: str) -> Field:
        kind = schema.field(name).type
        if name == time_name:
            return Field(name, "timestamp")
        if pa.types.is_boolean(kind):
            return Field(name, "bool")
        if pa.types.is_integer(kind):
            return Field(name, "bigint")
        if pa.types.is_floating(kind):
            return Field(name, "double")
        if pa.types.is_timestamp(kind):
            return Field(name, "timestamp")
        return Field(name, "varchar", length=INFERRED_STRING_LENGTH)

    columns = tuple(field_of(n) for n in [time_name, *(n for n in names if n != time_name and n not in options.tags)])
    tags = tuple(field_of(n) for n in options.tags)
    dataset = Dataset(stable, f"inferred from {path.name}", columns, tags, f"{stable}_", "", ())
    return with_dashboard_defaults(dataset)


def _closest(word: str, choices: Sequence[str]) -> str:
    match = difflib.get_close_matches(word, list(choices), n=1)
    return f"; did you mean {match[0]!r}?" if match else ""


class _FileImport:
    """One file into the store, block by block."""

    def __init__(
        self,
        path: Path,
        dataset: Dataset,
        precision: Precision,
        options: CsvOptions,
        order: list[tuple[str, str]] | None = None,
    ) -> None:
        """`order`: the `sort_by` keys of each block written (default: by subtable, then time)."""
        self.path, self.dataset, self.precision, self.options = path, dataset, precision, options
        self.order = order or [(SUBTABLE_COLUMN, "ascending"), (dataset.timestamp.name, "ascending")]
        self.unparsed = 0
        """Rows pyarrow could not split into the header's number of fields (skipped, located later)."""
        self.value_errors: list[tuple[int, str]] = []
        self.rows_read = 0
        self.first_row = 0
        """Rows of earlier blocks: a block's row i is data row `first_row + i` of the file."""
        self.times: TimeFormat | None = None
        """How the file writes its times: as its first time is written."""

    def _columns(self, header: Sequence[str]) -> dict[str, str]:
        """CSV column -> field name, checked: every column is a field (or the subtable), the time is there."""
        fields = {f.name for f in self.dataset.fields}
        time_name = self.options.time or self.dataset.timestamp.name
        mapping = {name: name for name in header if name in fields}
        if time_name in header:
            mapping[time_name] = self.dataset.timestamp.name
        unknown = [n for n in header if n not in mapping and n != self.options.subtable]
        if unknown:
            raise _refused(
                f"{self.path}: columns {', '.join(unknown)} are not fields of {self.dataset.name} "
                f"({', '.join(f.name for f in self.dataset.fields)}){_closest(unknown[0], sorted(fields))}"
            )
        if self.dataset.timestamp.name not in mapping.values():
            raise _refused(f"{self.path}: no time column {time_name!r}; name it with --time")
        return mapping

    def _invalid(self, row: csv.InvalidRow) -> str:
        self.unparsed += 1
        return "skip"

    def batches(self) -> Iterable[pa.Table]:
        """The file's rows in the store layout, a block at a time, bad rows left out (and noted)."""
        header = _first_block_schema(self.path, self.options).names
        mapping = self._columns(header)
        settings = _read_options(self.options, header)
        settings["parse_options"] = _parse_options(self.options, self._invalid)
        schema = self.dataset.arrow_schema()
        constant = _subtable_name(self.path) if self.options.subtable not in header else None
        for block in csv.open_csv(self.path, **settings):
            if block.num_rows == 0:
                continue
            by_field = {mapping[n]: block[n] for n in block.column_names if n in mapping}
            bad = np.zeros(block.num_rows, dtype=bool)
            arrays: dict[str, pa.Array] = {}
            names = block[self.options.subtable] if constant is None else pa.array([constant] * block.num_rows)
            missing_name = pc.is_null(names).to_numpy(zero_copy_only=False)
            self._note(missing_name & ~bad, f"no subtable name in column {self.options.subtable!r}")
            bad |= missing_name
            arrays[SUBTABLE_COLUMN] = names
            time_name = self.dataset.timestamp.name
            if self.times is None and time_name in by_field:
                self.times = time_format(by_field[time_name])
            for f in self.dataset.fields:
                if f.name not in by_field:
                    arrays[f.name] = pa.nulls(block.num_rows, f.spec.arrow)
                    continue
                converted, wrong = _located(by_field[f.name], f, self.precision, self.times or "iso")
                self._note(wrong & ~bad, self._not_converted(f))
                bad |= wrong
                arrays[f.name] = converted
            no_time = pc.is_null(arrays[self.dataset.timestamp.name]).to_numpy(zero_copy_only=False) & ~bad
            self._note(no_time, f"{self.dataset.timestamp.name}: no time")
            bad |= no_time
            self.rows_read += block.num_rows
            table = pa.table([pc.cast(arrays[f.name], f.type) for f in schema], schema=schema)
            if bad.any():
                table = table.filter(pa.array(~bad))
            self.first_row += block.num_rows
            yield table if _in_order(table, self.order) else table.sort_by(self.order)

    def _not_converted(self, f: Field) -> str:
        if not f.is_time:
            return f"{f.name}: not a {f.tdengine_type()}"
        written = self.times or "iso"
        return f"{f.name}: not {_TIME_FORMAT_WORDS[written]}, as this file's first time is"

    def _note(self, mask: np.ndarray, reason: str) -> None:
        for index in np.flatnonzero(mask).tolist():
            self.value_errors.append((self.first_row + index, reason))

    def bad_rows(self) -> list[BadRow]:
        """Every bad row with the line it starts on, from a second read of the file (done only when there are
        bad rows): Python's CSV reader splits rows as pyarrow does, quoted newlines included, and counts lines."""
        if not self.unparsed and not self.value_errors:
            return []
        wanted = dict(self.value_errors)
        found: list[BadRow] = []
        data_row = 0
        try:
            with self.path.open(encoding="utf-8", errors="replace", newline="") as handle:
                reader = text_csv.reader(handle, delimiter=self.options.delimiter)
                width = len(next(reader, []))
                line = reader.line_num + 1
                for record in reader:
                    start, line = line, reader.line_num + 1
                    if not record:
                        continue  # an empty line, which pyarrow skips too
                    if len(record) != width:
                        found.append(
                            BadRow(str(self.path), start, f"{len(record)} fields where the header has {width}")
                        )
                        continue
                    if data_row in wanted:
                        found.append(BadRow(str(self.path), start, wanted[data_row]))
                    data_row += 1
        except text_csv.Error as exc:
            raise _refused(f"{self.path}: cannot find the lines of its bad rows: {exc}") from None
        return found


def _in_order(table: pa.Table, keys: Sequence[tuple[str, str]]) -> bool:
    """Whether the rows of `table` are already in the order of `keys` (each ascending, as stores order a bulk
    load), so that a block read in that order is written without the copy a sort makes."""
    tied: pa.Array | None = None  # neighbours equal in every key so far: only they are ordered by the next key
    for name, _ in keys:
        column = table[name]
        earlier, later = column.slice(0, len(column) - 1), column.slice(1)
        backwards = pc.less(later, earlier)
        if pc.any(backwards if tied is None else pc.and_(backwards, tied)).as_py():
            return False
        equal = pc.equal(later, earlier)
        tied = equal if tied is None else pc.and_(tied, equal)
    return True


def _ahead(batches: Iterable[pa.Table]) -> Iterator[pa.Table]:
    """The same batches, each read and converted on a worker thread while the previous one is written (Arrow's
    reader and SQLite both work outside the GIL)."""
    source = iter(batches)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="csv") as pool:
        pending = pool.submit(next, source, None)
        while (batch := pending.result()) is not None:
            pending = pool.submit(next, source, None)
            yield batch


def import_csv(
    store: Store,
    paths: Sequence[Path],
    dataset: Dataset,
    precision: Precision,
    options: CsvOptions = CsvOptions(),
    on_progress: Callable[[int], None] | None = None,
) -> ImportSummary:
    """Write the rows of every file in `paths` into `store` as `dataset`; the summary counts and names bad rows."""
    started = time.perf_counter()
    summary = ImportSummary(store.describe(), dataset.name)
    store.ensure_schema(dataset, 0)
    for path in paths:
        if not path.is_file():
            raise _refused(f"{path}: no such file")
        one = _FileImport(path, dataset, precision, options, store.bulk_order(dataset))
        with store.bulk_load():
            for batch in _ahead(one.batches()):
                summary.rows_written += store.write(dataset, batch)
                if on_progress:
                    on_progress(batch.num_rows)
        summary.files += 1
        summary.rows_read += one.rows_read + one.unparsed
        summary.rows_bad += one.unparsed + len(one.value_errors)
        summary.bad_rows.extend(one.bad_rows())
    summary.seconds = time.perf_counter() - started
    return summary


@dataclass
class ExportSummary:
    path: str
    dataset: str
    rows: int
    seconds: float

    def as_dict(self) -> dict:
        return asdict(self)


def export_csv(
    store: Store,
    dataset: Dataset,
    path: Path,
    precision: Precision,
    start: int | None = None,
    end: int | None = None,
    subtables: Sequence[str] = (),
) -> ExportSummary:
    """Write the rows with `start <= ts < end` of `subtables` (all when empty) to `path`, times in ISO 8601 UTC."""
    started = time.perf_counter()
    rows = store.read_range(dataset, start, end, subtables)
    columns = []
    for name in rows.column_names:
        column = rows[name]
        if name != SUBTABLE_COLUMN and dataset.field(name).is_time:
            column = pc.cast(column, pa.timestamp(_UNITS[precision], tz="UTC"))
        columns.append(column)
    csv.write_csv(pa.table(columns, names=rows.column_names), path)
    return ExportSummary(str(path), dataset.name, rows.num_rows, time.perf_counter() - started)


def import_dataset(store: Store, declared: Dataset | None, stable: str, first: Path, options: CsvOptions) -> Dataset:
    """The schema an import writes: the table the store holds (with `declared`'s extras when they have the same
    fields), else `declared`, else one inferred from the first file."""
    held = store.discover()
    if held is not None or declared is not None:
        return resolve_dataset(held, declared, f"{store.describe()}, table {stable}", store.kind == "tdengine")
    if not first.is_file():
        raise _refused(f"{first}: no such file")
    return infer_dataset(first, stable, options)


def default_stable(path: Path) -> str:
    """The table a CSV goes to when neither the command line nor the config names one: the file's name."""
    return _subtable_name(path)
