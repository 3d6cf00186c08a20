"""`taosprsp bench`: options in, one call of the library's benchmark, a report (and files) out."""

from __future__ import annotations

from pathlib import Path

import typer

from taosprsp.cli.common import State, database_option, out, stable_option
from taosprsp.errors import ExitCode, TaosprspError


def bench(
    ctx: typer.Context,
    quick: bool = typer.Option(
        False,
        "--quick",
        help="Under a minute, for CI: fewer rows, one repeat, 2 s of latency at 1,000 rows/s.",
    ),
    json_path: Path | None = typer.Option(
        None,
        "--json",
        metavar="PATH",
        dir_okay=False,
        help="Write the results as JSON (schema taosprsp.bench/1, see `taosprsp.bench`).",
    ),
    plot: Path | None = typer.Option(
        None,
        "--plot",
        metavar="PATH.png",
        dir_okay=False,
        help="Draw throughput per stage and the latency CDFs to a PNG.",
    ),
    fail_under: list[str] = typer.Option(
        [],
        "--fail-under",
        metavar="STAGE=ROWS_PER_S",
        help="Exit 7 when STAGE's median is under ROWS_PER_S (repeatable); "
        "stages: generate, ingest-<batch>, bare-<batch> (TDengine), read, feed.",
    ),
    repeats: int | None = typer.Option(None, "--repeats", min=1, help="Repeats per stage. \\[default: bench.repeats]"),
    rows: int | None = typer.Option(None, "--rows", min=1, help="Rows per measurement. \\[default: bench.rows]"),
    database: str | None = database_option(),
    stable: str | None = stable_option(),
) -> None:
    """Measure rows/s of every stage (generate, ingest, read, feed) and end-to-end latency, against the seeds' way.

    Runs on a fresh temporary store of the configured kind (user data is untouched) and removes it afterwards.
    `taosprsp --json bench` prints the JSON document on stdout instead of the tables; `bench --json PATH`
    (the option after the command) writes it to PATH.

    Examples:

        taosprsp bench --store embedded --json bench.json --plot bench.png
        taosprsp bench --quick --fail-under ingest-1000=100000
    """
    from taosprsp import bench as benchmark
    from taosprsp.stores import resolve_kind

    state: State = ctx.obj
    config = state.config(
        bench={"repeats": repeats, "rows": rows}, dataset={"stable": stable}, database={"name": database}
    )
    kind = resolve_kind(config)
    thresholds = benchmark.parse_thresholds(fail_under, config, kind)
    for path, option in ((json_path, "--json"), (plot, "--plot")):
        if path is not None:
            benchmark.check_output_path(path, option)
    dataset = benchmark.served_dataset(config, kind)
    report = benchmark.run_bench(config, kind, quick=quick, show_progress=state.show_progress, dataset=dataset)
    if json_path is not None:
        benchmark.write_json(report, json_path)
    if plot is not None:
        benchmark.write_plot(report, plot)
    state.emit(report.as_dict(), lambda: benchmark.render(report, out))
    if report.leftover:
        raise TaosprspError(report.leftover)
    failures = benchmark.below_thresholds(report, thresholds)
    if failures:
        raise TaosprspError("; ".join(failures), ExitCode.BELOW_THRESHOLD)
