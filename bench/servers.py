"""The two servers under test as real processes: `python -m bot serve` and the bare Bolt app.

Both are started the way production starts snapcopy (a command line and environment variables,
loopback only), in their own process group, and timed from spawn to the first healthy
`GET /healthz`.
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from tests.harness import free_port, subprocess_env

HOST = "127.0.0.1"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
# Fine enough to time a start-up of about a second, coarse enough not to steal its CPU.
HEALTH_POLL_SECONDS = 0.005

# Settings from the machine must not reach the servers: the benchmark sets all of them.
_ISOLATED = re.compile(r"(SLACK_|HUAWEICLOUD_|DWS_|SNAPCOPY_).*|PORT")


@dataclass
class Served:
    """A running server: its master process, its port and how long it took to be healthy."""

    name: str
    process: subprocess.Popen[bytes]
    port: int
    log: IO[bytes]
    started_in: float = 0.0

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def worker_pid(self) -> int:
        """The process that runs the app: gunicorn's single worker (the master's only child),
        or the process itself where there is no master (snapcopy serve)."""
        children = _children(self.process.pid)
        return children[0] if children else self.process.pid

    def rss_mb(self) -> tuple[float, float]:
        """Resident memory (VmRSS) of the master and of the worker, in MB (10^6 bytes); a
        server of one process has no master (0)."""
        worker = self.worker_pid()
        if worker == self.process.pid:
            return 0.0, vm_rss_mb(worker)
        return vm_rss_mb(self.process.pid), vm_rss_mb(worker)

    def stop(self) -> None:
        """SIGTERM and wait, as a platform stops a dyno; SIGKILL the group if it lingers."""
        try:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    os.killpg(self.process.pid, signal.SIGKILL)
                    self.process.wait()
        finally:
            self.log.close()


def launch(name: str, argv: Sequence[str], env: Mapping[str, str | None], *, cwd: Path) -> Served:
    """Start `python <argv> --host 127.0.0.1 --port N` and wait until /healthz answers 200."""
    port = free_port()
    command = [sys.executable, *argv, "--host", HOST, "--port", str(port)]
    cleared: dict[str, str | None] = {key: None for key in os.environ if _ISOLATED.fullmatch(key)}
    log = (cwd / f"{name}-{port}.log").open("ab")
    started = time.perf_counter()
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env=subprocess_env({**cleared, **env}),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    served = Served(name, process, port, log)
    try:
        _wait_healthy(served)
    except BaseException:
        served.stop()
        raise
    served.started_in = time.perf_counter() - started
    return served


def _wait_healthy(served: Served) -> None:
    deadline = time.perf_counter() + START_TIMEOUT
    while time.perf_counter() < deadline:
        if served.process.poll() is not None:
            raise RuntimeError(
                f"{served.name} exited with {served.process.returncode} before it was healthy:\n"
                + _tail(served)
            )
        if _healthy(served.port):
            return
        time.sleep(HEALTH_POLL_SECONDS)
    raise RuntimeError(f"{served.name} was not healthy within {START_TIMEOUT} s:\n" + _tail(served))


def _tail(served: Served, size: int = 3000) -> str:
    served.log.flush()
    return Path(served.log.name).read_text(errors="replace")[-size:]


def _healthy(port: int) -> bool:
    connection = http.client.HTTPConnection(HOST, port, timeout=1.0)
    try:
        connection.request("GET", "/healthz")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
        return [int(child) for child in text.split()]
    except OSError:
        pass  # Kernels without CONFIG_PROC_CHILDREN: look for the parent pid instead.
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process (all its threads) has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def vm_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024 / 1e6
    return 0.0
