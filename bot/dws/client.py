"""A small, careful client for the DWS snapshot API.

Reads are retried with exponential backoff and full jitter, within a budget (the modal's checks
and the picker use that; the jobs use `RetryPolicy(attempts=1)`, their retries being durable).
linked-copy is not idempotent and takes no client token, so `copy_once` makes exactly one call
and leaves what follows a failure to its caller: the copy job (bot/dws_jobs.py) decides whether it
is transient, and looks the unique name up before it ever calls again.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from bot.dws.errors import (
    DwsError,
    MalformedResponse,
    transport_error,
)
from bot.dws.models import (
    Cluster,
    ClusterEnvelope,
    CopiedSnapshot,
    CopyResponse,
    DeleteResponse,
    Job,
    Snapshot,
    SnapshotEnvelope,
    SnapshotList,
    SnapshotPolicy,
    SnapshotStatistics,
)
from bot.dws.validation import validate_backup_name, validate_description, validate_snapshot_id

_Model = TypeVar("_Model", bound=BaseModel)
_PROJECT_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_PATH_ID_RE = re.compile(r"[A-Za-z0-9-]{1,64}")
_LOG = logging.getLogger(__name__)
_JSON_BODY = {"Content-Type": "application/json;charset=utf-8"}


def build_http_client(
    endpoint: str,
    auth: httpx.Auth,
    connect_timeout: float = 5.0,
    read_timeout: float = 15.0,
    transport: httpx.BaseTransport | None = None,
) -> httpx.Client:
    """The one HTTP client a `DwsClient` uses; `transport` lets tests answer in-process."""
    return httpx.Client(
        base_url=endpoint,
        auth=auth,
        timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
        transport=transport,
        headers={"Accept": "application/json"},
    )


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try: at most `attempts` requests, and no sleep past `total_budget` seconds.

    A request already in flight when the budget runs out still gets its own timeout, so a call
    can last up to `total_budget` plus one read timeout.
    """

    attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 8.0
    total_budget: float = 30.0

    def backoff(self, retry: int, uniform: Callable[[float, float], float]) -> float:
        """Full jitter: anywhere between 0 and the exponential ceiling for this retry."""
        return uniform(0.0, min(self.max_delay, self.base_delay * 2**retry))


class _Budget:
    """Counts attempts and elapsed time for one call."""

    def __init__(self, policy: RetryPolicy, monotonic: Callable[[], float]) -> None:
        self._policy = policy
        self._monotonic = monotonic
        self._started = monotonic()
        self.attempts = 0

    def allows(self, delay: float) -> bool:
        """Whether one more attempt after sleeping `delay` seconds stays within the policy."""
        elapsed = self._monotonic() - self._started
        return (
            self.attempts < self._policy.attempts and elapsed + delay <= self._policy.total_budget
        )


class DwsClient:
    """Snapshot operations of one project, over one injected, signing `httpx.Client`."""

    def __init__(
        self,
        http: httpx.Client,
        project_id: str,
        *,
        retry: RetryPolicy = RetryPolicy(),
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        uniform: Callable[[float, float], float] = random.uniform,
        logger: logging.Logger = _LOG,
        copy_timeout: float | None = None,
        observer: Callable[[str, str, bool, str | None], None] | None = None,
    ) -> None:
        if not _PROJECT_ID_RE.fullmatch(project_id):
            raise ValueError("The project id must be 1 to 64 letters, digits, '-' or '_'.")
        self._http = http
        self._project = project_id
        self._retry = retry
        self._sleep = sleep
        self._monotonic = monotonic
        self._uniform = uniform
        self._log = logger
        # Told (call, outcome, ok, request id) after every attempt: metrics, /healthz, doctor.
        self._observer = observer
        # linked-copy may take long to answer (the SDK waits 120 s); reads stay short. An
        # answer that comes after our timeout sends the copy down the slower "did it happen?"
        # path, so the copy call gets a read timeout of its own.
        self._copy_timeout = (
            httpx.Timeout(copy_timeout, connect=http.timeout.connect)
            if copy_timeout is not None
            else None
        )

    # -- reads -----------------------------------------------------------------------------

    def get_snapshot(self, snapshot_id: str) -> Snapshot:
        path = f"/v1.0/{self._project}/snapshots/{validate_snapshot_id(snapshot_id)}"
        return self._parse(SnapshotEnvelope, self._get(path)).snapshot

    def list_snapshots(self) -> list[Snapshot]:
        """Every snapshot of the project. Items are read one by one: an unreadable one is
        skipped with a warning and the rest kept; only an answer that is no list is an error."""
        path = f"/v1.0/{self._project}/snapshots"
        response = self._get(path)
        answer = self._parse(SnapshotList, response)
        if answer.snapshots is None:
            self._log.warning(
                "DWS listed no 'snapshots' key; taking it as an empty list",
                extra={"dws_request_id": response.headers.get("X-Request-Id")},
            )
            return []
        snapshots = []
        for position, item in enumerate(answer.snapshots):
            try:
                snapshots.append(Snapshot.model_validate(item))
            except ValidationError as error:
                problem = error.errors(include_url=False, include_input=False)[0]
                self._log.warning(
                    "skipping an unreadable snapshot in DWS's list",
                    extra={
                        "position": position,
                        "field": ".".join(str(part) for part in problem["loc"]) or "item",
                        "problem": problem["msg"],
                        "dws_request_id": response.headers.get("X-Request-Id"),
                    },
                )
        return snapshots

    def find_snapshot_by_name(self, name: str) -> Snapshot | None:
        """The snapshot with this name, compared case-insensitively as DWS compares names."""
        wanted = name.strip().lower()
        return next((s for s in self.list_snapshots() if s.name.lower() == wanted), None)

    def get_job(self, job_id: str) -> Job:
        """A job DWS runs for us (a deletion): its status, progress and why it failed."""
        return self._parse(Job, self._get(f"/v1.0/{self._project}/job/{_path_id(job_id)}"))

    def get_cluster(self, cluster_id: str) -> Cluster:
        """The cluster's status and `task_status` (an operation in progress, e.g. RESTORING)."""
        path = f"/v1.0/{self._project}/clusters/{_path_id(cluster_id)}"
        return self._parse(ClusterEnvelope, self._get(path)).cluster

    def snapshot_statistics(self, cluster_id: str) -> SnapshotStatistics:
        """The cluster's snapshot storage: used, free and paid, in GB."""
        path = f"/v1.0/{self._project}/clusters/{_path_id(cluster_id)}/snapshots/statistics"
        return self._parse(SnapshotStatistics, self._get(path))

    def snapshot_policy(self, cluster_id: str) -> SnapshotPolicy:
        """How long the cluster keeps its automated snapshots (`keep_day`)."""
        path = f"/v2/{self._project}/clusters/{_path_id(cluster_id)}/snapshot-policies"
        return self._parse(SnapshotPolicy, self._get(path))

    # -- the copy, and deleting it ---------------------------------------------------------

    def copy_once(self, snapshot_id: str, name: str, description: str = "") -> CopiedSnapshot:
        """One linked-copy call and nothing else: no retry, no lookup.

        For callers that keep their own durable retry state (bot/dws_jobs.py): any DwsError leaves
        the decision, and the name lookup before trying again, to them. An unreadable success
        answer raises MalformedResponse: the copy exists, and its id is found by name.
        """
        path, body, name = self._copy_call(snapshot_id, name, description)
        response = self._send("POST", path, json=body, timeout=self._copy_timeout)
        answer = self._parse(CopyResponse, response)
        return CopiedSnapshot(answer.snapshot_id, response.headers.get("X-Request-Id"))

    def delete_once(self, snapshot_id: str) -> str | None:
        """One DELETE of a manual snapshot; returns the job id of newer services (None from
        older ones, which answer no body). DWS.0001 (already gone) and DWS.0011 (cluster busy)
        are left to the caller, like every other DwsError."""
        path = f"/v1.0/{self._project}/snapshots/{validate_snapshot_id(snapshot_id)}"
        response = self._send("DELETE", path)
        if not response.content.strip():
            return None
        return self._parse(DeleteResponse, response).job_id or None

    def _copy_call(
        self, snapshot_id: str, name: str, description: str
    ) -> tuple[str, dict[str, str], str]:
        source = validate_snapshot_id(snapshot_id)
        name = validate_backup_name(name)
        body = {"backup_name": name, "description": validate_description(description)}
        return f"/v1.0/{self._project}/snapshots/{source}/linked-copy", body, name

    # -- sending ---------------------------------------------------------------------------

    def _get(self, path: str) -> httpx.Response:
        budget = _Budget(self._retry, self._monotonic)
        while True:
            budget.attempts += 1
            try:
                return self._send("GET", path)
            except DwsError as error:
                if not error.retryable:
                    raise
                self._pause_or_raise(error, budget)

    def _pause_or_raise(self, error: DwsError, budget: _Budget) -> None:
        """Sleep before the next attempt, or re-raise `error` if the policy allows no more."""
        if error.retry_after is not None:
            delay = error.retry_after
        else:
            delay = self._retry.backoff(budget.attempts - 1, self._uniform)
        if not budget.allows(delay):
            raise error
        self._sleep(delay)

    def _send(
        self, method: str, path: str, json: Any = None, timeout: httpx.Timeout | None = None
    ) -> httpx.Response:
        started = self._monotonic()
        try:
            response = self._http.request(
                method,
                path,
                json=json,
                # As the official SDK sends it; signed like every other header.
                headers=_JSON_BODY if json is not None else None,
                timeout=timeout or httpx.USE_CLIENT_DEFAULT,
            )
        except httpx.TransportError as exc:
            lost = transport_error(exc)
            self._log_attempt(method, path, None, None, started, lost)
            raise lost from exc
        request_id = response.headers.get("X-Request-Id")
        if response.is_success:
            self._log_attempt(method, path, response.status_code, request_id, started, None)
            return response
        error = DwsError.from_response(response)
        self._log_attempt(method, path, response.status_code, request_id, started, error)
        raise error

    def _log_attempt(
        self,
        method: str,
        path: str,
        status: int | None,
        request_id: str | None,
        started: float,
        error: DwsError | None,
    ) -> None:
        elapsed_ms = round((self._monotonic() - started) * 1000)
        fields = {
            "dws_method": method,
            "dws_path": path,
            "dws_status": status,
            "dws_request_id": request_id,
            "dws_elapsed_ms": elapsed_ms,
            "dws_error_code": error.error_code if error else None,
        }
        if error is None:
            self._log.info("DWS %s %s -> %s", method, path, status, extra=fields)
        else:
            self._log.warning("DWS %s %s failed: %s", method, path, error, extra=fields)
        if self._observer is not None:
            outcome = "ok" if error is None else str(error.error_code or type(error).__name__)
            self._observer(_call_name(method, path), outcome, error is None, request_id)

    def _parse(self, model: type[_Model], response: httpx.Response) -> _Model:
        try:
            return model.model_validate_json(response.content)
        except ValidationError as exc:
            problem = exc.errors(include_url=False, include_input=False)[0]
            where = ".".join(str(part) for part in problem["loc"]) or "body"
            raise MalformedResponse(
                f"{model.__name__} answer, {where}: {problem['msg']}",
                status=response.status_code,
                request_id=response.headers.get("X-Request-Id"),
            ) from None


def _path_id(value: str) -> str:
    """An id that goes into a path: DWS's ids are UUIDs or short hex, never anything that
    could change the path."""
    if not _PATH_ID_RE.fullmatch(value or ""):
        raise ValueError(f"{value!r} is not a DWS id")
    return value


def _call_name(method: str, path: str) -> str:
    """A name for the kind of call, without ids (for metrics): list, show, copy, delete, job,
    cluster, statistics or policy."""
    trimmed = path.rstrip("/")
    if trimmed.endswith("/linked-copy"):
        return "copy"
    if method == "DELETE":
        return "delete"
    for suffix, name in (
        ("/statistics", "statistics"),
        ("/snapshot-policies", "policy"),
        ("/snapshots", "list"),
    ):
        if trimmed.endswith(suffix):
            return name
    if "/job/" in trimmed:
        return "job"
    return "cluster" if "/clusters/" in trimmed else "show"
