"""What taosprsp's test runs, bench runs and serves left on a TDengine server, found and removed (`db purge`).

Tests and `bench` work in throwaway databases (`taosprsp_test_<random>`, `taosprsp_bench_<random>`) that
they drop when done, failed or not; a run killed outright leaves its database behind, with its topic and
consumer groups. A serve drops its consumer group when it stops; one killed outright leaves the group on
its topic until the next serve of that table claims it (and other taosprsp consumers likewise). A database
takes vnodes (a small server has few), a topic counts against the server's topic limit and a group against
the topic's 100 groups, so leftovers are worth removing: these are they, and nothing else (a group with a
subscribed consumer is never touched).
"""

from __future__ import annotations

from dataclasses import dataclass

from taosprsp.config import GROUP_PREFIX
from taosprsp.stores.tdengine import LIVE_CONSUMER_STATUSES, TDengineStore

THROWAWAY_DATABASE_PREFIXES = ("taosprsp_test_", "taosprsp_bench_")
"""How the databases of the test suite and of `bench` are named: nothing else is named so."""


@dataclass(frozen=True)
class Leftovers:
    """Throwaway databases, the topics on them, and consumer groups: those on these topics, and idle taosprsp
    groups (named `taosprsp-...`: a serve's, a forwarder's; no consumer subscribed) on any other topic."""

    databases: tuple[str, ...] = ()
    topics: tuple[str, ...] = ()
    groups: tuple[tuple[str, str], ...] = ()
    """(topic, group) pairs."""

    def __bool__(self) -> bool:
        return bool(self.databases or self.topics or self.groups)

    def as_dict(self) -> dict[str, list]:
        return {
            "databases": list(self.databases),
            "topics": list(self.topics),
            "groups": [{"topic": topic, "group": group} for topic, group in self.groups],
        }

    def lines(self) -> list[str]:
        """One line per thing left over, for people."""
        return [
            *(f"database {name}" for name in self.databases),
            *(f"topic {name}" for name in self.topics),
            *(f"consumer group {group} on topic {topic}" for topic, group in self.groups),
        ]


def find_leftovers(store: TDengineStore, idle_groups: bool = True) -> Leftovers:
    """What is left over on the server `store` is connected to; `idle_groups=False` leaves out the groups on
    topics outside the throwaway databases (the test suite's check: a user's serve is none of its business)."""
    databases = tuple(name for name in store.databases() if name.startswith(THROWAWAY_DATABASE_PREFIXES))
    topics = tuple(topic for name in databases for topic in store.topics(name))
    subscriptions = store.subscriptions()
    groups = [(topic, group) for topic, group in subscriptions if topic in topics]
    if idle_groups:
        groups += [
            (topic, group)
            for topic, group in subscriptions
            if topic not in topics and group.startswith(GROUP_PREFIX) and not _in_use(store, group)
        ]
    return Leftovers(databases, topics, tuple(groups))


def _in_use(store: TDengineStore, group: str) -> bool:
    return any(status in LIVE_CONSUMER_STATUSES for _, status in store.consumers(group))


def remove_leftovers(store: TDengineStore, found: Leftovers) -> None:
    """Drop what `find_leftovers` found: lone serve groups first, then each database with its topics and
    their groups."""
    for topic, group in found.groups:
        if topic not in found.topics:
            store.drop_consumer_group(group, topic, force=True)
    for name in found.databases:
        store.drop_database(name)


def purge(store: TDengineStore, remove: bool) -> Leftovers:
    """What is left over on the server; with `remove`, dropped too."""
    found = find_leftovers(store)
    if remove:
        remove_leftovers(store, found)
    return found
