"""A large audit log (default 100,000 requests, 1,000,000 events) and the queries people run on it.

The schema comes from `bot.store.Store` itself (its migrations), the rows are bulk-inserted with
sqlite3 directly: going through the store one transaction per row would take far longer than
the benchmark is allowed. The data looks like years of use: mostly finished requests, a few
waiting for approval, a few very active requesters and a long tail.
"""

from __future__ import annotations

import json
import random
import sqlite3
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from bot.clock import iso
from bot.domain import State
from bot.dws import RegionalDws
from bot.lifecycle import CopyService
from bot.policy import Policy, Roles
from bot.roles import RoleResolver
from bot.slack import answers
from bot.slack.services import Services
from bot.store import Store
from tests.harness import subprocess_env

SEED = 7
USERS = 300
PENDING = 120  # the newest requests still wait for a decision
# How finished requests ended, roughly.
OUTCOMES = (
    (State.SUCCEEDED, 0.86),
    (State.FAILED, 0.04),
    (State.DENIED, 0.05),
    (State.EXPIRED, 0.04),
    (State.CANCELLED, 0.01),
)
EVENT_KINDS = ("requested", "announced", "approved", "copy_started", "copied", "status")
BUSIEST = "U0000000"  # the most active requester, also an approver: the costliest /snapcopy list


@dataclass(frozen=True)
class Timing:
    """Milliseconds; `runs` timed runs after one untimed warm-up."""

    median: float
    max: float
    runs: int


def build(path: Path, requests: int, events: int) -> None:
    Store(path).close()  # the bot's own schema, at its current migration
    conn = _bulk_connection(path)
    try:
        conn.execute("BEGIN")
        conn.executemany(_REQUEST_INSERT, _request_rows(requests))
        conn.executemany(_EVENT_INSERT, _event_rows(requests, events))
        conn.execute("COMMIT")
        conn.execute("ANALYZE")
    finally:
        conn.close()


def _bulk_connection(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")  # a throw-away file: durability buys nothing
    return conn


_REQUEST_INSERT = (
    "INSERT INTO requests (id, state, source_snapshot_id, backup_name, description, requested_by,"
    " approved_by, denied_by, channel_id, thread_ts, message_ts, new_snapshot_id,"
    " snapshot_status, error, dws_request_ids, created_at, updated_at, expires_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_EVENT_INSERT = "INSERT INTO events (request_id, kind, actor, at, details) VALUES (?, ?, ?, ?, ?)"
_START = datetime(2024, 1, 1, tzinfo=UTC)


def _when(request_id: int, total: int) -> datetime:
    # Spread over two years, oldest first, like ids.
    return _START + timedelta(days=730 * request_id / total)


def _request_rows(total: int) -> Iterator[tuple[Any, ...]]:
    rng = random.Random(SEED)
    users = [f"U{n:07d}" for n in range(USERS)]
    weights = [1 / (rank + 1) for rank in range(USERS)]  # a few people ask for most copies
    states = [state for state, _ in OUTCOMES]
    shares = [share for _, share in OUTCOMES]
    for request_id in range(1, total + 1):
        created = _when(request_id, total)
        pending = request_id > total - PENDING
        state = State.PENDING_APPROVAL if pending else rng.choices(states, shares)[0]
        done = state == State.SUCCEEDED
        ts = f"{int(created.timestamp())}.{request_id % 1_000_000:06d}"
        yield (
            request_id,
            state.value,
            str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            f"copy-{request_id:07d}",
            f"before the restore of incident INC-{request_id}",
            rng.choices(users, weights)[0],
            "U9APPROVE" if done or state == State.FAILED else None,
            "U9APPROVE" if state == State.DENIED else None,
            "C0INCIDENT",
            ts,
            ts,
            str(uuid.UUID(int=rng.getrandbits(128), version=4)) if done else None,
            "AVAILABLE" if done else None,
            "DWS.0011: another operation is running" if state == State.FAILED else None,
            json.dumps([f"{rng.getrandbits(128):032x}"]) if done else "[]",
            iso(created),
            iso(created + timedelta(minutes=9)),
            iso(created + timedelta(hours=4)) if pending else None,
        )


def _event_rows(requests: int, total: int) -> Iterator[tuple[Any, ...]]:
    per_request = total // requests
    extra = total - per_request * requests
    for request_id in range(1, requests + 1):
        moment = _when(request_id, requests)
        count = per_request + (1 if request_id <= extra else 0)
        for n in range(count):
            kind = EVENT_KINDS[n] if n < len(EVENT_KINDS) else "status"
            details = json.dumps({"status": "CREATING" if n < count - 1 else "AVAILABLE"})
            yield (request_id, kind, "U9APPROVE", iso(moment + timedelta(seconds=n)), details)


# --- timing --------------------------------------------------------------------------------------


def time_command(args: list[str], env: Mapping[str, str | None], cwd: Path, runs: int) -> Timing:
    """Wall time of a whole command (interpreter start, imports, query, output)."""
    command = [sys.executable, *args]
    samples = []
    for attempt in range(runs + 1):
        started = time.perf_counter()
        subprocess.run(
            command,
            cwd=cwd,
            env=subprocess_env(env),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            check=True,
        )
        if attempt:  # the first run only warms the page cache
            samples.append((time.perf_counter() - started) * 1000)
    return Timing(statistics.median(samples), max(samples), runs)


def time_call(call: Callable[[], object], runs: int) -> Timing:
    call()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return Timing(statistics.median(samples), max(samples), runs)


def list_services(store: Store) -> Services:
    """Just what `answers.list_text` reads: the store, the roles and the approval policy."""
    policy = Policy(roles=Roles(requester=(BUSIEST,), approver=(BUSIEST,)))
    roles = RoleResolver(policy, lambda group: frozenset())
    # The listing never asks DWS anything.
    copies = CopyService(store, cast(RegionalDws, None), policy, roles)
    return cast(Services, SimpleNamespace(store=store, roles=roles, copies=copies))


def time_list_queries(path: Path, runs: int) -> dict[str, Timing]:
    store = Store(path)
    services = list_services(store)
    try:
        return {
            "mine": time_call(lambda: store.find(requested_by=BUSIEST, limit=10), runs),
            "waiting": time_call(
                lambda: store.find(states=[State.PENDING_APPROVAL], limit=50), runs
            ),
            "list_text": time_call(lambda: answers.list_text(services, BUSIEST), runs),
        }
    finally:
        store.close()
