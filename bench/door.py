"""The open door under attack: Slack's signed requests and /healthz while 50 clients trickle.

Each slow client sends a request's headers, then one byte of its body every quarter second
(a slowloris; no signature needed). Meanwhile signed `/snapcopy help` commands and `GET /healthz`
are sent one at a time and timed, with a 5 s limit (past it, Slack has given up). Run against
snapcopy (uvicorn in front, bot/front.py) and against the same Bolt app served the way snapcopy
was before that front end (gunicorn, gthread, 8 threads), which is what the front replaced.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx

from bench import payloads
from bench.servers import HOST, Served
from bench.standins import WatchedSlack
from bench.stats import Summary
from bot.server import EVENTS_PATH, HEALTH_PATH
from tests.harness import REQUESTER

SLOW_CLIENTS = 50
ANSWER_LIMIT = 5.0


@dataclass(frozen=True)
class DoorResult:
    server: str
    help: Summary
    health: Summary
    timeouts: int


@contextmanager
def slowloris(port: int, clients: int = SLOW_CLIENTS, seconds: float = 30.0) -> Iterator[None]:
    stop = threading.Event()

    def trickle() -> None:
        try:
            with socket.create_connection((HOST, port), timeout=5) as sock:
                sock.sendall(
                    (
                        f"POST {EVENTS_PATH} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
                        "Content-Type: application/x-www-form-urlencoded\r\n"
                        "Content-Length: 100000\r\n\r\n"
                    ).encode()
                )
                deadline = time.monotonic() + seconds
                while not stop.is_set() and time.monotonic() < deadline:
                    sock.sendall(b"a")
                    stop.wait(0.25)
        except OSError:
            pass  # cut off by the server: that is what a good server does

    threads = [threading.Thread(target=trickle, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)  # every slow client has its headers in
    try:
        yield
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)


def measure(served: Served, slack: WatchedSlack, rounds: int) -> DoorResult:
    help_times: list[float] = []
    health_times: list[float] = []
    timeouts = 0
    with slowloris(served.port), httpx.Client(
        base_url=served.url, timeout=ANSWER_LIMIT, trust_env=False
    ) as http:
        for serial in range(rounds):
            request = payloads.command(slack, REQUESTER, "help", serial)
            for times, send in (
                (
                    help_times,
                    lambda r=request: http.post(
                        EVENTS_PATH, content=r.body, headers=payloads.signed_headers(r)
                    ),
                ),
                (health_times, lambda: http.get(HEALTH_PATH)),
            ):
                started = time.perf_counter()
                try:
                    send()
                    times.append(time.perf_counter() - started)
                except httpx.TimeoutException:
                    timeouts += 1
                    times.append(ANSWER_LIMIT)
    return DoorResult(served.name, Summary.of(help_times), Summary.of(health_times), timeouts)
