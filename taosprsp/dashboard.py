"""The dashboard's layout document: what `dashboard.json` holds, derived from the dataset and the config.

The page (`viewer/index.html`) fetches `dashboard.json` next to itself: the WebSocket to read from and
one `<perspective-viewer>` restore config per panel. The layout is derived from the dataset unless
`[[viewer.panels]]` or `viewer.layout` (a JSON file with the same shape) gives one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from taosprsp.config import Config
from taosprsp.datasets import SUBTABLE_COLUMN, get_dataset
from taosprsp.errors import ConfigError


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


def default_panels(config: Config) -> list[dict[str, Any]]:
    """The seeds' grid grouped by the dataset's group tag, a line chart over time, and the latest rows."""
    dataset = get_dataset(config.dataset.name)
    theme = config.viewer.theme
    window, latest = config.perspective_table, config.latest_table
    first = dataset.headline[0]
    timestamp = dataset.timestamp.name
    return [
        {
            "table": window,
            "title": f"Mean {' and '.join(dataset.headline)} by {dataset.group_tag}",
            "config": _chart_config(
                theme,
                "Datagrid",
                group_by=[dataset.group_tag],
                columns=list(dataset.headline),
                aggregates={name: "avg" for name in dataset.headline},
            ),
        },
        {
            "table": window,
            "title": f"{first.capitalize()} over time by {dataset.group_tag} (1 s mean)",
            "config": _chart_config(
                theme,
                "Y Line",
                expressions={f"{timestamp}_1s": f"bucket(\"{timestamp}\", '1s')"},
                group_by=[f"{timestamp}_1s"],
                split_by=[dataset.group_tag],
                columns=[first],
                aggregates={first: "avg"},
                group_rollup_mode="flat",
            ),
        },
        {
            "table": latest,
            "title": f"Latest row per {'meter' if dataset.name == 'meters' else 'subtable'}",
            "colspan": 2,
            "config": _chart_config(
                theme,
                "Datagrid",
                columns=[SUBTABLE_COLUMN, *(f.name for f in dataset.fields)],
                sort=[[SUBTABLE_COLUMN, "asc"]],
            ),
        },
    ]


def _layout_file(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"viewer.layout: {path} does not exist") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"viewer.layout: {path} is not valid JSON: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("panels"), list):
        raise ConfigError(f'viewer.layout: {path} must be an object with a list of "panels"')
    return document


def dashboard_document(config: Config, websocket_url: str | None = None) -> dict[str, Any]:
    """What `dashboard.json` holds: `websocket` (None: same origin), title, columns, panels.

    Panels come from `[[viewer.panels]]` in the config, else from the JSON file `viewer.layout`, else
    from the dataset's defaults.
    """
    if config.viewer.panels:
        document = {"title": config.viewer.title, "columns": 2, "panels": config.viewer.panels}
    elif config.viewer.layout:
        document = _layout_file(Path(config.viewer.layout))
    else:
        document = {"title": config.viewer.title, "columns": 2, "panels": default_panels(config)}
    return {**document, "websocket": websocket_url}
