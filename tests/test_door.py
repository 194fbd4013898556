"""The open door: what a client without Slack's signature can do to the server.

Slow clients must not starve Slack's signed requests or /healthz, and a huge body must be
refused before it is read. These run the real `snapcopy serve` (uvicorn in front of the app);
the limits themselves (header and body deadlines) are checked on the same front end with short
limits. Every loop here is bounded and stops by itself; only 127.0.0.1 is used.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.front import BufferedWsgi, Limits
from bot.front import server as front_server
from tests import slackreq
from tests.conftest import StartServer
from tests.harness import OUTSIDER, BotServer, ProcessServer

pytestmark = pytest.mark.process


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def headers(port: int, length: int | None, *, chunked: bool = False) -> bytes:
    lines = [
        "POST /slack/events HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Content-Type: application/x-www-form-urlencoded",
    ]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    if chunked:
        lines.append("Transfer-Encoding: chunked")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_answer(sock: socket.socket) -> bytes:
    """A whole HTTP answer: its head, then as many body bytes as Content-Length says."""
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = sock.recv(4096)
        if not chunk:
            return answer
        answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    length = re.search(rb"(?im)^content-length: *(\d+)", head)
    while length and len(body) < int(length[1]):
        chunk = sock.recv(4096)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def timed(call: Callable[[], Any]) -> float:
    started = time.monotonic()
    call()
    return time.monotonic() - started


@pytest.fixture
def served(start_process: StartServer, slack_only_env: dict[str, str]) -> ProcessServer:
    server = start_process(slack_only_env)
    assert isinstance(server, ProcessServer)
    return server


def test_fifty_slow_clients_do_not_starve_slack_or_health(served: ProcessServer) -> None:
    stop = threading.Event()
    sockets = [connect(served.port) for _ in range(50)]

    def trickle(sock: socket.socket) -> None:
        # Headers, then one byte of a 10 kB body now and then: a slowloris. Ends by itself.
        try:
            sock.sendall(headers(served.port, 10_000))
            deadline = time.monotonic() + 8
            while not stop.is_set() and time.monotonic() < deadline:
                sock.sendall(b"a")
                stop.wait(0.25)
        except OSError:
            pass  # the server may cut us off: that is allowed

    threads = [threading.Thread(target=trickle, args=(s,), daemon=True) for s in sockets]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.5)  # let all fifty get their headers in and start dribbling
        help_times, health_times = [], []
        for _ in range(5):
            help_times.append(timed(lambda: assert_help(served)))
            health_times.append(timed(lambda: assert_healthy(served)))
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
        for sock in sockets:
            sock.close()

    assert max(help_times) < 1.0, help_times
    assert max(health_times) < 1.0, health_times


def assert_help(server: BotServer) -> None:
    answer = server.command(OUTSIDER, "help")
    assert answer.status_code == 200 and "/snapcopy list" in answer.text


def assert_healthy(server: BotServer) -> None:
    assert server.get("/healthz").status_code == 200


def test_a_huge_unsigned_post_is_refused_before_two_megabytes_are_read(
    served: ProcessServer,
) -> None:
    before = rss_mb(served.process.pid)
    sock = connect(served.port)
    sock.sendall(headers(served.port, 2_000_000_000))
    sent, answer = 0, b""
    chunk = b"x" * 65536
    sock.settimeout(0.05)
    deadline = time.monotonic() + 10
    try:
        while time.monotonic() < deadline and sent < 2_000_000_000:
            try:
                answer = sock.recv(4096)
                break
            except TimeoutError:
                pass
            sock.sendall(chunk)
            sent += len(chunk)
    except (BrokenPipeError, ConnectionResetError):
        sock.settimeout(2)
        answer = sock.recv(4096) if not answer else answer
    finally:
        sock.close()

    assert answer and status_of(answer) == 413, answer[:200]
    assert sent < 2 * 1024 * 1024, f"{sent} bytes went in before the refusal"
    assert rss_mb(served.process.pid) - before < 20, "the worker's memory stayed flat"
    assert served.health()["ok"] is True


def test_a_long_body_without_a_length_is_cut_off_at_the_limit(served: ProcessServer) -> None:
    sock = connect(served.port)
    sock.sendall(headers(served.port, None, chunked=True))
    sent, answer = 0, b""
    piece = b"%x\r\n%s\r\n" % (65536, b"y" * 65536)
    sock.settimeout(0.05)
    try:
        while sent < 4 * 1024 * 1024:
            try:
                answer = sock.recv(4096)
                break
            except TimeoutError:
                pass
            sock.sendall(piece)
            sent += 65536
    except (BrokenPipeError, ConnectionResetError):
        pass
    finally:
        sock.close()

    assert answer and status_of(answer) == 413
    assert sent <= 2 * 1024 * 1024


# --- the deadlines, on the same front end with short limits --------------------------------------


@pytest.fixture
def quick_front() -> Iterator[int]:
    """A trivial WSGI app behind BufferedWsgi with half-second header and body deadlines."""

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        body = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"got %d bytes" % len(body)]

    limits = Limits(header_seconds=0.5, body_seconds=0.5, threads=2)
    front = front_server(BufferedWsgi(app, limits))  # type: ignore[arg-type]
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    thread = threading.Thread(target=front.run, kwargs={"sockets": [listening]}, daemon=True)
    thread.start()
    port = listening.getsockname()[1]
    deadline = time.monotonic() + 5
    while not front.started:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    try:
        yield port
    finally:
        front.should_exit = True
        thread.join(5)


def test_headers_that_never_end_are_cut_off(quick_front: int) -> None:
    sock = connect(quick_front)
    sock.sendall(b"POST /slack/events HTTP/1.1\r\nHost: x\r\n")
    started = time.monotonic()
    sock.settimeout(3)
    try:
        while time.monotonic() - started < 3:
            sock.sendall(b"X-Slow: 1\r\n")
            time.sleep(0.1)
    except (BrokenPipeError, ConnectionResetError):
        pass
    closed_after = time.monotonic() - started
    sock.close()

    assert closed_after < 2.0, "the connection was held open"


def test_a_body_that_does_not_arrive_in_time_is_a_408(quick_front: int) -> None:
    sock = connect(quick_front)
    sock.sendall(headers(quick_front, 100) + b"only part")
    sock.settimeout(3)

    answer = sock.recv(4096)
    sock.close()

    assert status_of(answer) == 408


def test_a_whole_request_reaches_the_app(quick_front: int) -> None:
    sock = connect(quick_front)
    sock.sendall(headers(quick_front, 5) + b"hello")
    sock.settimeout(3)

    answer = read_answer(sock)
    sock.close()

    assert status_of(answer) == 200 and answer.endswith(b"\r\n\r\ngot 5 bytes")
    assert b"content-length: 11" in answer.lower()


def test_signed_requests_still_work_through_the_front(served: ProcessServer) -> None:
    answer = served.send(slackreq.url_verification("door"))
    assert answer.status_code == 200
