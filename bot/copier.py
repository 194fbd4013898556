"""Copying an approved request and following the copy until DWS says it is done.

A request reaches DWS only by winning the `approved → copying` transition, and the name is
checked free just before the first call (a snapshot with that name then is not ours). After a
crash, a request found in `copying` is looked up by name before anything is sent again: the
backup name is the idempotency key that linked-copy itself lacks.
"""

from __future__ import annotations

import logging
import threading

from bot.domain import CopyRequest, State
from bot.dws.client import DwsClient
from bot.dws.errors import DwsError, SnapshotFailed, WaitTimedOut
from bot.dws.validation import InvalidInput
from bot.notifier import News, Notifier
from bot.store import Store

log = logging.getLogger(__name__)


class Stopping(Exception):
    """The process is shutting down; unfinished copies are picked up again at start-up."""


class Copier:
    """Runs each approved request's copy on its own thread, at most once per process."""

    def __init__(
        self,
        store: Store,
        dws: DwsClient,
        notifier: Notifier,
        *,
        poll_seconds: float,
        follow_seconds: float,
        stop: threading.Event,
    ) -> None:
        self.store = store
        self.dws = dws
        self.notifier = notifier
        self.poll_seconds = poll_seconds
        self.follow_seconds = follow_seconds
        self.stop = stop
        self._running: set[int] = set()
        self._running_lock = threading.Lock()

    def start(self, request_id: int) -> bool:
        """Run the copy on its own thread; False if this process is already running it."""
        with self._running_lock:
            if request_id in self._running:
                return False
            self._running.add(request_id)
        thread = threading.Thread(
            target=self._run_and_release,
            args=(request_id,),
            name=f"copy-{request_id}",
            daemon=True,  # a crash mid-copy is recovered by reconcile(), not by joining
        )
        thread.start()
        return True

    def _run_and_release(self, request_id: int) -> None:
        try:
            self.run_copy(request_id)
        except Stopping:
            log.info("copy paused for shutdown", extra={"request_id": request_id})
        except Exception:
            log.exception("copy crashed", extra={"request_id": request_id})
            self._fail(self._get(request_id), "snapcopy hit an internal error while copying.")
        finally:
            with self._running_lock:
                self._running.discard(request_id)

    def run_copy(self, request_id: int) -> CopyRequest:
        """Copy (or adopt the copy of) an approved request, then follow it to the end."""
        request = self._get(request_id)
        if request.state == State.APPROVED:
            request = self._first_copy(request)
        elif request.state == State.COPYING and not request.new_snapshot_id:
            request = self._resume_copy(request)
        if request.state == State.COPYING and request.new_snapshot_id:
            request = self._follow(request)
        return request

    def _first_copy(self, request: CopyRequest) -> CopyRequest:
        try:
            # Checked just before the first call: a snapshot with this name now is not ours.
            if self.dws.find_snapshot_by_name(request.backup_name) is not None:
                return self._fail(
                    request,
                    f"A snapshot named {request.backup_name} already exists in DWS, so "
                    "nothing was copied; ask again with another name.",
                )
        except DwsError as error:
            return self._fail(request, error)
        copying = self.store.transition(
            request.id,
            allowed_from=[State.APPROVED],
            to=State.COPYING,
            event="copy_started",
            actor=None,
        )
        if copying is None:  # somebody else's thread or process won the transition
            return self._get(request.id)
        self.notifier.tell(copying, News.COPY_STARTED)
        return self._call_copy(copying)

    def _resume_copy(self, request: CopyRequest) -> CopyRequest:
        """After a crash in `copying`: the call may or may not have reached DWS."""
        try:
            existing = self.dws.find_snapshot_by_name(request.backup_name)
        except DwsError as error:
            return self._fail(request, error)
        if existing is None:
            self.store.record_event(request.id, "copy_resumed", None, {"found": False})
            return self._call_copy(request)
        self.store.record_event(
            request.id, "copy_resumed", None, {"found": True, "snapshot_id": existing.id}
        )
        return self._copied(request, existing.id, dws_request_id=None, adopted=True)

    def _call_copy(self, request: CopyRequest) -> CopyRequest:
        try:
            copied = self.dws.copy_snapshot(
                request.source_snapshot_id, request.backup_name, request.description
            )
        except (DwsError, InvalidInput) as error:
            return self._fail(request, error)
        return self._copied(
            request, copied.snapshot_id, dws_request_id=copied.request_id, adopted=copied.adopted
        )

    def _copied(
        self, request: CopyRequest, snapshot_id: str, *, dws_request_id: str | None, adopted: bool
    ) -> CopyRequest:
        self.store.add_dws_request_id(request.id, dws_request_id)
        copied = self.store.update(
            request.id,
            new_snapshot_id=snapshot_id,
            snapshot_status="CREATING",
            event="copied",
            details={
                "new_snapshot_id": snapshot_id,
                "dws_request_id": dws_request_id,
                "adopted": adopted,
            },
        )
        self.notifier.tell(copied, News.COPIED)
        return copied

    def _follow(self, request: CopyRequest) -> CopyRequest:
        assert request.new_snapshot_id is not None
        seen = {"status": request.snapshot_status}

        def on_status(status: str) -> None:
            if self.stop.is_set():
                raise Stopping
            if status == seen["status"]:
                return
            seen["status"] = status
            updated = self.store.update(
                request.id, snapshot_status=status, event="status", details={"status": status}
            )
            self.notifier.tell(updated, News.STATUS)

        try:
            final = self.dws.wait_until_available(
                request.new_snapshot_id,
                poll_seconds=self.poll_seconds,
                timeout=self.follow_seconds,
                on_status=lambda snapshot: on_status(snapshot.status),
            )
        except SnapshotFailed as error:
            return self._fail(request, error, snapshot_status="UNAVAILABLE")
        except (WaitTimedOut, DwsError) as error:
            # The copy exists; only our view of it stopped. Say so; a restart resumes following.
            self.store.record_event(request.id, "follow_stopped", None, {"reason": str(error)})
            stopped = self._get(request.id)
            self.notifier.tell(stopped, News.FOLLOW_STOPPED)
            return stopped
        done = self.store.transition(
            request.id,
            allowed_from=[State.COPYING],
            to=State.SUCCEEDED,
            event="available",
            actor=None,
            snapshot_status=final.status,
        )
        if done is None:
            return self._get(request.id)
        self.notifier.tell(done, News.SUCCEEDED)
        return done

    def _fail(
        self,
        request: CopyRequest,
        error: DwsError | InvalidInput | str,
        **fields: str,
    ) -> CopyRequest:
        sentence, code, dws_request_id = _failure(error)
        self.store.add_dws_request_id(request.id, dws_request_id)
        failed = self.store.transition(
            request.id,
            allowed_from=[State.APPROVED, State.COPYING],
            to=State.FAILED,
            event="copy_failed",
            actor=None,
            details={"error_code": code, "dws_request_id": dws_request_id, "error": sentence},
            error=sentence,
            error_code=code,
            **fields,
        )
        if failed is None:
            return self._get(request.id)
        self.notifier.tell(failed, News.FAILED)
        return failed

    def _get(self, request_id: int) -> CopyRequest:
        return self.store.require(request_id)


def _failure(error: DwsError | InvalidInput | str) -> tuple[str, str | None, str | None]:
    if isinstance(error, DwsError):
        return str(error), error.error_code, error.request_id
    if isinstance(error, InvalidInput):
        return error.message, "invalid_input", None
    return error, None, None
