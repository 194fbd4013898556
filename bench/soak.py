"""Does the bot stay flat? Thousands of complete flows, then the worker's memory and open files.

Before and after `count` flows (modal, approve, copy, reply, followed to AVAILABLE), once the
bot owes nothing more: resident memory (VmRSS), open file descriptors, and how many of them
are the SQLite database (its WAL and shared-memory files included). Connections come from a
bounded pool, so the last figure must not grow with the number of flows.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.flows import FlowDriver, FlowFailed
from bench.servers import vm_rss_mb
from bench.standins import forget_copies
from bot.dws.standin import DwsStandIn


@dataclass(frozen=True)
class Resources:
    rss_mb: float
    open_files: int
    database_files: int


@dataclass(frozen=True)
class Soak:
    flows: int
    failures: int
    seconds: float
    before: Resources
    after: Resources


def resources(pid: int, db_path: str) -> Resources:
    fd_dir = Path(f"/proc/{pid}/fd")
    targets = []
    for fd in os.listdir(fd_dir):
        try:
            targets.append(os.readlink(fd_dir / fd))
        except OSError:
            continue  # closed while we looked
    database = sum(1 for target in targets if target.startswith(str(db_path)))
    return Resources(vm_rss_mb(pid), len(targets), database)


def soak(
    driver: FlowDriver,
    dws: DwsStandIn,
    worker_pid: int,
    db_path: str,
    *,
    count: int,
    concurrency: int = 8,
    batch: int = 500,
) -> Soak:
    """`count` flows, `concurrency` at a time, in batches after each of which the bot is let go
    idle and the copies are dropped from DWS (so the catalogue every name check lists stays
    small: see forget_copies)."""
    forget_copies(dws, db_path)
    before = resources(worker_pid, db_path)
    names = itertools.count(1)
    done = failed = 0
    lock = threading.Lock()
    started = time.monotonic()
    while done + failed < count:

        def run(left: itertools.count[int]) -> None:
            nonlocal done, failed
            try:
                while True:
                    with lock:
                        if next(left) <= 0:
                            return
                        number = next(names)
                    try:
                        driver.full_flow(f"bench-soak-{number}", number)
                        with lock:
                            done += 1
                    except (FlowFailed, TimeoutError, httpx.HTTPError):
                        with lock:
                            failed += 1
            finally:
                driver.close_thread()

        left = itertools.count(min(batch, count - done - failed), -1)
        threads = [threading.Thread(target=run, args=(left,)) for _ in range(concurrency)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        forget_copies(dws, db_path)
    seconds = time.monotonic() - started
    return Soak(done, failed, seconds, before, resources(worker_pid, db_path))
