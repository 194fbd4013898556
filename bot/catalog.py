"""The automated snapshots of every configured region, for the modal's picker: listed once,
cached briefly.

The picker asks on every keystroke; DWS is asked at most once per `ttl` and the filtering is done
here. A slow DWS never holds the picker past `budget`: it answers with what it has (or nothing).
A region that does not answer is named (`unavailable`), and the others are still offered.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

from bot.dws import DwsError, Listed, RegionalDws

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Catalogue:
    listed: list[Listed]
    unavailable: list[str]


class SnapshotCatalog:
    def __init__(
        self,
        dws: RegionalDws,
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
        self._cached: tuple[float, _Catalogue] | None = None
        self._loading: Future[_Catalogue] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="catalog")

    @property
    def regions(self) -> list[str]:
        return self._dws.regions

    def search(self, query: str, limit: int = 100) -> tuple[list[Listed], list[str]]:
        """Automated snapshots whose name, cluster, region or id contains `query`, newest
        first; and the regions that did not answer."""
        needle = query.strip().lower()
        catalogue = self._automated()
        found = [
            listed
            for listed in catalogue.listed
            if not needle
            or needle in listed.snapshot.name.lower()
            or needle in (listed.snapshot.cluster_name or "").lower()
            or needle in (listed.snapshot.cluster_id or "").lower()
            or needle in listed.region
            or needle in listed.snapshot.id
        ]
        found.sort(key=lambda listed: listed.snapshot.started or "", reverse=True)
        return found[:limit], catalogue.unavailable

    def _automated(self) -> _Catalogue:
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
            return self._cached[1] if self._cached else _Catalogue([], self._dws.regions)

    def _load(self) -> _Catalogue:
        try:
            # Within the picker's budget: one slow region must not empty the picker.
            listed, unavailable = self._dws.list_all(wait=self._budget * 0.8)
            if unavailable and len(unavailable) == len(self._dws.regions):
                raise DwsError(f"no region answered: {', '.join(unavailable) or 'DWS'}")
            catalogue = _Catalogue([x for x in listed if x.snapshot.is_automated], unavailable)
            with self._lock:
                self._cached = (self._clock(), catalogue)
            return catalogue
        finally:
            with self._lock:
                self._loading = None

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
