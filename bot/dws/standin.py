"""A local stand-in for the DWS snapshot API, for tests and for `snapcopy serve --sandbox`.

It speaks HTTP on 127.0.0.1 (an ephemeral port unless told otherwise), checks AK/SK signatures
the way the API gateway does, keeps the snapshot rules of the real service (name rules and
uniqueness, description rules, only automated snapshots are copyable, copies start CREATING and
become AVAILABLE after `copy_delay` seconds), and answers with an `X-Request-Id` like DWS.

Snapshots are answered with every field of the official SDK's `Snapshots` (list items) and
`SnapshotDetail` (one snapshot) models, so what passes here passes against the shape real DWS sends.
Tests can make fields of an item null (`add_snapshot(..., nulls=...)`), make the next copy fail
(`fail_next_copy_later()`) or freeze (`freeze_next_copy()`), and queue faults
(`inject(Fault(...))`): an error status (optionally with extra body fields, such as IAM's
`encoded_authorization_message`), a slow answer, a copy stored whose answer is lost, a reset
connection or a gateway's HTML page. It uses only the standard library
(and the official SDK's signer to verify signatures when that happens to be installed), so the
sandbox runs anywhere the bot does.
"""

from __future__ import annotations

import argparse
import functools
import hmac
import json
import os
import re
import socket
import struct
import threading
import time
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace, TracebackType
from typing import Any, Literal, Self, cast
from urllib.parse import parse_qsl

from bot.dws.models import AUTOMATED_TYPES, Snapshot, SnapshotStatus
from bot.dws.signer import DATE_FORMAT, Authorization, parse_authorization, signature_for
from bot.dws.standin_clusters import Clusters
from bot.dws.validation import (
    UUID_RE,
    InvalidInput,
    validate_backup_name,
    validate_description,
)

FaultKind = Literal["status", "delay", "drop_after_store", "reset", "html"]

CLOCK_SKEW = timedelta(minutes=15)
_ROUTE = re.compile(
    r"/v1\.0/(?P<project>[^/]+)/snapshots(?:/(?P<id>[^/]+)(?P<copy>/linked-copy)?)?/?"
)
_TIMESTAMP = "%Y-%m-%dT%H:%M:%SZ"
_DEMO_CLUSTERS = {
    "dws-prod": "6f1c2b9e-3a47-4d8e-9b6a-1e2f3c4d5a6b",
    "dws-analytics": "0b7e4c1d-8f2a-4e6b-a3d5-9c8b7a6f5e4d",
}
_DWS_VERSION = "8.2.1.220"

# The keys of a snapshot in list and detail answers, in the order of the SDK's `attribute_map`
# (huaweicloudsdkdws 3.1.219: `Snapshots` and `SnapshotDetail` have the same fields).
SNAPSHOT_FIELDS: tuple[str, ...] = (
    "id",
    "name",
    "description",
    "started",
    "finished",
    "size",
    "status",
    "type",
    "cluster_id",
    "datastore",
    "cluster_name",
    "updated",
    "bak_expected_start_time",
    "bak_keep_day",
    "bak_period",
    "db_user",
    "progress",
    "backup_key",
    "prior_backup_key",
    "base_backup_key",
    "backup_device",
    "total_backup_size",
    "base_backup_name",
    "support_inplace_restore",
    "fine_grained_backup",
    "backup_level",
    "fine_grained_backup_detail",
    "guest_agent_version",
    "cluster_status",
    "cluster_task_status",
    "support_fine_grained_cross_version_restore",
    "support_fine_grained_asymmetric_restore",
)
# Both freezes DWS documents: an ordinary one (e.g. arrears) and one ordered by the police.
FROZEN_STATUSES = frozenset({"FROZEN", "POLICE_FROZEN"})


@dataclass(frozen=True)
class Fault:
    """One injected failure, applied to the next request that matches and then forgotten.

    `method` ("GET", "POST") and `path` (a suffix such as "linked-copy" or "snapshots") narrow
    which request it hits; both None means the very next request.

    - status: answer `status` with a DWS-style JSON error `{"error_code", "error_msg"}` (and
      Retry-After if given); `body_extra` is merged into that body last, e.g.
      `{"encoded_authorization_message": "..."}` for a 403 from IAM
    - html: answer `status` with a gateway's HTML error page
    - delay: handle the request (storing a copy), then wait `seconds` before answering
    - drop_after_store: handle the request (storing a copy), then close without answering
    - reset: close the connection without handling the request

    With `until` (a time.monotonic() value) the fault stays and hits every matching request
    until then (an outage), instead of only the next one.
    """

    kind: FaultKind
    method: str | None = None
    path: str | None = None
    status: int = 503
    error_code: str | None = "DWS.0005"
    error_msg: str = "The service is temporarily unavailable."
    retry_after: str | None = None
    seconds: float = 0.0
    until: float | None = None
    # Left out of the hash so a Fault stays hashable while carrying a dict.
    body_extra: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method.upper() == method) and (
            self.path is None or path.rstrip("/").endswith(self.path.rstrip("/"))
        )


@dataclass(frozen=True)
class RecordedRequest:
    """A request as received; the Authorization header is left out on purpose."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class _Record:
    snapshot: Snapshot
    # What DWS reports of the backup behind a snapshot; a linked copy shares its source's.
    backup_key: str
    base_backup_name: str
    # Fields answered as null, whatever the snapshot holds.
    nulls: frozenset[str] = frozenset()
    updated: str | None = None
    # Set for copies: when they were made, the status they reach once `copy_delay` has passed,
    # when they reached it, and how long a frozen copy stays frozen before it becomes AVAILABLE.
    created_at: float | None = None
    outcome: str = SnapshotStatus.AVAILABLE
    settled_at: float | None = None
    thaw_after: float | None = None


@dataclass(frozen=True)
class _Reply:
    status: int
    body: bytes
    content_type: str = "application/json;charset=UTF-8"
    headers: Mapping[str, str] = field(default_factory=dict)


def _error(
    status: int,
    code: str | None,
    message: str,
    *,
    body_extra: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> _Reply:
    """An error in the shape DWS documents, `{"error_code": ..., "error_msg": ...}`."""
    payload: dict[str, Any] = {"error_msg": message}
    if code is not None:
        payload = {"error_code": code, **payload}
    payload.update(body_extra or {})
    return _Reply(status, json.dumps(payload).encode(), headers=headers or {})


def _ok(payload: object) -> _Reply:
    return _Reply(200, json.dumps(payload).encode())


def _auth_failure(why: str) -> _Reply:
    return _error(401, "APIG.0301", f"Incorrect IAM authentication information: {why}")


class DwsStandIn:
    """An in-process DWS with the snapshot API, fault injection and a record of requests."""

    def __init__(
        self,
        ak: str,
        sk: str,
        project_id: str,
        copy_delay: float = 0.5,
        verify_signatures: bool = True,
        *,
        port: int = 0,
    ) -> None:
        self.ak = ak
        self._sk = sk
        self.project_id = project_id
        self.copy_delay = copy_delay
        self.verify_signatures = verify_signatures
        self._port = port
        self._lock = threading.Lock()
        self._records: dict[str, _Record] = {}
        self._faults: list[Fault] = []
        self._requests: list[RecordedRequest] = []
        self._copy_calls = 0
        self._deleted = 0
        # How the next copy ends: the status it reaches after CREATING, and the thaw delay.
        self._next_outcome: tuple[str, float | None] = (SnapshotStatus.AVAILABLE, None)
        self._stopping = threading.Event()
        # Cluster state, storage, snapshot policies and jobs (bot/dws/standin_clusters.py).
        self.clusters = Clusters(self._snapshots_now, job_seconds=copy_delay)
        self._connections: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"DwsStandIn(url={self.url if self._server else None!r}, ak={self.ak!r})"

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> Self:
        server = _Server(("127.0.0.1", self._port), _Handler)
        server.standin = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, wake delayed answers, close open connections and wait for threads."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by the other side
        server.server_close()  # joins the handler threads
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("The DWS stand-in is not running; call start() first.")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # -- state for tests and the sandbox ----------------------------------------------------

    def add_snapshot(
        self,
        name: str,
        type: str = "AUTO",
        cluster_id: str = _DEMO_CLUSTERS["dws-prod"],
        size: float | None = 12.5,
        status: str = SnapshotStatus.AVAILABLE,
        *,
        description: str = "",
        started: datetime | None = None,
        cluster_name: str | None = None,
        nulls: Collection[str] = (),
    ) -> Snapshot:
        """Store a snapshot and return it as the stand-in keeps it.

        `nulls` names fields (of `SNAPSHOT_FIELDS`, all but "id") that list and detail answers
        give as null, as real DWS does for some items (type, name, size, description, started).
        Only the answers change: the stand-in still applies its rules to the stored values.
        """
        nulled = _checked_nulls(nulls)
        when = started or datetime.now(UTC)
        if cluster_name is None:  # real DWS names the cluster in every snapshot it lists
            cluster_name = next(
                (name for name, known in _DEMO_CLUSTERS.items() if known == cluster_id), None
            )
        snapshot = Snapshot(
            id=str(uuid.uuid4()),
            name=name,
            description=description,
            started=when.strftime(_TIMESTAMP),
            finished=(when + timedelta(minutes=7)).strftime(_TIMESTAMP),
            size=size,
            status=status,
            type=type,
            cluster_id=cluster_id,
            cluster_name=cluster_name,
        )
        record = _Record(
            snapshot, f"{when:%Y%m%d_%H%M%S}_{snapshot.id[:8]}", snapshot.name, nulls=nulled
        )
        with self._lock:
            self._records[snapshot.id] = record
        return snapshot

    def seed_demo(self) -> list[Snapshot]:
        """Nightly automated snapshots of two clusters and a couple of manual ones."""
        midnight = datetime.now(UTC).replace(hour=2, minute=0, second=0, microsecond=0)
        seeded = []
        for cluster, cluster_id in _DEMO_CLUSTERS.items():
            for nights_ago in (1, 2, 3):
                started = midnight - timedelta(days=nights_ago)
                seeded.append(
                    self.add_snapshot(
                        f"{cluster}-{started:%Y%m%d%H%M%S}",
                        "AUTO",
                        cluster_id,
                        size=180.4 if cluster == "dws-prod" else 37.9,
                        started=started,
                    )
                )
        for name, cluster in (("before-upgrade-8-2", "dws-prod"), ("q3-close", "dws-analytics")):
            seeded.append(
                self.add_snapshot(
                    name,
                    "MANUAL",
                    _DEMO_CLUSTERS[cluster],
                    size=150.2,
                    description="kept by hand",
                    started=midnight - timedelta(days=20),
                )
            )
        return seeded

    @property
    def snapshots(self) -> list[Snapshot]:
        """A consistent copy of all snapshots, copies' statuses brought up to date."""
        with self._lock:
            return [self._settled(record) for record in self._records.values()]

    @property
    def copy_calls(self) -> int:
        """How many linked-copy requests created a snapshot."""
        with self._lock:
            return self._copy_calls

    @property
    def deletions(self) -> int:
        """How many DELETE requests removed a snapshot."""
        with self._lock:
            return self._deleted

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def inject(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def outage(self, seconds: float, **fault: Any) -> Fault:
        """Every matching request fails (503 by default) for the next `seconds`."""
        outage = Fault(**{"kind": "status", **fault}, until=time.monotonic() + seconds)
        self.inject(outage)
        return outage

    def fail_next_copy_later(self) -> None:
        """Make the next copy go CREATING -> UNAVAILABLE instead of AVAILABLE."""
        with self._lock:
            self._next_outcome = (SnapshotStatus.UNAVAILABLE, None)

    def freeze_next_copy(self, thaw_after: float | None = None, status: str = "FROZEN") -> None:
        """Make the next copy go CREATING -> `status` (FROZEN or POLICE_FROZEN) after `copy_delay`.

        With `thaw_after`, it becomes AVAILABLE that many seconds after it froze; without, it
        stays frozen. The latest of this and `fail_next_copy_later()` decides the next copy.
        """
        if status not in FROZEN_STATUSES:
            raise ValueError(f"status must be one of {sorted(FROZEN_STATUSES)}, not {status!r}")
        if thaw_after is not None and thaw_after < 0:
            raise ValueError("thaw_after must not be negative")
        with self._lock:
            self._next_outcome = (status, thaw_after)

    # -- request handling (called from server threads) --------------------------------------

    def _receive(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> Fault | None:
        """Record the request and take the first queued fault that matches it."""
        path = target.partition("?")[0]
        recorded = {k: v for k, v in headers.items() if k != "authorization"}
        with self._lock:
            self._requests.append(RecordedRequest(method, target, recorded, body))
            now = time.monotonic()
            self._faults = [f for f in self._faults if f.until is None or f.until > now]
            for index, fault in enumerate(self._faults):
                if fault.matches(method, path):
                    return fault if fault.until is not None else self._faults.pop(index)
        return None

    def _answer(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> _Reply:
        if self.verify_signatures:
            refusal = self._check_signature(method, target, headers, body)
            if refusal is not None:
                return refusal
        path = target.partition("?")[0]
        cluster_route = Clusters.route(path)
        route = _ROUTE.fullmatch(path)
        if route is None and (cluster_route is None or method != "GET"):
            return _error(404, "APIG.0101", "The API does not exist or has not been published.")
        project = route["project"] if route is not None else cluster_route[1]  # type: ignore[index]
        if {project, headers.get("x-project-id", self.project_id)} != {self.project_id}:
            return _error(
                403, "DWS.0015", "The project does not exist or you have no permission on it."
            )
        if route is None:
            assert cluster_route is not None
            status, payload = self.clusters.answer(cluster_route[0], cluster_route[2])
            return _Reply(status, json.dumps(payload).encode())
        snapshot_id = route["id"]
        if method == "GET" and snapshot_id is None:
            return self._list()
        if method == "GET" and not route["copy"]:
            return self._get(snapshot_id)
        if method == "POST" and route["copy"]:
            return self._copy(snapshot_id, body)
        if method == "DELETE" and snapshot_id is not None and not route["copy"]:
            return self._delete(snapshot_id)
        return _error(404, "APIG.0101", "The API does not exist or has not been published.")

    def _check_signature(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes
    ) -> _Reply | None:
        auth = parse_authorization(headers.get("authorization", ""))
        if auth is None:
            return _auth_failure("the Authorization header is missing or malformed.")
        if auth.access != self.ak:
            return _auth_failure("the access key is unknown.")
        if not {"host", "x-sdk-date"} <= set(auth.signed_headers):
            return _auth_failure("host and x-sdk-date must be signed.")
        try:
            signed_at = datetime.strptime(headers.get("x-sdk-date", ""), DATE_FORMAT)
            expected = _official_signature(method, target, headers, body, self._sk, auth)
            if expected is None:
                expected = signature_for(
                    method, target, headers, body, self._sk, signed_headers=auth.signed_headers
                )
        except ValueError:
            return _auth_failure("a signed header is missing or X-Sdk-Date is malformed.")
        if abs(datetime.now(UTC) - signed_at.replace(tzinfo=UTC)) > CLOCK_SKEW:
            return _auth_failure("X-Sdk-Date is more than 15 minutes away from the server's time.")
        if not hmac.compare_digest(expected, auth.signature):
            return _auth_failure("verify aksk signature fail.")
        return None

    def _list(self) -> _Reply:
        with self._lock:
            items = [self._view(record) for record in self._records.values()]
        return _ok({"snapshots": items, "count": len(items)})

    def _get(self, snapshot_id: str) -> _Reply:
        if UUID_RE.fullmatch(snapshot_id) is None:
            return _error(400, "DWS.5149", "The snapshot ID is invalid.")
        with self._lock:
            record = self._records.get(snapshot_id.lower())
            if record is None:
                return _error(404, "DWS.0015", f"The snapshot {snapshot_id} does not exist.")
            return _ok({"snapshot": self._view(record)})

    def _copy(self, source_id: str, body: bytes) -> _Reply:
        if UUID_RE.fullmatch(source_id) is None:
            return _error(400, "DWS.5149", "The snapshot ID is invalid.")
        try:
            request = json.loads(body)
            if not isinstance(request, dict):
                raise ValueError("not an object")
            name = validate_backup_name(_text(request, "backup_name"))
            description = validate_description(_text(request, "description", required=False))
        except InvalidInput as exc:
            return _error(400, "DWS.0001", f"Invalid parameter {exc.field}: {exc.message}")
        except ValueError:
            return _error(400, "DWS.0001", "The request body must be a JSON object.")
        with self._lock:
            source = self._records.get(source_id.lower())
            if source is None:
                return _error(404, "DWS.0015", f"The snapshot {source_id} does not exist.")
            if source.snapshot.type.upper() not in AUTOMATED_TYPES:
                return _error(
                    400,
                    "DWS.0001",
                    f"Only automated snapshots can be copied; {source.snapshot.name} is "
                    f"{source.snapshot.type}.",
                )
            if self._settled(source).status != SnapshotStatus.AVAILABLE:
                return _error(
                    400, "DWS.0001", f"The snapshot {source.snapshot.name} is not available."
                )
            operation = self.clusters.busy(source.snapshot.cluster_id)
            if operation is not None:
                return _error(
                    409, "DWS.0011", f"The cluster is running another operation ({operation})."
                )
            if any(r.snapshot.name.lower() == name.lower() for r in self._records.values()):
                return _error(400, "DWS.0001", f"A snapshot named {name} already exists.")
            copy = Snapshot(
                id=str(uuid.uuid4()),
                name=name,
                description=description,
                started=datetime.now(UTC).strftime(_TIMESTAMP),
                size=source.snapshot.size,
                status=SnapshotStatus.CREATING,
                type="MANUAL",
                cluster_id=source.snapshot.cluster_id,
                cluster_name=source.snapshot.cluster_name,
            )
            outcome, thaw_after = self._next_outcome
            self._records[copy.id] = _Record(
                copy,
                source.backup_key,
                source.base_backup_name,
                created_at=time.monotonic(),
                outcome=outcome,
                thaw_after=thaw_after,
            )
            self._next_outcome = (SnapshotStatus.AVAILABLE, None)
            self._copy_calls += 1
        return _ok({"snapshot_id": copy.id})

    def _delete(self, snapshot_id: str) -> _Reply:
        """Only manual snapshots can be deleted; one already gone is DWS.0001 (as the Terraform
        provider reads it), a busy cluster DWS.0011. The answer carries the deletion's job."""
        if UUID_RE.fullmatch(snapshot_id) is None:
            return _error(400, "DWS.5149", "The snapshot ID is invalid.")
        with self._lock:
            record = self._records.get(snapshot_id.lower())
            if record is None:
                return _error(400, "DWS.0001", f"The snapshot {snapshot_id} does not exist.")
            if record.snapshot.type.upper() != "MANUAL":
                return _error(400, "DWS.0001", "Only manual snapshots can be deleted.")
            operation = self.clusters.busy(record.snapshot.cluster_id)
            if operation is not None:
                return _error(
                    409, "DWS.0011", f"The cluster is running another operation ({operation})."
                )
            del self._records[snapshot_id.lower()]
            self._deleted += 1
        job_id = self.clusters.start_job("deleteSnapshot")
        return _ok({"job_id": job_id, "error_code": None, "error_msg": None})

    def _snapshots_now(self) -> list[Snapshot]:
        with self._lock:
            return [self._settled(record) for record in self._records.values()]

    def _view(self, record: _Record) -> dict[str, Any]:
        """The record as list and detail answers show it. Callers hold the lock."""
        snapshot = self._settled(record)
        keep_day = self.clusters.keep_day(snapshot.cluster_id)
        return _wire(snapshot, record, self._progress(record, snapshot), keep_day)

    def _progress(self, record: _Record, snapshot: Snapshot) -> str:
        """How far a snapshot is, as DWS reports it: a percentage, complete unless CREATING."""
        if snapshot.status != SnapshotStatus.CREATING or record.created_at is None:
            return "100%"
        if self.copy_delay <= 0:
            return "99%"
        done = (time.monotonic() - record.created_at) / self.copy_delay
        return f"{min(99, int(done * 100))}%"

    def _settled(self, record: _Record) -> Snapshot:
        """The record's snapshot, a copy moved on as time passes. Callers hold the lock.

        A copy leaves CREATING for its outcome once `copy_delay` has passed; a frozen one with a
        thaw delay becomes AVAILABLE that long after it froze. Statuses only move forward, even
        when a test changes `copy_delay` later.
        """
        now = time.monotonic()
        if record.created_at is None:
            return record.snapshot
        if (
            record.snapshot.status == SnapshotStatus.CREATING
            and now - record.created_at >= self.copy_delay
        ):
            record.settled_at = record.created_at + self.copy_delay
            _move(record, record.outcome, finished=True)
        if (  # after a long wait, one look may see a copy both freeze and thaw
            record.snapshot.status in FROZEN_STATUSES
            and record.thaw_after is not None
            and record.settled_at is not None
            and now - record.settled_at >= record.thaw_after
        ):
            _move(record, SnapshotStatus.AVAILABLE, finished=False)
        return record.snapshot


def _move(record: _Record, status: str, *, finished: bool) -> None:
    """Give the record's snapshot a new status, noting when it changed."""
    now = datetime.now(UTC).strftime(_TIMESTAMP)
    update = {"status": status, "finished": now} if finished else {"status": status}
    record.snapshot = record.snapshot.model_copy(update=update)
    record.updated = now


def _checked_nulls(nulls: Collection[str]) -> frozenset[str]:
    """The field names to answer as null; "id" is never null, since it addresses the item."""
    nulled = frozenset(nulls)
    refused = (nulled - set(SNAPSHOT_FIELDS)) | (nulled & {"id"})
    if refused:
        raise ValueError(f"cannot answer these fields as null: {sorted(refused)}")
    return nulled


def _wire(snapshot: Snapshot, record: _Record, progress: str, keep_day: int) -> dict[str, Any]:
    """One snapshot as DWS answers it: every field of the SDK's `Snapshots`/`SnapshotDetail`.

    Fields snapcopy keeps come from the snapshot; the rest are what a healthy cluster with a
    daily automated-snapshot policy reports, so clients meet the full shape of a real answer.
    """
    creating = snapshot.status == SnapshotStatus.CREATING
    answer: dict[str, Any] = {
        "id": snapshot.id,
        "name": snapshot.name,
        "description": snapshot.description,
        "started": snapshot.started,
        "finished": snapshot.finished,
        "size": snapshot.size,
        "status": snapshot.status,
        "type": snapshot.type,
        "cluster_id": snapshot.cluster_id,
        "datastore": {"type": "dws", "version": _DWS_VERSION},
        "cluster_name": snapshot.cluster_name,
        "updated": record.updated or snapshot.finished or snapshot.started,
        "bak_expected_start_time": snapshot.started,
        "bak_keep_day": keep_day,
        "bak_period": "1d",
        "db_user": "dbadmin",
        "progress": progress,
        "backup_key": record.backup_key,
        "prior_backup_key": "FULL",  # DWS's word for "a full snapshot, not an increment"
        "base_backup_key": record.backup_key,
        "backup_device": "OBS",
        # Bytes, where `size` is GB; DWS sends it as an integer.
        "total_backup_size": None if snapshot.size is None else round(snapshot.size * 1024**3),
        "base_backup_name": record.base_backup_name,
        "support_inplace_restore": True,
        "fine_grained_backup": False,
        "backup_level": "cluster",
        "fine_grained_backup_detail": {"database": None, "schema_list": [], "table_list": []},
        "guest_agent_version": _DWS_VERSION,
        "cluster_status": "AVAILABLE",
        "cluster_task_status": "SNAPSHOTTING" if creating else "",
        "support_fine_grained_cross_version_restore": False,
        "support_fine_grained_asymmetric_restore": False,
    }
    answer.update(dict.fromkeys(record.nulls))
    return answer


def _text(body: dict[str, Any], key: str, *, required: bool = True) -> str:
    value = body.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        field_name = cast(Literal["backup_name", "description"], key)
        raise InvalidInput(field_name, f"{key} must be a string.")
    return value


@functools.cache
def _official_sdk() -> tuple[Any, Any] | None:
    """The SDK's (Signer, SdkRequest) classes, or None where the SDK is not installed."""
    try:
        from huaweicloudsdkcore.sdk_request import SdkRequest
        from huaweicloudsdkcore.signer.signer import Signer
    except ImportError:
        return None
    return Signer, SdkRequest


def _official_signature(
    method: str, target: str, headers: Mapping[str, str], body: bytes, sk: str, auth: Authorization
) -> str | None:
    """The signature the official SDK computes, when it is installed (as it is for tests).

    Verifying with an independent implementation means a test passing end to end proves the
    client's signatures are the ones Huawei Cloud accepts, not merely self-consistent.
    """
    sdk = _official_sdk()
    if sdk is None:
        return None
    signer, sdk_request = sdk
    path, _, query = target.partition("?")
    missing = [name for name in auth.signed_headers if name not in headers]
    if missing:
        raise ValueError("a signed header is missing")
    request = sdk_request(
        method=method,
        host=headers["host"],
        resource_path=path,
        query_params=parse_qsl(query, keep_blank_values=True),
        header_params={name: headers[name] for name in auth.signed_headers},
        body=body,
    )
    signer(SimpleNamespace(ak=auth.access, sk=sk)).sign(request)
    signed = parse_authorization(request.header_params["Authorization"])
    return signed.signature if signed else None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    standin: DwsStandIn

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hung up (timeouts, stop()) is part of the game, not a server bug.
        return


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 60  # idle keep-alive connections end on their own in the sandbox
    server_version = "DwsStandIn"
    # Headers and body go out as separate writes; without this, Nagle and delayed ACKs add
    # ~40 ms to every answer on keep-alive connections, which would be billed to the bot.
    disable_nagle_algorithm = True

    @property
    def _standin(self) -> DwsStandIn:
        return cast(_Server, self.server).standin

    def setup(self) -> None:
        super().setup()
        with self._standin._lock:
            self._standin._connections.add(self.connection)

    def finish(self) -> None:
        with self._standin._lock:
            self._standin._connections.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def log_message(self, format: str, *args: Any) -> None:
        return  # tests and the sandbox log through the client instead

    def _handle(self) -> None:
        standin = self._standin
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {key.lower(): value for key, value in self.headers.items()}
        fault = standin._receive(self.command, self.path, headers, body)
        if fault is not None and fault.kind in ("reset", "status", "html"):
            self._fail_unhandled(fault)
            return
        reply = standin._answer(self.command, self.path, headers, body)
        if fault is not None and fault.kind == "delay":
            standin._stopping.wait(fault.seconds)  # stop() cuts the wait short
        if fault is not None and fault.kind == "drop_after_store":
            self._hang_up(reset=False)
            return
        self._write(reply)

    def _fail_unhandled(self, fault: Fault) -> None:
        """Faults that stand for the gateway or network failing before DWS sees the request."""
        if fault.kind == "reset":
            self._hang_up(reset=True)
        elif fault.kind == "html":
            self._write(_Reply(fault.status, _gateway_page(fault.status), "text/html"))
        else:
            extra = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            self._write(
                _error(
                    fault.status,
                    fault.error_code,
                    fault.error_msg,
                    body_extra=fault.body_extra,
                    headers=extra,
                )
            )

    def _hang_up(self, *, reset: bool) -> None:
        self.close_connection = True
        if reset:  # SO_LINGER 0: closing sends RST instead of FIN
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    def _write(self, reply: _Reply) -> None:
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            self.send_header("X-Request-Id", uuid.uuid4().hex)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(reply.body)
        except OSError:
            self.close_connection = True  # the client gave up waiting


def _gateway_page(status: int) -> bytes:
    """The kind of page a load balancer sends when it cannot reach the service behind it."""
    title = f"{status} {HTTPStatus(status).phrase}"
    return (
        f"<html><head><title>{title}</title></head><body>"
        f"<center><h1>{title}</h1></center><hr><center>nginx</center></body></html>"
    ).encode()


def main(argv: list[str] | None = None) -> None:
    """Serve a demo DWS on 127.0.0.1 until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m bot.dws.standin", description=main.__doc__)
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--ak", default=os.environ.get("HUAWEICLOUD_SDK_AK", "sandbox-ak"))
    parser.add_argument("--sk", default=os.environ.get("HUAWEICLOUD_SDK_SK", "sandbox-sk"))
    parser.add_argument(
        "--project-id", default=os.environ.get("HUAWEICLOUD_SDK_PROJECT_ID", "0" * 32)
    )
    parser.add_argument("--copy-delay", type=float, default=5.0)
    args = parser.parse_args(argv)
    with DwsStandIn(args.ak, args.sk, args.project_id, args.copy_delay, port=args.port) as dws:
        dws.seed_demo()
        print(f"DWS stand-in for project {args.project_id} at {dws.url} (Ctrl-C stops it)")
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
