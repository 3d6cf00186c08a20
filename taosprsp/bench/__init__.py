"""`bench`: throughput of every stage, end-to-end latency, and the seeds' way of doing it as a baseline.

Every run works on a fresh store of the configured kind, so user data is never touched: a temporary SQLite
file for the embedded store; for TDengine a database `taosprsp_bench_<random>` (and a super table and TMQ
topic with the same suffix, since topic names are global to the server), dropped afterwards.

Throughput stages, each measured `bench.repeats` times on `bench.rows` rows (median, min and max of rows/s):

- `generate`: `Generator.batch` + `Clock.live`, numpy only, in calls of the largest batch size;
- `ingest-<B>` for every B in `bench.batch_sizes`: `store.write` of B-row columnar batches over
  `dataset.tables` subtables (the path `produce` takes); batches are generated before the clock starts;
- `read`: `store.read_after(watermark)` of the newest `rows` rows into Arrow, in one call, with a mark for
  every subtable;
- `feed`: `Feed.apply` into real Perspective tables made by `serve.make_tables`, as `LiveServer` makes them
  (ring-indexed window and latest-per-subtable), in calls of the largest batch size.

End-to-end latency: for each feed mode the store has (`poll`; `poll` and `tmq` on TDengine) and each rate of
`bench.latency_rates`, an in-process `LiveServer` (port 0, loopback), a Perspective client on its WebSocket
with `view.on_update(mode="row")` on the window table, and `produce` writing at that steady rate for
`bench.latency_seconds`, a hundredth of a second's rows a write (so writes fall at every phase of the poll
interval). A row's latency runs from the moment its write call returned to the moment its row delta reached
the client; rows are matched by (tbname, ts in ms). Server, client and producer share this process.
The refresh comparison below writes the same way.

Baseline, measured in the same run the way the seed demos do it (see shared seeds):

- generate: a Python loop of row dicts, `random.uniform` and friends per field, 250 rows a call (`gen_data`);
- feed: `table.update(list_of_dicts)` of 1,000 rows a call into the seeds' table (dataset schema,
  `limit=1000`), times as epoch milliseconds (Perspective rejects datetime objects there);
- refresh: the newest 1,000 rows re-queried every 250 ms (`store.read_latest(dataset, 1000)`) while
  `produce` writes at each latency rate; counted are the new rows it delivers per second, the duplicates it
  re-sends and the rows it never delivers. Our incremental read (`read_after` + watermark) runs beside it
  at the same 250 ms, against the same writes.

Ratios (ours / baseline): `generate` and `feed` compare the medians; `read` compares our `read` median with
the most new rows per second the seeds' refresh can ever deliver, 1,000 rows per 250 ms = 4,000 rows/s
(the refresh figures show whether it reaches even that); `refresh` compares the new rows per second both
reads delivered at the highest latency rate.

JSON (`taosprsp bench --json PATH`, or the same document on stdout with `taosprsp --json bench`)::

    {
      "schema": "taosprsp.bench/1",
      "started_at": "2025-01-01T12:00:00+00:00", "seconds": 41.2, "quick": false,
      "store": {"kind": "embedded" | "tdengine", "target": str, "version": str},
      "dataset": "meters", "tables": 10,
      "results": [                                   # pipeline order: generate, ingest-*, read, feed
        {"stage": "generate" | "ingest" | "read" | "feed", "name": "ingest-1000",   # name: for --fail-under
         "batch": 1000 | null,                       # rows per call (null for read: one call)
         "rows": 200000,                             # rows per repeat
         "repeats": 3, "rows_per_second": {"median": float, "min": float, "max": float},
         "baseline_rows_per_second": float | null, "ratio": float | null}
      ],
      "latency": [
        {"feed": "poll" | "tmq", "rate": 1000, "seconds": 5.0, "written": int, "rows": int (matched),
         "unseen": int, "p50_ms": float, "p95_ms": float, "p99_ms": float, "max_ms": float}
      ],
      "baseline": {
        "generate": {"method": str, "rows": int, "repeats": int, "rows_per_second": {"median", "min", "max"}},
        "feed": {same keys},
        "refresh": [
          {"rate": 1000, "interval_ms": 250, "limit": 1000, "seconds": float, "written": int, "queries": int,
           "new_rows": int, "duplicate_rows": int, "missed_rows": int, "new_rows_per_second": float,
           "duplicate_rows_per_second": float, "query_rows_per_second": float,
           "ours_new_rows_per_second": float, "ours_duplicate_rows": int, "ours_missed_rows": int}
        ]
      },
      "ratios": {"generate": float, "feed": float, "read": float, "refresh": float},   # null when not measured
      "versions": {"taosprsp", "python", "numpy", "pyarrow", "perspective", "taosws", "tornado",
                   "tdengine_server": str | null},
      "machine": {"cpu_count": int, "platform": str, "machine": str, "memory_bytes": int | null},
      "config": {...}                                # taosprsp.config.as_dict of the config that ran, masked
    }

Modules: `stages` (the throughput stages), `latency`, `baseline` (the seed demos' way, and the refresh
comparison), `report` (the results, the JSON above, the tables, the plot, the `--fail-under` gate) and
`run` (the scratch store, the order of the measurements, progress).
"""

from taosprsp.bench.latency import feed_modes
from taosprsp.bench.report import (
    SCHEMA,
    BenchReport,
    below_thresholds,
    check_output_path,
    machine,
    parse_thresholds,
    render,
    versions,
    write_json,
    write_plot,
)
from taosprsp.bench.run import quick_config, run_bench
from taosprsp.bench.stages import stage_names

__all__ = [
    "SCHEMA",
    "BenchReport",
    "below_thresholds",
    "check_output_path",
    "feed_modes",
    "machine",
    "parse_thresholds",
    "quick_config",
    "render",
    "run_bench",
    "stage_names",
    "versions",
    "write_json",
    "write_plot",
]
