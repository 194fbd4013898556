"""DWS across regions: one client per configured region, and the questions that span them.

A team with clusters in two regions runs one bot: a pasted snapshot ID is looked for in every
region (the first that has it wins), the picker lists every region's snapshots, and a request
remembers its region so that the copy and the follow-up go there. One region that does not
answer never blocks the others.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from dataclasses import dataclass
from typing import TypeVar

from bot.dws.client import DwsClient
from bot.dws.errors import DwsError
from bot.dws.models import Snapshot

log = logging.getLogger(__name__)

_T = TypeVar("_T")
_NOT_HERE = frozenset({"DWS.5149", "DWS.0015"})


@dataclass(frozen=True)
class Listed:
    """A snapshot and the region it lives in."""

    region: str
    snapshot: Snapshot


class RegionalDws:
    def __init__(self, clients: Mapping[str, DwsClient]) -> None:
        if not clients:
            raise ValueError("at least one region")
        self._clients = dict(clients)
        self._pool = (
            # Room for a slow region's call to go on while the next question is asked.
            ThreadPoolExecutor(max_workers=2 * len(clients), thread_name_prefix="dws-region")
            if len(clients) > 1
            else None
        )

    @property
    def regions(self) -> list[str]:
        return list(self._clients)

    @property
    def several(self) -> bool:
        return len(self._clients) > 1

    def client(self, region: str | None = None) -> DwsClient:
        """The region's client; requests from before regions were recorded use the first."""
        if region and region in self._clients:
            return self._clients[region]
        return next(iter(self._clients.values()))

    def locate(self, snapshot_id: str) -> Listed:
        """The snapshot, from whichever region holds it.

        Raises the "not found" DwsError when no region has it, and the first other error when
        some region could not say (so a region that is down is not mistaken for an answer).
        """
        results = self._each(lambda client: client.get_snapshot(snapshot_id))
        trouble: DwsError | None = None
        missing: DwsError | None = None
        for region, result in results.items():
            if isinstance(result, Snapshot):
                return Listed(region, result)
            if result.status in (403, 404) or result.error_code in _NOT_HERE:
                missing = missing or result
            else:
                trouble = trouble or result
        error = trouble or missing
        assert error is not None
        raise error

    def list_all(self, wait: float | None = None) -> tuple[list[Listed], list[str]]:
        """Every region's snapshots, and the regions that did not answer (within `wait`
        seconds, when given: a region still trying is left to finish on its own)."""
        listed: list[Listed] = []
        failed: list[str] = []
        results = self._each(lambda client: client.list_snapshots(), wait=wait)
        for region, result in results.items():
            if isinstance(result, DwsError):
                log.warning(
                    "listing snapshots failed", extra={"region": region, "error": str(result)}
                )
                failed.append(region)
            else:
                listed += [Listed(region, snapshot) for snapshot in result]
        return listed, failed

    def _each(
        self, call: Callable[[DwsClient], _T], wait: float | None = None
    ) -> dict[str, _T | DwsError]:
        """`call` on every region's client, at once; a region that has not answered within
        `wait` counts as a failure."""

        def run(client: DwsClient) -> _T | DwsError:
            try:
                return call(client)
            except DwsError as error:
                return error

        if self._pool is None:
            return {region: run(client) for region, client in self._clients.items()}
        futures = {
            region: self._pool.submit(run, client) for region, client in self._clients.items()
        }
        futures_wait(futures.values(), timeout=wait)
        return {
            region: future.result()
            if future.done()
            else DwsError(f"{region} did not answer within {wait} s")
            for region, future in futures.items()
        }

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
