"""Closed-loop load: `concurrency` keep-alive connections, each sending its share of pre-built,
pre-signed HTTP/1.1 requests back to back and timing each one from write to last byte.

It runs in a process of its own (`LoadProcess`) so that the stand-ins answering the bot's
Web API calls in the benchmark process do not delay the clock that measures the bot. The client
is a few lines over asyncio streams rather than a full HTTP library because on two cores the
measuring side's own CPU time lands in the figures; the servers under test always send a
Content-Length, which is all this client relies on.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"
REQUEST_TIMEOUT = 30.0


@dataclass
class Batch:
    """What one batch measured; latencies are seconds, in completion order."""

    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: int = 0
    wall: float = 0.0

    def add(self, other: Batch) -> None:
        self.latencies += other.latencies
        self.statuses += other.statuses
        self.errors += other.errors
        self.wall += other.wall

    @property
    def failures(self) -> int:
        return self.errors + sum(n for status, n in self.statuses.items() if status != 200)


def raw_post(port: int, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    """One HTTP/1.1 POST, as bytes ready to write."""
    lines = [f"POST {path} HTTP/1.1", f"Host: {HOST}:{port}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def run_batch(port: int, requests: Sequence[bytes], concurrency: int) -> Batch:
    return asyncio.run(_run(port, requests, concurrency))


async def _run(port: int, requests: Sequence[bytes], concurrency: int) -> Batch:
    batch = Batch()
    pending = iter(requests)  # shared: each connection takes the next request when it is free
    started = time.perf_counter()
    workers = [_connection(port, pending, batch) for _ in range(min(concurrency, len(requests)))]
    await asyncio.gather(*workers)
    batch.wall = time.perf_counter() - started
    return batch


async def _connection(port: int, pending: Iterator[bytes], batch: Batch) -> None:
    streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    for raw in pending:
        try:
            if streams is None:
                streams = await asyncio.open_connection(HOST, port)
            started = time.perf_counter()
            status, keep = await asyncio.wait_for(_exchange(*streams, raw), REQUEST_TIMEOUT)
            batch.latencies.append(time.perf_counter() - started)
            batch.statuses[status] += 1
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError, KeyError):
            batch.errors += 1
            keep = False
        if not keep and streams is not None:
            streams[1].close()
            streams = None
    if streams is not None:
        streams[1].close()


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes
) -> tuple[int, bool]:
    """Send one request, read its whole answer; returns the status and whether to keep going."""
    writer.write(raw)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = dict(
        (name.strip().lower(), value.strip())
        for name, _, value in (line.partition(":") for line in lines[1:] if line)
    )
    await reader.readexactly(int(headers["content-length"]))
    return status, headers.get("connection", "").lower() != "close"


class LoadProcess:
    """One long-lived child process (`python -m bench.load`) that runs batches sent to it over
    its stdin and answers on its stdout. A fresh interpreter, not a fork: the parent runs server
    threads that a fork would copy in an undefined state."""

    def __init__(self) -> None:
        root = str(Path(__file__).resolve().parent.parent)
        path = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
        env = {**os.environ, "PYTHONPATH": path}
        self._child = subprocess.Popen(
            [sys.executable, "-m", "bench.load"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        self.run(0, [], 1)  # wait for the child to be up now, not inside the first measurement

    def run(self, port: int, requests: Sequence[bytes], concurrency: int) -> Batch:
        assert self._child.stdin is not None and self._child.stdout is not None
        pickle.dump((port, list(requests), concurrency), self._child.stdin)
        self._child.stdin.flush()
        latencies, statuses, errors, wall = pickle.load(self._child.stdout)
        return Batch(latencies, Counter(statuses), errors, wall)

    def close(self) -> None:
        if self._child.stdin is not None:
            self._child.stdin.close()  # end of input: the child returns
        try:
            self._child.wait(10)
        except subprocess.TimeoutExpired:
            self._child.kill()
            self._child.wait()


def _serve_batches() -> None:
    """The child's loop: a batch in, its figures out (plain data: no classes cross the pipe)."""
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while True:
        try:
            port, requests, concurrency = pickle.load(stdin)
        except EOFError:
            return
        batch = run_batch(port, requests, concurrency)
        pickle.dump((batch.latencies, dict(batch.statuses), batch.errors, batch.wall), stdout)
        stdout.flush()


if __name__ == "__main__":
    _serve_batches()
