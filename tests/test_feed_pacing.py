"""How the feed paces its applies: a trickle of rows is gathered, a flood is applied at once, none is lost.

The feed runs on real Perspective tables; batches come from the generator as a subscription would push them.
"""

from __future__ import annotations

import threading

import numpy as np
import pyarrow as pa
import pytest

from taosprsp.batching import UpdateBatcher
from taosprsp.datasets import METERS
from taosprsp.feed import Feed, Gathered, Pacing
from taosprsp.generate import Generator, spread
from taosprsp.serve import make_tables

START_MS = 1_700_000_000_000


def batches(count: int, rows: int) -> list[pa.Table]:
    """`count` batches of `rows` rows over 10 subtables, a second apart, a millisecond apart within a subtable."""
    generator = Generator(METERS, 10, "ms")
    counts = spread(rows, 10)
    within = np.concatenate([np.arange(c) for c in counts])
    return [generator.batch(counts, START_MS + number * 1000 + within) for number in range(count)]


def fed(pacing: Pacing, pushed: list[pa.Table]) -> Feed:
    batcher = UpdateBatcher()
    window, latest = make_tables(batcher.new_local_client(), METERS)
    feed = Feed(METERS, "ms", window, latest, 10_000, batch=batcher.batch)
    feed.follow(iter(pushed), threading.Event(), pacing)
    return feed


def test_rows_below_gather_rows_wait_and_none_is_lost() -> None:
    pushed = batches(5, 10)
    feed = fed(Pacing(gather_rows=30, max_delay=60.0), pushed)
    assert feed.stats.updates == 2  # 30 rows at the third batch, the last 20 when the subscription ended
    assert feed.stats.rows_fed == feed.window.size() == 50


def test_rows_at_gather_rows_are_applied_at_once() -> None:
    feed = fed(Pacing(gather_rows=10, max_delay=60.0), batches(5, 10))
    assert feed.stats.updates == 5 and feed.window.size() == 50


@pytest.mark.parametrize(("waited", "due"), [(0.01, False), (0.04, True)])
def test_gathered_rows_fall_due_after_max_delay(waited: float, due: bool) -> None:
    gathered = Gathered(Pacing(interval=0.1, gather_rows=100, max_delay=0.04))
    gathered.add(batches(1, 10)[0], now=5.0)
    gathered.add(batches(1, 10)[0], now=5.005)  # a later batch does not restart the clock
    assert gathered.due(5.0 + waited) is due
    assert gathered.wait_at_most(5.0 + waited, 0.1) == pytest.approx(max(0.0, 0.04 - waited))


def test_nothing_gathered_waits_the_whole_interval_and_is_never_due() -> None:
    gathered = Gathered(Pacing(interval=0.1, gather_rows=1, max_delay=0.0))
    gathered.add(METERS.arrow_schema().empty_table(), now=1.0)
    assert not gathered.due(99.0)
    assert gathered.wait_at_most(1.0, 0.1) == 0.1


def test_one_batch_of_updates_is_processed_once_so_each_view_is_notified_once() -> None:
    batcher = UpdateBatcher()
    client = batcher.new_local_client()
    tables = [client.table({"k": "integer", "x": "float"}, index="k") for _ in range(2)]
    notified: list[int] = []
    views = [table.view() for table in tables]
    for number, view in enumerate(views):
        view.on_update(lambda *_, number=number: notified.append(number))
    with batcher.batch():
        for step in range(3):
            for table in tables:
                table.update({"k": [step], "x": [1.0]})
        assert notified == []  # held back until the batch is whole
    assert sorted(notified) == [0, 1]
    tables[0].update({"k": [9], "x": [2.0]})  # outside a batch: processed at once
    assert sorted(notified) == [0, 0, 1] and views[0].num_rows() == 4
