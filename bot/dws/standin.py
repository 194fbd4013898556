"""A local stand-in for the DWS snapshot API, for tests and for `snapcopy serve --sandbox`.

It speaks HTTP on 127.0.0.1 (an ephemeral port unless told otherwise), checks AK/SK signatures
the way the API gateway does, keeps the snapshot rules of the real service (name rules and
uniqueness, description rules, only automated snapshots are copyable, copies start CREATING and
become AVAILABLE after `copy_delay` seconds), and answers with an `X-Request-Id` like DWS.

Tests can queue faults (`inject(Fault(...))`): an error status, a slow answer, a copy stored whose
answer is lost, a reset connection or a gateway's HTML page. It uses only the standard library
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
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace, TracebackType
from typing import Any, Literal, Self, cast
from urllib.parse import parse_qsl

from bot.dws.models import AUTOMATED_TYPES, Snapshot, SnapshotStatus
from bot.dws.signer import DATE_FORMAT, Authorization, parse_authorization, signature_for
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


@dataclass(frozen=True)
class Fault:
    """One injected failure, applied to the next request that matches and then forgotten.

    `method` ("GET", "POST") and `path` (a suffix such as "linked-copy" or "snapshots") narrow
    which request it hits; both None means the very next request.

    - status: answer `status` with a DWS-style JSON error (and Retry-After if given)
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
    # Set for copies: when they were made and how they end.
    created_at: float | None = None
    ends_unavailable: bool = False


@dataclass(frozen=True)
class _Reply:
    status: int
    body: bytes
    content_type: str = "application/json;charset=UTF-8"
    headers: Mapping[str, str] = field(default_factory=dict)


def _error(status: int, code: str | None, message: str, **headers: str) -> _Reply:
    payload = {"error_msg": message} if code is None else {"error_code": code, "error_msg": message}
    body = json.dumps(payload).encode()
    return _Reply(status, body, headers=headers)


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
        self._fail_next_copy = False
        self._stopping = threading.Event()
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
    ) -> Snapshot:
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
        with self._lock:
            self._records[snapshot.id] = _Record(snapshot)
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
            self._fail_next_copy = True

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
        route = _ROUTE.fullmatch(path)
        if route is None:
            return _error(404, "APIG.0101", "The API does not exist or has not been published.")
        projects = {route["project"], headers.get("x-project-id", self.project_id)}
        if projects != {self.project_id}:
            return _error(
                403, "DWS.0015", "The project does not exist or you have no permission on it."
            )
        snapshot_id = route["id"]
        if method == "GET" and snapshot_id is None:
            return self._list()
        if method == "GET" and not route["copy"]:
            return self._get(snapshot_id)
        if method == "POST" and route["copy"]:
            return self._copy(snapshot_id, body)
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
        snapshots = self.snapshots
        return _ok({"snapshots": [s.model_dump() for s in snapshots], "count": len(snapshots)})

    def _get(self, snapshot_id: str) -> _Reply:
        if UUID_RE.fullmatch(snapshot_id) is None:
            return _error(400, "DWS.5149", "The snapshot ID is invalid.")
        with self._lock:
            record = self._records.get(snapshot_id.lower())
            if record is None:
                return _error(404, "DWS.0015", f"The snapshot {snapshot_id} does not exist.")
            return _ok({"snapshot": self._settled(record).model_dump()})

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
            self._records[copy.id] = _Record(
                copy, created_at=time.monotonic(), ends_unavailable=self._fail_next_copy
            )
            self._fail_next_copy = False
            self._copy_calls += 1
        return _ok({"snapshot_id": copy.id})

    def _settled(self, record: _Record) -> Snapshot:
        """The record's snapshot, a copy moved on from CREATING once `copy_delay` has passed.

        Callers hold the lock.
        """
        snapshot = record.snapshot
        if (
            record.created_at is not None
            and snapshot.status == SnapshotStatus.CREATING
            and time.monotonic() - record.created_at >= self.copy_delay
        ):
            final = (
                SnapshotStatus.UNAVAILABLE if record.ends_unavailable else SnapshotStatus.AVAILABLE
            )
            snapshot = snapshot.model_copy(
                update={"status": final, "finished": datetime.now(UTC).strftime(_TIMESTAMP)}
            )
            record.snapshot = snapshot
        return snapshot


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
            self._write(_error(fault.status, fault.error_code, fault.error_msg, **extra))

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
