"""`bench`: throughput of every stage, end-to-end latency, and the seeds' way of doing it as a baseline.

Every run works on a fresh store of the configured kind, so user data is never touched: a temporary SQLite
file for the embedded store; for TDengine a database `taosprsp_bench_<random>` (and a super table and TMQ
topic with the same suffix, since topic names are global to the server), dropped afterwards.

Throughput stages, each measured `bench.repeats` times on `bench.rows` rows (median, min and max of rows/s):

- `generate`: `Generator.batch` + `Clock.live`, numpy only, in calls of the largest batch size;
- `ingest-<B>` for every B in `bench.batch_sizes`: `store.write` of B-row columnar batches over
  `dataset.tables` subtables (the path `produce` takes); batches are generated before the clock starts;
- `bare-<B>` (TDengine only), right after each `ingest-<B>`: the bare client on the same rows, made into the
  Python lists taos-ws-py takes before the clock starts, then per batch the stmt2 column helpers,
  `stmt2_bind_param_view`, `bind` and `execute`; `ingest-<B>` is compared with it (`ratios`);
- `read`: `store.read_after(watermark)` of the newest `rows` rows into Arrow, in one call, with a mark for
  every subtable;
- `feed`: `Feed.apply` of polled rows into real Perspective tables as `LiveServer` makes them: the
  ring-indexed window and latest-per-subtable tables (`serve.make_tables`) and the derived tables
  (`taosprsp.derived`), no view attached, in calls of the largest batch size;
- `history`: the history table's grouped view (mean of the first headline column per group tag) made over
  every row the stages wrote, by SQL in the store (`taosprsp.history`): rows aggregated per second, its
  `rows` the rows the store held (seconds per view = rows / rows per second).

End-to-end latency (`taosprsp.bench.latency`): for each feed mode the store has (`poll`; `poll` and `tmq` on
TDengine), each rate of `bench.latency_rates` and each client, `taosprsp serve` as a process of its own
(port 0, loopback, the configured `server.*` feed settings) over a full window (the store is first filled
to `server.limit` rows), `produce` in this process writing at that steady rate for `bench.latency_seconds`,
a hundredth of a second's rows a write (so writes fall at every phase of the poll interval), and a
Perspective client on the WebSocket on a thread of this process. A row's latency runs from the moment its
write call returned to the moment the client saw it:
- `bare`: a view of the window table, `on_update(mode="row")`: its row delta arrived (matched by tbname
  and ts in ms);
- `dashboard`: the default dashboard's panels as views (their configs from the served `dashboard.json`), each
  re-read on update as the browser does; seen at the end of the first round of re-reads whose latest-table
  view shows the row's subtable at its timestamp or later.
Serve's CPU (`/proc/<pid>/stat`, user + system) over the seconds of writing is a percentage of one core.
The refresh comparison below writes the same way.

MQTT (`taosprsp.bench.mqtt`), when a broker can be had (mosquitto started for the run, else the one at
`mqtt.url`; else skipped, saying why): the rate at which 1 and 2 `ingest mqtt` processes (2: a `$share/`
subscription) drain a backlog of one-row JSON messages into the store, with the CPU per message of the
ingesters and of the broker; and the latency from publishing a message at 1,000 messages/s to a Perspective
client seeing its row, through an ingester and `serve` in processes of their own.

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
reads delivered at the highest latency rate. On TDengine, `ingest-<B>` compares the ingest median with the
bare loop's (`bare-<B>`): 1.0 means taosprsp adds nothing to the client's own cost.

JSON (`taosprsp bench --json PATH`, or the same document on stdout with `taosprsp --json bench`)::

    {
      "schema": "taosprsp.bench/1",
      "started_at": "2025-01-01T12:00:00+00:00", "seconds": 41.2, "quick": false,
      "store": {"kind": "embedded" | "tdengine", "target": str, "version": str},
      "dataset": "meters", "tables": 10,
      "results": [                                   # pipeline order: generate, ingest-* (bare-*), read, feed
        {"stage": "generate" | "ingest" | "bare" | "read" | "feed", "name": "ingest-1000",   # for --fail-under
         "batch": 1000 | null,                       # rows per call (null for read: one call)
         "rows": 200000,                             # rows per repeat
         "repeats": 3, "rows_per_second": {"median": float, "min": float, "max": float},
         "baseline_rows_per_second": float | null, "ratio": float | null}
      ],
      "latency": [
        {"feed": "poll" | "tmq", "client": "bare" | "dashboard",
         "wake": "inotify" | "stat" | "off",          # the poll feed woken by commits, or polling only
         "rate": 1000, "seconds": 5.0, "written": int, "rows": int (matched),
         "unseen": int, "p50_ms": float, "p95_ms": float, "p99_ms": float, "max_ms": float,
         "serve_cpu_percent": float | null,           # of one core; null where /proc is missing
         "window_rows": int}                          # rows in the served window when writing began
      ],
      "mqtt": {"skipped": str} | {
        "broker": str, "flush_interval_ms": float,
        "ingest": [{"ingesters": 1 | 2, "published": int, "ingested": int, "seconds": float,
                    "messages_per_second": float, "ingester_cpu_us_per_message": float | null,
                    "broker_cpu_us_per_message": float | null}],     # null: no /proc, or not our broker
        "latency": {same keys as a "latency" entry, "feed": "mqtt"}
      } | null,
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
      "ratios": {"generate": float, "feed": float, "read": float, "refresh": float,   # null when not measured
                 "ingest-<B>": float},                # TDengine only: ingest / bare stmt2 loop
      "versions": {"taosprsp", "python", "numpy", "pyarrow", "perspective", "taosws", "tornado",
                   "tdengine_server": str | null},
      "machine": {"cpu_count": int, "platform": str, "machine": str, "memory_bytes": int | null},
      "config": {...}                                # taosprsp.config.as_dict of the config that ran, masked
    }

Modules: `stages` (the throughput stages), `latency`, `mqtt`, `baseline` (the seed demos' way, and the refresh
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
from taosprsp.bench.run import quick_config, run_bench, served_dataset
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
    "served_dataset",
    "stage_names",
    "versions",
    "write_json",
    "write_plot",
]
