"""The open door: what a client without Slack's signature can do to the server.

Slow clients, idle sockets by the thousand and requests of 200,000 headers must not starve
Slack's signed requests or /healthz, and a huge body or head must be refused before it is read
(issue #24). The attacks run against the real `snapcopy serve` (uvicorn in front of the app);
the limits themselves (deadlines, sizes, connection caps) are checked on the same front end with
small limits. Every loop here is bounded and stops by itself; only 127.0.0.1 is used.

The bounds on time are the issue's goals (1 s; 100 ms for the header attacks) widened where a
loaded two-core machine could miss them without anything being wrong; what the front end did
before (503 for every signed request, seconds of stalled event loop) is far past all of them.
bench/door.py measures the exact figures.
"""

from __future__ import annotations

import re
import resource
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot import door, front
from bot.door import FileBudget, file_budget, raise_open_files_limit
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


def echo_app(gate: threading.Event) -> Callable[..., list[bytes]]:
    """Answers with the size of the body; a request to /wait first waits for `gate`."""

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        if environ["PATH_INFO"] == "/wait":
            gate.wait(5)
        body = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"got %d bytes" % len(body)]

    return app


StartFront = Callable[[Limits], int]


@pytest.fixture
def start_front() -> Iterator[StartFront]:
    """A factory: `start_front(limits)` serves `echo_app` behind BufferedWsgi on a loopback
    port and returns the port; requests to /wait are held until the test ends."""
    gate = threading.Event()
    running: list[tuple[Any, threading.Thread]] = []

    def start(limits: Limits) -> int:
        served = front_server(BufferedWsgi(echo_app(gate), limits))  # type: ignore[arg-type]
        listening = socket.socket()
        listening.bind(("127.0.0.1", 0))
        thread = threading.Thread(target=served.run, kwargs={"sockets": [listening]}, daemon=True)
        thread.start()
        running.append((served, thread))
        deadline = time.monotonic() + 5
        while not served.started:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        port: int = listening.getsockname()[1]
        return port

    try:
        yield start
    finally:
        gate.set()
        for served, thread in running:
            served.should_exit = True
            thread.join(5)


@pytest.fixture
def quick_front(start_front: StartFront) -> int:
    """The echo app behind BufferedWsgi with half-second header and body deadlines."""
    return start_front(Limits(header_seconds=0.5, body_seconds=0.5, threads=2))


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


# --- issue #24: idle sockets by the thousand -----------------------------------------------------

IDLE_SOCKETS = 2000
REOPENED_SOCKETS = 1100
SIGNED_LIMIT = 1.0  # seconds, the bound: Slack's own deadline is 3 s


def enough_open_files(needed: int) -> None:
    """Raise this process's soft RLIMIT_NOFILE to `needed`, or skip: the hard limit is the
    machine's, and these attacks need that many sockets of our own."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {needed} sockets this attack holds")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def open_silent(port: int) -> socket.socket | None:
    """A connection that never sends a byte; None if the server's backlog is full."""
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=2)
    except OSError:
        return None
    sock.setblocking(False)
    return sock


def closed_by_server(sock: socket.socket) -> bool:
    """Without waiting: has the server closed (or reset) this connection?"""
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


@dataclass
class Signed:
    """Signed `/snapcopy help` and `GET /healthz`, each on a new connection (as a new delivery
    from Slack may come), timed in seconds; anything but a 200 is a failure."""

    server: BotServer
    times: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def round(self) -> None:
        request = slackreq.slash_command(OUTSIDER, "help")
        headers = request.signed_headers(self.server.signing_secret)
        self._timed("POST", "/slack/events", request.body, headers)
        self._timed("GET", "/healthz")

    def _timed(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> None:
        started = time.monotonic()
        try:
            with httpx.Client(base_url=self.server.url, timeout=5, trust_env=False) as http:
                answer = http.request(method, path, content=body, headers=headers)
            if answer.status_code != 200:
                self.failures.append(f"{path}: {answer.status_code}")
        except httpx.HTTPError as error:
            self.failures.append(f"{path}: {error!r}")
        self.times.append(time.monotonic() - started)

    def rounds(self, count: int, pause: float = 0.1) -> None:
        for _ in range(count):
            self.round()
            time.sleep(pause)


def door_limits(server: BotServer) -> dict[str, Any]:
    """What the server logged at start about its connection caps."""
    return next(line for line in server.log_records() if line.get("message") == "door limits")


def test_two_thousand_idle_sockets_do_not_lock_slack_out(served: ProcessServer) -> None:
    enough_open_files(IDLE_SOCKETS + 200)
    per_client = door_limits(served)["max_connections_per_client"]
    held: list[socket.socket] = []
    signed = Signed(served)
    try:
        for _ in range(IDLE_SOCKETS):
            sock = open_silent(served.port)
            if sock is not None:
                held.append(sock)
        # The closes the server made reach us: within seconds, however busy the machine.
        deadline = time.monotonic() + 10
        while True:
            closed = sum(1 for sock in held if closed_by_server(sock))
            if closed >= IDLE_SOCKETS - per_client or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        signed.rounds(10)
    finally:
        for sock in held:
            sock.close()

    assert len(held) == IDLE_SOCKETS, "the server accepted every connection (and then chose)"
    # One client address holds at most its share; the oldest idle ones made room.
    assert closed >= IDLE_SOCKETS - per_client, (closed, per_client)
    assert not signed.failures, signed.failures
    assert max(signed.times) < SIGNED_LIMIT, signed.times


@contextmanager
def reopening(port: int, count: int, seconds: float) -> Iterator[list[int]]:
    """`count` silent sockets on a thread, each re-opened as soon as the server closes it, for
    at most `seconds`; yields a one-item list that counts the re-openings."""
    reopened = [0]
    stop = threading.Event()

    def churn() -> None:
        deadline = time.monotonic() + seconds
        with selectors.DefaultSelector() as selector:
            missing = count
            while not stop.is_set() and time.monotonic() < deadline:
                while missing:
                    sock = open_silent(port)
                    if sock is None:
                        break
                    selector.register(sock, selectors.EVENT_READ)
                    missing -= 1
                for key, _ in selector.select(timeout=0.05):
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    if closed_by_server(sock):
                        selector.unregister(sock)
                        sock.close()
                        reopened[0] += 1
                        missing += 1
            for key in list(selector.get_map().values()):
                key.fileobj.close()  # type: ignore[union-attr]

    thread = threading.Thread(target=churn, daemon=True)
    thread.start()
    try:
        yield reopened
    finally:
        stop.set()
        thread.join(seconds + 5)


def test_idle_sockets_reopened_as_they_are_closed_do_not_lock_slack_out(
    served: ProcessServer,
) -> None:
    enough_open_files(REOPENED_SOCKETS + 200)
    signed = Signed(served)
    with reopening(served.port, REOPENED_SOCKETS, seconds=15) as reopened:
        time.sleep(1.0)  # all of them open, and the churn under way
        signed.rounds(20)

    # More sockets than one address may hold: the server kept closing the oldest idle one.
    assert reopened[0] > 0, "the attack never had a socket closed: it did not test the cap"
    assert not signed.failures, signed.failures
    assert max(signed.times) < SIGNED_LIMIT, signed.times
    assert served.health()["ok"] is True


# --- issue #24: repeated headers -----------------------------------------------------------------

REPEATED_HEADERS = 200_000
# The goal is 100 ms for both; before, the refusal took 4.8 s and every signed request
# waited about 4.6 s.
REFUSAL_LIMIT = 0.5
SIGNED_UNDER_HEADERS_LIMIT = 0.5


def repeated_headers(port: int, copies: int = REPEATED_HEADERS) -> bytes:
    head = f"POST /slack/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n".encode()
    return head + b"X-Repeat: aaaaaaa\r\n" * copies + b"Content-Length: 0\r\n\r\n"


def send_until_answered(port: int, raw: bytes, limit: float = 10.0) -> tuple[float, bytes]:
    """Write `raw` while watching for an answer, which may come before it is all written;
    returns the seconds to the answer's first bytes and those bytes (b"" if none came)."""
    sock = connect(port)
    sock.setblocking(False)
    view, sent, answer = memoryview(raw), 0, b""
    started = time.monotonic()
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
            while not answer and time.monotonic() - started < limit:
                if sent == len(raw):
                    selector.modify(sock, selectors.EVENT_READ)
                for _, events in selector.select(timeout=0.05):
                    if events & selectors.EVENT_READ:
                        try:
                            answer = sock.recv(4096) or b"closed"
                        except OSError:
                            answer = b"reset"
                        break
                    try:
                        sent += sock.send(view[sent : sent + 65536])
                    except BlockingIOError:
                        pass
    finally:
        sock.close()
    return time.monotonic() - started, answer


def test_two_hundred_thousand_repeated_headers_are_refused_at_once(
    served: ProcessServer,
) -> None:
    raw = repeated_headers(served.port)
    signed = Signed(served)
    signed.rounds(3)  # the first requests' one-off costs, before memory is read
    before = rss_mb(served.process.pid)
    answers: list[tuple[float, bytes]] = []

    def flood() -> None:
        for _ in range(5):
            answers.append(send_until_answered(served.port, raw))

    attacker = threading.Thread(target=flood, daemon=True)
    attacker.start()
    signed.times.clear()
    while attacker.is_alive() and len(signed.times) < 200:  # bounded however long it takes
        signed.round()
    attacker.join(60)
    grown = rss_mb(served.process.pid) - before

    assert len(answers) == 5
    assert all(status_of(answer) == 431 for _, answer in answers), [a[:40] for _, a in answers]
    assert max(seconds for seconds, _ in answers) < REFUSAL_LIMIT, answers
    assert not signed.failures, signed.failures
    assert signed.times and max(signed.times) < SIGNED_UNDER_HEADERS_LIMIT, signed.times
    assert grown < 10, f"the server's memory grew {grown:.1f} MB"


def head(port: int, extra: list[str]) -> bytes:
    lines = ["GET /check HTTP/1.1", f"Host: 127.0.0.1:{port}", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@pytest.mark.parametrize(
    ("extra", "status"),
    [
        ([f"X-Many-{n}: v" for n in range(98)], 200),  # with Host: 99 headers
        ([f"X-Many-{n}: v" for n in range(100)], 431),  # 101
        (["X-Big: " + "b" * (30 * 1024)], 200),
        (["X-Big: " + "b" * (33 * 1024)], 431),
        ([f"X-Part-{n}: " + "p" * 1000 for n in range(40)], 431),  # 40 KiB in 41 headers
    ],
    ids=["99-headers", "101-headers", "30-kib", "33-kib", "40-kib-in-pieces"],
)
def test_a_head_over_100_headers_or_32_kib_is_a_431(
    quick_front: int, extra: list[str], status: int
) -> None:
    sock = connect(quick_front)
    sock.sendall(head(quick_front, extra))
    sock.settimeout(3)

    answer = read_answer(sock)
    sock.close()

    assert status_of(answer) == status, answer[:200]


def test_a_head_that_arrives_in_pieces_is_counted_whole(quick_front: int) -> None:
    sock = connect(quick_front)
    raw = head(quick_front, ["X-Big: " + "b" * (40 * 1024)])
    for start in range(0, len(raw), 1000):  # 41 small reads: each within the limit
        try:
            sock.sendall(raw[start : start + 1000])
        except (BrokenPipeError, ConnectionResetError):
            break
    sock.settimeout(3)

    answer = sock.recv(4096)
    sock.close()

    assert status_of(answer) == 431


def test_repeated_headers_reach_the_app_joined_in_order() -> None:
    scope = {
        "method": "GET",
        "path": "/",
        "headers": [(b"x-a", b"1"), (b"x-b", b"z"), (b"x-a", b"2"), (b"x-a", b"3")],
    }

    environ = front._environ(scope, b"")

    assert environ["HTTP_X_A"] == "1,2,3" and environ["HTTP_X_B"] == "z"


def test_the_environ_of_many_repeated_headers_is_built_in_linear_time() -> None:
    # Regression (#24): joining each repeat onto the last took 4.8 s for 200,000 of them, on
    # the event loop. The head limits refuse such a request now; this keeps the environ linear.
    scope = {"method": "GET", "path": "/", "headers": [(b"x-repeat", b"aaaaaaa")] * 200_000}

    started = time.monotonic()
    environ = front._environ(scope, b"")

    assert time.monotonic() - started < 1.0
    assert len(environ["HTTP_X_REPEAT"]) == 8 * 200_000 - 1


# --- the caps, on the front end with small limits ------------------------------------------------


def closed_within(sock: socket.socket, seconds: float) -> bool:
    sock.settimeout(seconds)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except OSError:
        return True


def get(sock: socket.socket, port: int, path: str = "/check") -> int:
    sock.settimeout(5)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    return status_of(read_answer(sock))


def open_in_order(port: int, count: int) -> list[socket.socket]:
    sockets = []
    for _ in range(count):
        sockets.append(connect(port))
        time.sleep(0.05)  # accepted in this order
    return sockets


@pytest.mark.parametrize(
    ("total", "per_client"), [(4, 8), (8, 4)], ids=["total-cap", "per-client-cap"]
)
def test_at_a_cap_the_oldest_idle_connection_makes_room(
    start_front: StartFront, total: int, per_client: int
) -> None:
    limits = Limits(max_connections=total, max_connections_per_client=per_client)
    port = start_front(limits)
    first, *others = open_in_order(port, 4)

    newcomer = connect(port)

    assert closed_within(first, 2)
    assert not any(closed_within(sock, 0.1) for sock in others)
    assert get(newcomer, port) == 200
    for sock in [first, *others, newcomer]:
        sock.close()


def test_a_connection_with_a_request_in_the_app_is_not_closed_for_room(
    start_front: StartFront,
) -> None:
    port = start_front(Limits(max_connections=4, max_connections_per_client=4))
    busy, idle, *others = open_in_order(port, 4)
    busy.sendall(f"GET /wait HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    time.sleep(0.2)  # the request is in the app, waiting

    newcomer = connect(port)

    assert closed_within(idle, 2)
    assert not closed_within(busy, 0.1)
    for sock in [busy, idle, *others, newcomer]:
        sock.close()


def test_when_every_connection_is_busy_a_newcomer_is_closed(start_front: StartFront) -> None:
    port = start_front(Limits(threads=2, max_connections=3, max_connections_per_client=3))
    busy = open_in_order(port, 3)
    for sock in busy:
        sock.sendall(f"GET /wait HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    time.sleep(0.2)

    newcomer = connect(port)

    assert closed_within(newcomer, 2)
    assert not any(closed_within(sock, 0.1) for sock in busy)
    for sock in [*busy, newcomer]:
        sock.close()


def test_whole_requests_past_the_app_limit_get_503_at_once(start_front: StartFront) -> None:
    port = start_front(Limits(threads=1, max_requests=2))
    waiting = [connect(port), connect(port)]
    for sock in waiting:
        sock.sendall(f"GET /wait HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    time.sleep(0.2)  # one runs, one waits for the thread
    third = connect(port)

    started = time.monotonic()
    status = get(third, port, "/wait")

    assert status == 503 and time.monotonic() - started < 1.0
    for sock in [*waiting, third]:
        sock.close()


# --- the open-files budget -----------------------------------------------------------------------


def fake_limits(monkeypatch: pytest.MonkeyPatch, soft: int, hard: int) -> list[tuple[int, int]]:
    """RLIMIT_NOFILE as (soft, hard); returns the list of limits set through setrlimit."""
    current = [(soft, hard)]
    set_to: list[tuple[int, int]] = []

    def setrlimit(which: int, limits: tuple[int, int]) -> None:
        set_to.append(limits)
        current[0] = limits

    monkeypatch.setattr(door.resource, "getrlimit", lambda which: current[0])
    monkeypatch.setattr(door.resource, "setrlimit", setrlimit)
    return set_to


@pytest.mark.parametrize(
    ("soft", "hard", "connections", "per_client"),
    [
        (1024, 4096, 1024 - door.RESERVED_FILES, (1024 - door.RESERVED_FILES) // 4),
        (20000, 20000, door.MAX_CONNECTIONS, door.MAX_CONNECTIONS // 4),
        (100, 100, door.MIN_CONNECTIONS, door.MIN_CONNECTIONS),
    ],
)
def test_the_connection_caps_follow_the_open_files_limit(
    monkeypatch: pytest.MonkeyPatch, soft: int, hard: int, connections: int, per_client: int
) -> None:
    fake_limits(monkeypatch, soft, hard)

    budget = file_budget()

    assert budget == FileBudget(soft, hard, connections, per_client)


def test_explicit_connection_caps_win_over_the_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_limits(monkeypatch, 1024, 4096)

    budget = file_budget(max_connections=50, max_per_client=10)

    assert (budget.connections, budget.per_client) == (50, 10)


@pytest.mark.parametrize(
    ("soft", "hard", "raised_to"),
    [
        (1024, 524288, door.MAX_CONNECTIONS + door.RESERVED_FILES),
        (1024, 2048, 2048),  # as far as the hard limit allows
        (65536, 65536, None),  # never lowered
    ],
)
def test_the_soft_open_files_limit_is_raised_toward_the_hard_one(
    monkeypatch: pytest.MonkeyPatch, soft: int, hard: int, raised_to: int | None
) -> None:
    set_to = fake_limits(monkeypatch, soft, hard)

    raise_open_files_limit()

    assert set_to == ([(raised_to, hard)] if raised_to else [])


def test_the_server_logs_its_door_limits_at_start(served: ProcessServer) -> None:
    limits = door_limits(served)

    assert limits["max_connections"] >= limits["max_connections_per_client"] > 0
    assert limits["open_files_soft"] >= limits["max_connections"] + door.RESERVED_FILES
    assert (limits["max_headers"], limits["max_header_bytes"]) == (100, 32 * 1024)
