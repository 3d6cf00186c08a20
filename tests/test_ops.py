"""Signal operations: streamed batch by batch they equal the same operation over the whole signal at once.

Filters against one offline `scipy.signal.sosfilt`, spectra against sines of known frequencies, conversions
against pint, resampling and shifts against exact arithmetic; declarations refused with the key named;
`ops run` writing derived tables with their lineage into a real store, and a real `serve` filling the
operations' live tables from a producer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from conftest import drop_test_database, store_config
from helpers import start_producer, wait_until
from scipy import signal
from typer.testing import CliRunner

from taosprsp.cli import app
from taosprsp.client import fetch_table
from taosprsp.config import Config, load_config
from taosprsp.datasets import METERS, SUBTABLE_COLUMN
from taosprsp.derived import DerivedTables, derived_specs
from taosprsp.errors import ConfigError
from taosprsp.ops import declare_operations, resample
from taosprsp.ops.history import derived_dataset, run_operations, stored_versions
from taosprsp.ops.live import operation_table_name
from taosprsp.ops.pipeline import Pipeline
from taosprsp.ops.series import Frames, Series
from taosprsp.ops.spectrum import NonUniformSampling
from taosprsp.ops.units import unit_registry
from taosprsp.seed import seed
from taosprsp.serve import LiveServer
from taosprsp.stores import open_store

RATE = 100.0
PERIOD_MS = 10
START_MS = 1_700_000_000_000
SUBTABLES = ("d0", "d1", "d2")


def rows_of(subtable: np.ndarray, ts: np.ndarray, current: np.ndarray, mask: np.ndarray | None = None) -> pa.Table:
    """Raw meters rows in the store layout with the given subtables, times and currents."""
    n = len(ts)
    return pa.table(
        {
            SUBTABLE_COLUMN: pa.array([SUBTABLES[i] for i in subtable], pa.string()),
            "ts": pa.array(ts, pa.int64()),
            "current": pa.array(current, pa.float32(), mask=mask),
            "voltage": pa.array(np.full(n, 220), pa.int32()),
            "phase": pa.array(np.full(n, 0.3), pa.float32()),
            "groupid": pa.array(subtable, pa.int32()),
            "location": pa.array([f"L{i}" for i in subtable], pa.string()),
        },
        schema=METERS.arrow_schema(),
    )


def signals(samples: int, seed_value: int = 7) -> dict[int, np.ndarray]:
    """Per subtable, a float32-exact noisy signal: a level, two sines and noise."""
    rng = np.random.default_rng(seed_value)
    t = np.arange(samples) / RATE
    return {
        code: (10 + code + np.sin(2 * np.pi * 2 * t) + 0.5 * np.sin(2 * np.pi * 30 * t) + rng.normal(0, 0.2, samples))
        .astype(np.float32)
        .astype(np.float64)
        for code in range(len(SUBTABLES))
    }


def in_random_batches(values: dict[int, np.ndarray], seed_value: int = 3) -> list[pa.Table]:
    """All subtables' samples interleaved in time, cut into batches of random sizes, each batch shuffled."""
    rng = np.random.default_rng(seed_value)
    samples = len(values[0])
    subtable = np.tile(np.arange(len(values)), samples)
    position = np.repeat(np.arange(samples), len(values))
    ts = START_MS + position * PERIOD_MS
    current = np.array([values[code][i] for code, i in zip(subtable, position, strict=True)])
    cuts = np.sort(rng.choice(np.arange(1, len(ts)), size=40, replace=False))
    batches = []
    for part in np.split(np.arange(len(ts)), cuts):
        shuffled = rng.permutation(part)
        batches.append(rows_of(subtable[shuffled], ts[shuffled], current[shuffled]))
    return batches


def declared(**operations: dict[str, Any]) -> tuple:
    return declare_operations(operations, METERS, "the test")


def streamed(operations: tuple, batches: list[pa.Table], final: bool = False) -> dict[str, Any]:
    """Each operation's outputs of every step through one pipeline: spectra as a list of frames, series per
    subtable number (d0 is 0) as (times, values)."""
    pipeline = Pipeline(operations, METERS, "ms", strict=True)
    outputs: dict[str, list] = {op.name: [] for op in operations}
    for index, batch in enumerate(batches):
        step = pipeline.step(batch, final=final and index == len(batches) - 1)
        for name, output in step.outputs.items():
            outputs[name].append(output)
    return {
        name: parts if parts and isinstance(parts[0], Frames) else per_subtable(parts, pipeline.codes.names)
        for name, parts in outputs.items()
    }


def per_subtable(parts: list[Series], names: list[str]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    whole = Series.concat([p for p in parts if len(p)])
    return {SUBTABLES.index(names[code]): (whole.ts[run], whole.values[run]) for code, run in whole.runs()}


@pytest.mark.parametrize(
    ("kind", "cutoff"), [("lowpass", 5.0), ("highpass", 10.0), ("bandpass", [1.0, 8.0])], ids=["low", "high", "band"]
)
def test_a_filter_fed_in_random_batches_equals_one_sosfilt_over_the_whole_signal(kind: str, cutoff: Any) -> None:
    values = signals(3000)
    operations = declared(f={"op": kind, "input": "current", "rate": RATE, "cutoff": cutoff, "order": 4})
    got = streamed(operations, in_random_batches(values))["f"]
    sos = signal.butter(4, cutoff, btype=kind, fs=RATE, output="sos")
    for code, x in values.items():
        expected = signal.sosfilt(sos, x, zi=signal.sosfilt_zi(sos) * x[0])[0]
        ts, y = got[code]
        assert np.array_equal(ts, START_MS + np.arange(len(x)) * PERIOD_MS)
        np.testing.assert_allclose(y, expected, rtol=0, atol=1e-9)


def test_late_rows_and_nulls_are_skipped_and_counted_without_disturbing_the_filter() -> None:
    values = signals(600)
    batches = in_random_batches(values)
    late = rows_of(np.array([0, 1]), np.array([START_MS, START_MS + PERIOD_MS]), np.array([99.0, 99.0]))
    so_far = pa.concat_tables(batches[:21])
    d2 = so_far.filter(pc.equal(so_far[SUBTABLE_COLUMN], "d2"))["ts"].to_numpy()
    # between two samples of d2: a row whose current is NULL, which the filter must not see
    nulls = rows_of(np.array([2]), np.array([d2.max() + PERIOD_MS // 2]), np.array([0.0]), mask=np.array([True]))
    operations = declared(f={"op": "lowpass", "input": "current", "rate": RATE, "cutoff": 5.0})
    pipeline = Pipeline(operations, METERS, "ms")
    outputs = []
    for index, batch in enumerate(batches):
        outputs.append(pipeline.step(batch).outputs["f"])
        if index == 20:
            outputs.append(pipeline.step(pa.concat_tables([late, nulls])).outputs["f"])
    got = per_subtable(outputs, pipeline.codes.names)
    sos = signal.butter(4, 5.0, fs=RATE, output="sos")
    for code, x in values.items():
        np.testing.assert_allclose(got[code][1], signal.sosfilt(sos, x, zi=signal.sosfilt_zi(sos) * x[0])[0], atol=1e-9)
    assert pipeline.samples_ignored == 2


def sines(samples: int, components: list[tuple[float, float]]) -> np.ndarray:
    t = np.arange(samples) / RATE
    return 5.0 + sum(amplitude * np.sin(2 * np.pi * frequency * t) for frequency, amplitude in components)


def peaks(frequencies: np.ndarray, magnitudes: np.ndarray, count: int) -> list[tuple[float, float]]:
    """The `count` highest local maxima, by frequency (a Hann window spreads a sine over three bins)."""
    inner = np.arange(1, len(magnitudes) - 1)
    local = inner[(magnitudes[inner] > magnitudes[inner - 1]) & (magnitudes[inner] > magnitudes[inner + 1])]
    top = np.sort(local[np.argsort(magnitudes[local])[-count:]])
    return [(float(frequencies[i]), float(magnitudes[i])) for i in top]


def test_spectrum_of_a_sum_of_sines_peaks_at_their_frequencies_and_amplitudes() -> None:
    # 100 Hz / 256 samples: 0.390625 Hz apart, so 3.125 Hz (bin 8) and 12.5 Hz (bin 32) fall on the grid
    x = sines(1024, [(3.125, 1.0), (12.5, 0.5)])
    batches = [
        rows_of(np.zeros(len(part), int), START_MS + part * PERIOD_MS, x[part])
        for part in np.split(np.arange(1024), [100, 450, 451, 900])
    ]
    operations = declared(s={"op": "spectrum", "input": "current", "rate": RATE, "size": 256, "every": 64})
    frames: list[Frames] = [f for f in streamed(operations, batches)["s"] if len(f)]
    assert sum(len(f) for f in frames) == (1024 - 256) // 64 + 1
    for f in frames:
        for magnitudes in f.magnitudes:
            (low, low_amplitude), (high, high_amplitude) = peaks(f.frequencies, magnitudes, 2)
            assert (low, high) == (3.125, 12.5)
            assert low_amplitude == pytest.approx(1.0, abs=0.02) and high_amplitude == pytest.approx(0.5, abs=0.02)
    window_ends = np.concatenate([f.ts for f in frames])
    assert np.array_equal(window_ends, START_MS + (255 + 64 * np.arange(len(window_ends))) * PERIOD_MS)


def test_welch_spectrum_after_a_bandpass_keeps_only_the_sine_in_the_band() -> None:
    x = sines(4096, [(3.125, 1.0), (25.0, 1.0)])
    batches = [
        rows_of(np.zeros(512, int), START_MS + part * PERIOD_MS, x[part]) for part in np.split(np.arange(4096), 8)
    ]
    operations = declared(
        band={"op": "bandpass", "input": "current", "rate": RATE, "cutoff": [20.0, 30.0]},
        s={"op": "spectrum", "input": "band", "size": 1024, "every": 1024, "method": "welch", "segment": 256},
    )
    frames = [f for f in streamed(operations, batches)["s"] if len(f)]
    last = frames[-1]
    frequencies, magnitudes = last.frequencies, last.magnitudes[-1]
    assert peaks(frequencies, magnitudes, 1)[0][0] == 25.0
    assert magnitudes[np.argmin(np.abs(frequencies - 3.125))] < 0.05 * magnitudes.max()


def test_a_spectrum_refuses_unevenly_spaced_samples_in_a_history_run_and_skips_them_live() -> None:
    ts = START_MS + np.cumsum(np.where(np.arange(300) % 10 == 0, 91, 1))  # bursts, as a live producer stamps them
    batch = rows_of(np.zeros(300, int), ts, np.ones(300))
    operations = declared(s={"op": "spectrum", "input": "current", "rate": RATE, "size": 64})
    with pytest.raises(NonUniformSampling, match=r"operations\.s: the samples of d0 are not evenly spaced at 100 Hz"):
        Pipeline(operations, METERS, "ms", strict=True).step(batch)
    live = Pipeline(operations, METERS, "ms")
    assert len(live.step(batch).outputs["s"]) == 0
    assert live.states["s"].windows_skipped == 300 // 64


def test_conversions_equal_pint_and_a_declared_scale() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(20, 5, 500).astype(np.float32).astype(np.float64)
    batches = [
        rows_of(np.zeros(len(part), int), START_MS + part * PERIOD_MS, x[part])
        for part in np.split(np.arange(500), [7, 300])
    ]
    operations = declared(
        ma={"op": "convert", "input": "current", "to": "mA"},
        f={"op": "convert", "input": "current", "from": "degC", "to": "degF"},
        scaled={"op": "convert", "input": "current", "scale": 2.5, "offset": -1.0},
    )
    got = {name: outputs[0][1] for name, outputs in streamed(operations, batches).items()}
    units = unit_registry()
    np.testing.assert_allclose(got["ma"], units.Quantity(x, "A").to("mA").magnitude, rtol=1e-12)
    np.testing.assert_allclose(got["f"], units.Quantity(x, "degC").to("degF").magnitude, rtol=1e-12)
    np.testing.assert_allclose(got["scaled"], x * 2.5 - 1.0, rtol=1e-12)
    assert [op.unit for op in operations] == ["mA", "degF", ""]


@pytest.mark.parametrize("agg", ["mean", "last"])
def test_resample_equals_a_group_by_over_epoch_aligned_bins_and_a_shift_moves_every_sample(agg: str) -> None:
    rng = np.random.default_rng(5)
    ts = START_MS + np.cumsum(rng.integers(1, 40, 2000))
    x = rng.normal(0, 1, 2000)
    subtable = rng.integers(0, 3, 2000)
    cuts = np.split(np.arange(2000), np.sort(rng.choice(np.arange(1, 2000), 30, replace=False)))
    batches = [rows_of(subtable[part], ts[part], x[part]) for part in cuts]
    operations = declared(
        r={"op": "resample", "input": "current", "every": "250ms", "agg": agg},
        later={"op": "shift", "input": "current", "by": "-1.5s"},
    )
    outputs = streamed(operations, batches, final=True)
    resampled, shifted = outputs["r"], outputs["later"]
    x32 = x.astype(np.float32).astype(np.float64)
    for code in range(3):
        mine = subtable == code
        table = pa.table({"bin": ts[mine] // 250 * 250, "x": x32[mine]})
        grouped = table.group_by("bin", use_threads=False).aggregate([("x", agg)]).sort_by("bin")
        assert np.array_equal(resampled[code][0], grouped["bin"].to_numpy())
        np.testing.assert_allclose(resampled[code][1], grouped[f"x_{agg}"].to_numpy(), rtol=1e-12)
        assert np.array_equal(shifted[code][0], ts[mine] - 1500)
        assert np.array_equal(shifted[code][1], x32[mine])


def test_resample_with_fill_repeats_the_previous_bin_over_gaps() -> None:
    ts = START_MS + np.array([0, 10, 320, 330, 950, 1010])  # bins of 100 ms: 0, 3, 9, 10
    batches = [
        rows_of(np.zeros(3, int), ts[:3], np.array([1.0, 3.0, 5.0])),
        rows_of(np.zeros(3, int), ts[3:], np.array([7.0, 9.0, 11.0])),
    ]
    operations = declared(r={"op": "resample", "input": "current", "every": "100ms", "fill": "previous"})
    ((got_ts, got),) = streamed(operations, batches, final=True)["r"].values()
    assert np.array_equal(got_ts - START_MS, np.arange(11) * 100)
    assert got.tolist() == [2.0, 2.0, 2.0, 6.0, 6.0, 6.0, 6.0, 6.0, 6.0, 9.0, 11.0]


@pytest.mark.parametrize(
    ("operations", "message"),
    [
        (
            {"lp": {"op": "lowpass", "input": "current", "rate": 100, "cutoff": 60}},
            r"operations\.lp\.cutoff in the test: 60 Hz is at or above the Nyquist frequency, 50 Hz",
        ),
        (
            {"bp": {"op": "bandpass", "input": "current", "rate": 100, "cutoff": [5, 2]}},
            r"operations\.bp\.cutoff .*low \(5 Hz\) must be below high",
        ),
        (
            {"lp": {"op": "lowpass", "input": "current", "cutoff": 1}},
            r"operations\.lp\.rate .*sample rate of 'current' is not known",
        ),
        (
            {"c": {"op": "convert", "input": "current", "to": "furlongs_per_ampere"}},
            r"operations\.c\.to .*unknown unit 'furlongs_per_ampere'",
        ),
        ({"c": {"op": "convert", "input": "current", "to": "V"}}, r"operations\.c\.to .*cannot convert A to V"),
        (
            {"c": {"op": "convert", "input": "phase", "from": "radian", "to": "degree", "scale": 2}},
            r"operations\.c in the test: convert with `to`",
        ),
        (
            {"a": {"op": "shift", "input": "b", "by": "1s"}, "b": {"op": "shift", "input": "a", "by": "1s"}},
            r"operations\.[ab]\.input .*a -> b -> a|b -> a -> b",
        ),
        (
            {"x": {"op": "lowpass", "input": "currnt", "rate": 10, "cutoff": 1}},
            r"operations\.x\.input .*'currnt' is neither .*did you mean 'current'",
        ),
        ({"x": {"op": "lowpas", "input": "current"}}, r"operations\.x\.op .*did you mean 'lowpass'"),
        (
            {"x": {"op": "lowpass", "input": "current", "rate": 10, "cutof": 1}},
            r"operations\.x\.cutof .*did you mean 'cutoff'",
        ),
        (
            {"s": {"op": "spectrum", "input": "current", "rate": 10}, "t": {"op": "shift", "input": "s", "by": "1s"}},
            r"operations\.t\.input .*'s' is a spectrum",
        ),
        (
            {
                "r": {"op": "resample", "input": "current", "every": "1s"},
                "lp": {"op": "lowpass", "input": "r", "rate": 5, "cutoff": 0.1},
            },
            r"operations\.lp\.rate .*'r' already sets the sample rate \(1 Hz\)",
        ),
        (
            {"current": {"op": "shift", "input": "voltage", "by": "1s"}},
            r"operations\.current in the test: is named like a field",
        ),
        (
            {"w": {"op": "spectrum", "input": "current", "rate": 10, "window": "nope"}},
            r"operations\.w\.window .*'nope' is not a window",
        ),
    ],
    ids=[
        "nyquist",
        "band-order",
        "no-rate",
        "unknown-unit",
        "wrong-dimension",
        "unit-and-scale",
        "loop",
        "unknown-input",
        "unknown-op",
        "unknown-key",
        "spectrum-input",
        "rate-twice",
        "field-name",
        "window",
    ],
)
def test_bad_declarations_are_one_clear_config_error_naming_the_key(operations: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        declare_operations(operations, METERS, "the test")
    assert caught.value.exit_code == 3 and "\n" not in str(caught.value)


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ops.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_bad_operation_in_the_config_file_exits_3_naming_key_and_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, '[operations.lp]\nop = "lowpass"\ninput = "current"\nrate = 10\ncutoff = 7\n')
    result = CliRunner().invoke(app, ["--config", str(path), "ops", "list"])
    assert result.exit_code == 3
    assert f"operations.lp.cutoff in {path}: 7 Hz is at or above the Nyquist frequency" in result.output


HISTORY_OPS = """
[operations.lp]
op = "lowpass"
input = "current"
rate = 10
cutoff = 1.0

[operations.lp_ma]
op = "convert"
input = "lp"
to = "mA"

[operations.spec]
op = "spectrum"
input = "current"
rate = 10
size = 32
every = 32

[operations.r1s]
op = "resample"
input = "voltage"
every = "1s"
"""


def history_config(kind: str, tmp_path: Path) -> Config:
    base = store_config(kind, tmp_path)
    path = write_config(tmp_path, HISTORY_OPS)
    sections = {
        "store": {"kind": base.store.kind, "path": base.store.path},
        "state": {"dir": base.state.dir},
        "database": {"name": base.database.name, "vgroups": base.database.vgroups},
        "tdengine": {"dsn": base.tdengine.dsn},
    }
    return load_config(path, overrides=sections, environ={})


@pytest.fixture(params=[pytest.param("embedded"), pytest.param("tdengine", marks=pytest.mark.tdengine)])
def history(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    config = history_config(request.param, tmp_path)
    try:
        with open_store(config) as store:
            # 10 subtables x 400 rows over 40 s: one row per 100 ms, 10 Hz, evenly spaced
            seed(store, METERS, 10, config.database.precision, rows=4000, span_seconds=40, seed_value=1)
        yield config
    finally:
        drop_test_database(config)


def stored(config: Config, operation: str) -> pa.Table:
    table = operation_table_name(config.stable, operation)
    op = {o.name: o for o in declare_operations(config.operations, METERS)}[operation]
    with open_store(config.replace(dataset={"stable": table})) as store:
        return store.read_range(derived_dataset(op, table, "ts"))


def test_ops_run_writes_derived_tables_with_lineage_and_a_second_run_adds_nothing(history: Config) -> None:
    with open_store(history) as store:
        everything = store.read_range(METERS)
    raw = everything.filter(pc.equal(everything[SUBTABLE_COLUMN], "d3"))
    summary = run_operations(history)
    assert summary.rows_read == everything.num_rows == 4000
    written = {run.name: run.rows_written for run in summary.operations}
    assert written["lp"] == written["lp_ma"] == 4000  # one output row per input sample
    assert written["spec"] == 10 * ((400 - 32) // 32 + 1) * 17  # per subtable 12 windows of 17 frequencies
    seconds = pa.table({"tbname": everything[SUBTABLE_COLUMN], "s": pc.divide(everything["ts"], 1000)})
    assert written["r1s"] == seconds.group_by(["tbname", "s"]).aggregate([]).num_rows  # one row per 1 s bin
    lp = stored(history, "lp")
    mine = lp.filter(pc.equal(lp["source"], "d3"))
    sos = signal.butter(4, 1.0, fs=10, output="sos")
    x = raw["current"].cast(pa.float64()).to_numpy()
    np.testing.assert_allclose(
        mine["value"].to_numpy(), signal.sosfilt(sos, x, zi=signal.sosfilt_zi(sos) * x[0])[0], atol=1e-9
    )
    assert np.array_equal(mine["ts"].to_numpy(), raw["ts"].to_numpy())
    row = mine.slice(0, 1).to_pylist()[0]
    assert (row["operation"], row["kind"], row["input"]) == ("lp", "lowpass", "current")
    assert json.loads(row["params"]) == {"cutoff": 1.0, "order": 4, "rate": 10.0}
    assert stored(history, "lp_ma").slice(0, 1).to_pylist()[0]["lineage"] == "meters.current -> lp -> lp_ma"
    # TDengine resamples in SQL (INTERVAL), the embedded store in numpy: the same bins and means either way
    assert {run.name: run.pushed_down for run in summary.operations}["r1s"] == (history.store.kind == "tdengine")
    r1s = stored(history, "r1s")
    r1s = r1s.filter(pc.equal(r1s["source"], "d3"))
    starts, means = resample(raw["ts"].to_numpy(), raw["voltage"].cast(pa.float64()).to_numpy(), 1000)
    assert np.array_equal(r1s["ts"].to_numpy(), starts)
    np.testing.assert_allclose(r1s["value"].to_numpy(), means, rtol=1e-12)
    spectrum = stored(history, "spec")
    np.testing.assert_allclose(sorted(set(spectrum["frequency"].to_pylist())), np.arange(17) * 10 / 32)

    again = run_operations(history)
    assert {run.name: run.rows_written for run in again.operations} == written
    for name in written:
        assert stored(history, name).num_rows == written[name]
    with open_store(history) as store:
        versions = stored_versions(history, store, declare_operations(history.operations, METERS)[0])
    assert [(v.input, v.rows) for v in versions] == [("current", 4000)]


def test_ops_run_over_a_range_and_subtable_from_the_command_line(history: Config) -> None:
    with open_store(history) as store:
        first = int(store.read_range(METERS, subtables=["d0"])["ts"][0].as_py())
    start, end = first + 10_000, first + 20_000
    env = {
        "TAOSPRSP_STORE_KIND": history.store.kind,
        "TAOSPRSP_STORE_PATH": history.store.path,
        "TAOSPRSP_DATABASE_NAME": history.database.name,
        **({"TAOSPRSP_TDENGINE_DSN": history.tdengine.dsn} if history.tdengine.dsn else {}),
    }
    arguments = [
        "--json",
        "--config",
        history.source,
        "ops",
        "run",
        "--from",
        str(start),
        "--to",
        str(end),
        "--subtable",
        "d0",
    ]
    result = CliRunner().invoke(app, arguments, env=env)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["rows_read"] == 100 and summary["subtables"] == 1
    lp = stored(history, "lp")
    assert set(lp["source"].to_pylist()) == {"d0"} and lp.num_rows == 100
    assert lp["ts"].to_numpy().min() == start and lp["ts"].to_numpy().max() < end
    listed = CliRunner().invoke(app, ["--json", "--config", history.source, "ops", "list", "--stored"], env=env)
    assert listed.exit_code == 0, listed.output
    by_name = {entry["name"]: entry for entry in json.loads(listed.stdout)}
    assert by_name["lp"]["stored"][0]["rows"] == 100 and by_name["lp_ma"]["lineage"] == "meters.current -> lp -> lp_ma"


def test_derived_tables_host_one_table_per_operation_and_the_dashboard_a_panel_each(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, HISTORY_OPS), environ={})
    specs = {spec.name: spec for spec in derived_specs(config, METERS)}
    assert {"meters_lp", "meters_lp_ma", "meters_spec", "meters_r1s"} <= set(specs)
    assert specs["meters_spec"].kind == "spectrum" and specs["meters_lp"].kind == "series"
    from taosprsp.dashboard import dashboard_document

    panels = {panel["table"]: panel for panel in dashboard_document(config)["panels"]}
    assert panels["meters_lp"]["config"]["columns"] == ["current", "lp"]
    assert panels["meters_spec"]["config"]["columns"] == ["frequency", "magnitude"]
    tables = DerivedTables(METERS, "ms", tuple(specs.values()))
    assert tables.operations is not None and set(tables.operations.names) == set(specs) - {
        "meters_by_location",
        "meters_location_1s",
    }


LIVE_OPS = """
[operations.current_10hz]
op = "resample"
input = "current"
every = "100ms"
fill = "previous"

[operations.current_bp]
op = "bandpass"
input = "current_10hz"
cutoff = [0.5, 3.0]

[operations.current_spectrum]
op = "spectrum"
input = "current_bp"
size = 16
every = 4
"""


def test_serve_fills_chained_operation_tables_from_a_producer_for_a_perspective_client(tmp_path: Path) -> None:
    base = store_config("embedded", tmp_path)
    sections = {"store": {"kind": "embedded", "path": base.store.path}, "state": {"dir": base.state.dir}}
    config = load_config(write_config(tmp_path, LIVE_OPS), overrides=sections, environ={})
    live = LiveServer(config.replace(server={"port": 0, "interval": "50ms"})).start()
    try:
        producer = start_producer(config, "--count", "9000", "--rate", "3000", "--batch", "150")
        try:
            spectrum_table = operation_table_name(config.perspective_table, "current_spectrum")
            assert wait_until(lambda: fetch_table(live.websocket_url, spectrum_table).num_rows == 10 * 9, timeout=60)
            band = fetch_table(live.websocket_url, operation_table_name(config.perspective_table, "current_bp"))
        finally:
            producer.wait(timeout=60)
    finally:
        live.stop()
    assert band.num_rows > 0 and set(band.column_names) >= {"rid", "tbname", "ts", "current_10hz", "current_bp"}
    assert set(band["tbname"].to_pylist()) == {f"d{i}" for i in range(10)}
