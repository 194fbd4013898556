"""`snapcopy serve --workers N`: N serving processes on one port and one database.

One Python process runs one thread of Python at a time, so on a machine with several cores a
single `snapcopy serve` leaves all but one idle under load. Here the parent binds the port once
and forks N children before it starts any thread; each child builds its own runtime (store,
workers, front end) and accepts connections on the inherited socket, and the kernel hands each
connection to one of them. The children share the database exactly as several `snapcopy
serve` processes on one host always could: decisions are compare-and-sets, work is leased.

The parent only supervises: SIGTERM or SIGINT is passed on to every child and waited for (each
finishes its requests in flight and gives its work back); SIGHUP is passed on (each re-reads
the policy file); a child that dies is replaced, at most once a second.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

RESPAWN_SECONDS = 1.0


def listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listening = socket.socket(family, socket.SOCK_STREAM)
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listening.bind((host, port))
    listening.listen(2048)
    listening.set_inheritable(True)
    return listening


class Supervisor:
    """Forks `count` children that each run `child(listening)` and exit with its status."""

    def __init__(
        self,
        count: int,
        child: Callable[[socket.socket], int],
        listening: socket.socket,
        *,
        give_up_on: int,
    ) -> None:
        self.count = count
        self.give_up_on = give_up_on  # a child's exit status that says start-up cannot go on
        self.child = child
        self.listening = listening
        self.children: dict[int, float] = {}  # pid -> when it started
        self.stopping = False

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._stop)
        signal.signal(signal.SIGHUP, self._pass_on)
        log.info("serving with several processes", extra={"workers": self.count})
        for _ in range(self.count):
            self._fork()
        status = 0
        while self.children:
            try:
                pid, code = os.wait()
            except ChildProcessError:
                break
            except InterruptedError:
                continue
            started = self.children.pop(pid, None)
            if started is None:
                continue
            exit_code = os.waitstatus_to_exitcode(code)
            if exit_code == self.give_up_on and not self.stopping:
                # Its message is printed; the others would only say it again.
                self._stop(signal.SIGTERM, None)
                status = exit_code
                continue
            if self.stopping:
                status = status or (exit_code if exit_code > 0 else 0)
                continue
            log.error(
                "a serving process ended; starting another",
                extra={"pid": pid, "exit": exit_code},
            )
            time.sleep(max(0.0, RESPAWN_SECONDS - (time.monotonic() - started)))
            if not self.stopping:
                self._fork()
        return status

    def _fork(self) -> None:
        pid = os.fork()
        if pid == 0:  # the child: default signals, then serve until told to stop
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(sig, signal.SIG_DFL)
            code = 1
            try:
                code = self.child(self.listening)
            finally:
                logging.shutdown()
                os._exit(code)
        self.children[pid] = time.monotonic()

    def _stop(self, signum: int, frame: object) -> None:
        self.stopping = True
        self._pass_on(signal.SIGTERM, frame)

    def _pass_on(self, signum: int, frame: object) -> None:
        for pid in list(self.children):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass
