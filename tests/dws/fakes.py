"""A recording fake of DWS for httpx.MockTransport, and helpers to build its answers."""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

PROJECT = "89cd04f168b84af6be287f71730fdb4b"
AK = "HPUAEXAMPLEACCESSKEY"
SK = "s3cr3t-SK-that-must-never-leak-0123456789"
SOURCE_ID = "4ca46bf1-5c61-48ff-b4f3-0ad4e5e3ba90"
NEW_ID = "52adf601-67f7-4639-bf71-061a61482869"
BASE_URL = "http://127.0.0.1:9"

Answer = httpx.Response | type[httpx.TransportError] | Callable[[httpx.Request], httpx.Response]


class FakeDws:
    """Answers each request with the next scripted answer and records the request.

    An answer is a response, an httpx transport error class (raised as if the network failed),
    or a function of the request. Running out of answers fails the test loudly.
    """

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self._script: deque[Answer] = deque()

    def queue(self, *answers: Answer) -> None:
        self._script.extend(answers)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        if not self._script:
            raise AssertionError(f"unexpected request: {request.method} {request.url.path}")
        answer = self._script.popleft()
        if isinstance(answer, type):
            raise answer("scripted failure", request=request)
        if isinstance(answer, httpx.Response):
            return answer
        return answer(request)

    @property
    def calls(self) -> list[tuple[str, str]]:
        """(method, path relative to the project) of every request, in order."""
        prefix = f"/v1.0/{PROJECT}"
        return [(r.method, r.url.path.removeprefix(prefix)) for r in self.requests]

    @property
    def unused(self) -> int:
        return len(self._script)


@dataclass
class FakeClock:
    """monotonic() and sleep() for the client: sleeping moves time on instantly."""

    now: float = 1000.0
    sleeps: list[float] = field(default_factory=list)

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def dws_error(
    status: int,
    code: str | None = "DWS.0001",
    message: str = "Invalid parameter.",
    *,
    request_id: str = "req-error",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    body: dict[str, Any] = {"error_msg": message}
    if code is not None:
        body["error_code"] = code
    return httpx.Response(
        status, json=body, headers={"X-Request-Id": request_id, **(headers or {})}
    )


def snapshot_json(
    name: str = "nightly-copy",
    snapshot_id: str = NEW_ID,
    status: str = "AVAILABLE",
    type: str = "MANUAL",
    **extra: Any,
) -> dict[str, Any]:
    return {
        "id": snapshot_id,
        "name": name,
        "description": "",
        "started": "2024-06-01T02:00:00Z",
        "finished": None,
        "size": 12.5,
        "status": status,
        "type": type,
        "cluster_id": "6f1c2b9e-3a47-4d8e-9b6a-1e2f3c4d5a6b",
        **extra,
    }


def listing(*snapshots: dict[str, Any], request_id: str = "req-list") -> httpx.Response:
    body = {"snapshots": list(snapshots), "count": len(snapshots)}
    return httpx.Response(200, json=body, headers={"X-Request-Id": request_id})


def one(snapshot: dict[str, Any], request_id: str = "req-get") -> httpx.Response:
    return httpx.Response(200, json={"snapshot": snapshot}, headers={"X-Request-Id": request_id})


def copied(snapshot_id: str = NEW_ID, request_id: str = "req-copy") -> httpx.Response:
    return httpx.Response(
        200, json={"snapshot_id": snapshot_id}, headers={"X-Request-Id": request_id}
    )


def body_of(request: httpx.Request) -> Any:
    return json.loads(request.content)
