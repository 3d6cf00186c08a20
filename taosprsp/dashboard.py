"""The dashboard's layout document: what `dashboard.json` holds, derived from the dataset and the config.

The page (`viewer/index.html`) fetches `dashboard.json` next to itself: the WebSocket to read from and
one `<perspective-viewer>` restore config per panel. The layout is derived from the dataset unless
`[[viewer.panels]]` or `viewer.layout` (a JSON file with the same shape) gives one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from taosprsp.config import Config, format_duration
from taosprsp.datasets import SUBTABLE_COLUMN, Dataset
from taosprsp.derived import DerivedSpec, derived_specs
from taosprsp.errors import ConfigError
from taosprsp.ops.live import FREQUENCY_COLUMN, MAGNITUDE_COLUMN


def _chart_config(theme: str, plugin: str, **view: Any) -> dict[str, Any]:
    base = {
        "plugin": plugin,
        "settings": False,
        "theme": theme,
        "group_by": [],
        "split_by": [],
        "sort": [],
        "filter": [],
    }
    return {**base, **view}


def default_panels(
    config: Config, dataset: Dataset, specs: tuple[DerivedSpec, ...] | None = None
) -> list[dict[str, Any]]:
    """The seeds' grid of the headline columns' means grouped by the dataset's group tag, the first one over time
    by that tag, and the latest row per subtable; a dataset with no numeric column gets the latest rows only.

    The grid and the chart view the derived tables `serve` hosts (`specs`; by default `derived_specs` of the
    config), a few rows each, not the rolling window: a grouped view over the window's 100 k rows makes every
    update of it cost 100-700 ms.
    """
    theme = config.viewer.theme
    latest = config.latest_table
    group, headline = dataset.group_tag, list(dataset.headline)
    timestamp = dataset.timestamp.name
    latest_rows = {
        "table": latest,
        "title": "Latest row per subtable",
        "colspan": 2,
        "config": _chart_config(
            theme,
            "Datagrid",
            columns=[SUBTABLE_COLUMN, *(f.name for f in dataset.fields)],
            sort=[[SUBTABLE_COLUMN, "asc"]],
        ),
    }
    declared = derived_specs(config, dataset) if specs is None else specs
    kinds = {spec.kind: spec for spec in declared}
    if not headline or "pivot" not in kinds:
        return [latest_rows]
    by_group, by_bucket = kinds["groups"], kinds["pivot"]
    charted = by_bucket.columns[0]
    series = by_bucket.series_columns(timestamp)
    horizon = format_duration(by_bucket.horizon_seconds or config.server.horizon)
    return [
        {
            "table": by_group.name,
            "title": f"Mean {' and '.join(headline)} by {group} (last {horizon})",
            "config": _chart_config(
                theme,
                "Datagrid",
                columns=[group, *(f"{name}_mean" for name in headline)],
                sort=[[group, "asc"]],
            ),
        },
        {
            "table": by_bucket.name,
            "title": f"{charted[:1].upper()}{charted[1:]} over time by {group} "
            f"({format_duration(by_bucket.bucket_seconds)} mean, last {horizon})",
            "config": _chart_config(
                theme,
                "Y Line",
                group_by=[timestamp],
                columns=series,
                # one row per bucket: the average of one value is that value
                aggregates=dict.fromkeys(series, "avg"),
                group_rollup_mode="flat",
            ),
        },
        *operation_panels(theme, dataset, declared),
        latest_rows,
    ]


def operation_panels(theme: str, dataset: Dataset, specs: tuple[DerivedSpec, ...]) -> list[dict[str, Any]]:
    """A chart per declared operation (`taosprsp.ops`) on its live table, for the dataset's first subtable: a filter
    or a conversion with its input on one chart, a resample or a shift alone, a spectrum as magnitude over
    frequency."""
    subtable = dataset.subtable_names(1)[0]
    only = [[SUBTABLE_COLUMN, "==", subtable]]
    panels = []
    for spec in specs:
        op = spec.operation
        if op is None:
            continue
        if op.is_spectrum:
            title = f"Spectrum of {op.input} in {subtable} ({op.describe()})"
            view = _chart_config(
                theme,
                "X/Y Line",
                columns=[FREQUENCY_COLUMN, MAGNITUDE_COLUMN],
                sort=[[FREQUENCY_COLUMN, "asc"]],
                filter=only,
            )
        else:
            columns = [op.input, op.name] if op.keeps_time else [op.name]
            title = f"{' and '.join(columns)} in {subtable} ({op.describe()})"
            view = _chart_config(
                theme,
                "Y Line",
                group_by=[dataset.timestamp.name],
                columns=columns,
                # one row per sample: the average of one value is that value
                aggregates=dict.fromkeys(columns, "avg"),
                filter=only,
                group_rollup_mode="flat",
            )
        panels.append({"table": spec.name, "title": title, "config": view})
    return panels


def _layout_file(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"viewer.layout: {path} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"viewer.layout: {path} is a directory; name a JSON file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"viewer.layout: {path} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"viewer.layout: {path} cannot be read: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"viewer.layout: {path} is not valid JSON: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("panels"), list):
        raise ConfigError(f'viewer.layout: {path} must be an object with a list of "panels"')
    return document


def dashboard_document(
    config: Config,
    websocket_url: str | None = None,
    dataset: Dataset | None = None,
    specs: tuple[DerivedSpec, ...] | None = None,
) -> dict[str, Any]:
    """What `dashboard.json` holds: `websocket` (None: same origin), title, columns, panels.

    Panels come from `[[viewer.panels]]` in the config, else from the JSON file `viewer.layout`, else
    from the defaults of `dataset` (the one served; without it, the configured declaration) over the derived
    tables `specs` (those served; without them, `derived_specs` of the config).
    """
    if config.viewer.panels:
        document = {"title": config.viewer.title, "columns": 2, "panels": config.viewer.panels}
    elif config.viewer.layout:
        document = _layout_file(Path(config.viewer.layout))
    else:
        panels = default_panels(config, dataset or config.declared_dataset, specs)
        document = {"title": config.viewer.title, "columns": 2, "panels": panels}
    return {**document, "websocket": websocket_url}
