"""What the running bot tells operators: Prometheus metrics (`GET /metrics`) and the last call
to Slack and to DWS (`/healthz`).

Counters and the copy-duration histogram live in this process's own registry (one per Runtime,
so tests can run many); counts that the database knows (requests by state, work owed) are read
from it at each scrape, so every process reports the same truth.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from bot.clock import age_seconds
from bot.domain import State
from bot.store import Store

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class System(StrEnum):
    """The systems snapcopy calls, as `/metrics` and `/healthz` name them."""

    SLACK = "slack"
    DWS = "dws"


@dataclass(frozen=True)
class LastCall:
    method: str
    outcome: str
    ok: bool
    at: float  # time.monotonic()

    def as_health(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "last": f"{self.method} {self.outcome}",
            "age_seconds": round(time.monotonic() - self.at, 1),
        }


class Metrics:
    def __init__(self, store: Store) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.calls = Counter(
            "snapcopy_calls",
            "Calls to Slack's Web API and to DWS, by outcome.",
            ("system", "method", "outcome"),
            registry=self.registry,
        )
        self.rejected = Counter(
            "snapcopy_rejected_requests",
            "Requests to the events URL refused before Bolt saw them, by reason (bad_signature, "
            "stale_timestamp, missing_headers, bad_timestamp).",
            ("reason",),
            registry=self.registry,
        )
        self.copy_seconds = Histogram(
            "snapcopy_copy_duration_seconds",
            "From the last approval to the copy being AVAILABLE.",
            buckets=(30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, float("inf")),
            registry=self.registry,
        )
        self.group_lookups = Counter(
            "snapcopy_group_lookups",
            "Lookups of a Slack user group's members (usergroups.users.list), by why (check: a "
            "role check waited; prefetch: ahead of a click; refresh: before expiry or after an "
            "event) and outcome (ok, failed).",
            ("why", "outcome"),
            registry=self.registry,
        )
        self.group_answers = Counter(
            "snapcopy_group_answers",
            "What role checks were told about a user group, by source: cache (known from an "
            "earlier check), prefetch (known ahead of the click), lookup (waited for Slack), "
            "stale (Slack slow or down: a recent membership), none (unknown: refused).",
            ("source",),
            registry=self.registry,
        )
        # Which engine keeps the audit log: an info-style gauge, 1 for the one in use.
        self.database = Gauge(
            "snapcopy_database_info",
            "The database engine snapcopy runs on (sqlite, postgresql).",
            ("engine",),
            registry=self.registry,
        )
        self.database.labels(store.engine).set(1)
        self.registry.register(_FromTheDatabase(store))
        self._last: dict[System, LastCall] = {}
        self._lock = threading.Lock()

    def call(self, system: System, method: str, outcome: str, ok: bool) -> None:
        """One call to `system` and how it ended ("ok", or an error code)."""
        self.calls.labels(system, method, outcome).inc()
        with self._lock:
            self._last[system] = LastCall(method, outcome, ok, time.monotonic())

    def group_lookup(self, why: str, outcome: str) -> None:
        self.group_lookups.labels(why, outcome).inc()

    def group_answer(self, source: str) -> None:
        self.group_answers.labels(source).inc()

    def last(self, system: System) -> LastCall | None:
        with self._lock:
            return self._last.get(system)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _FromTheDatabase(Collector):
    """Requests by state and the work still owed, read at each scrape."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[GaugeMetricFamily]:
        by_state = GaugeMetricFamily(
            "snapcopy_requests", "Copy requests in the audit log, by state.", labels=["state"]
        )
        counts = self.store.count_by_state()
        for state in State:
            by_state.add_metric([state.value], counts.get(state.value, 0))
        yield by_state
        owed = GaugeMetricFamily(
            "snapcopy_work_pending",
            "Work still owed: DWS jobs (queue=dws) and Slack messages (queue=slack).",
            labels=["queue"],
        )
        oldest = GaugeMetricFamily(
            "snapcopy_work_oldest_seconds",
            "Age of the oldest work still owed, by queue (0 when none).",
            labels=["queue"],
        )
        for queue, (pending, since) in self.store.owed().items():
            owed.add_metric([queue], pending)
            oldest.add_metric([queue], age_seconds(since) if since else 0.0)
        yield owed
        yield oldest
