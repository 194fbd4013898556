"""The project's automated snapshots, for the modal's picker: listed once, cached briefly.

The picker asks on every keystroke; DWS is asked at most once per `ttl` and the filtering is done
here. A slow DWS never holds the picker past `budget`: it answers with what it has (or nothing).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from bot.dws.client import DwsClient
from bot.dws.errors import DwsError
from bot.dws.models import Snapshot

log = logging.getLogger(__name__)


class SnapshotCatalog:
    def __init__(
        self,
        dws: DwsClient,
        *,
        ttl: float = 60.0,
        budget: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._dws = dws
        self._ttl = ttl
        self._budget = budget
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: tuple[float, list[Snapshot]] | None = None
        self._loading: Future[list[Snapshot]] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="catalog")

    def search(self, query: str, limit: int = 100) -> list[Snapshot]:
        """Automated snapshots whose name, cluster or id contains `query`, newest first."""
        needle = query.strip().lower()
        found = [
            snapshot
            for snapshot in self._automated()
            if not needle
            or needle in snapshot.name.lower()
            or needle in (snapshot.cluster_name or "").lower()
            or needle in (snapshot.cluster_id or "").lower()
            or needle in snapshot.id
        ]
        found.sort(key=lambda snapshot: snapshot.started or "", reverse=True)
        return found[:limit]

    def _automated(self) -> list[Snapshot]:
        with self._lock:
            if self._cached and self._clock() - self._cached[0] < self._ttl:
                return self._cached[1]
            if self._loading is None:
                self._loading = self._executor.submit(self._load)
            loading = self._loading
        try:
            return loading.result(timeout=self._budget)
        except FutureTimeout:
            log.info("snapshot list is slow; answering with the previous one")
        except DwsError as error:
            log.warning("snapshot list failed: %s", error)
        with self._lock:
            return self._cached[1] if self._cached else []

    def _load(self) -> list[Snapshot]:
        try:
            snapshots = [s for s in self._dws.list_snapshots() if s.is_automated]
            with self._lock:
                self._cached = (self._clock(), snapshots)
            return snapshots
        finally:
            with self._lock:
                self._loading = None

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
