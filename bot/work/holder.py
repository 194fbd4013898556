"""Who holds a lease, and whether that holder is certainly dead.

A holder's name says where it runs and which process it is, colon-separated:

    host : pid : pid namespace : boot id : process start : instance

- a pid means something only inside its pid namespace (two containers on one volume may both
  run as pid 7) and only during one boot of one kernel (the boot id);
- the process's start time (clock ticks since boot) tells a reused pid from the process that
  held it;
- the instance is random, so two holders never share a name, even in one process.

A lease is given back early only when its holder is certainly dead: same host, same boot, same
pid namespace, and that pid gone, a zombie, or now another process. Anything else (another
host or container, a /proc that is not this namespace's, a name of an older version) waits for
the lease to run out: "I cannot see it" is not "it is dead".
"""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True)
class Holder:
    host: str
    pid: int
    pid_namespace: str  # "" when unknown: such a holder is never declared dead
    boot: str
    start: str
    instance: str

    @property
    def name(self) -> str:
        parts = (self.host, str(self.pid), self.pid_namespace, self.boot, self.start)
        return ":".join((*parts, self.instance))

    @classmethod
    def parse(cls, name: str) -> Holder | None:
        """The holder a name stands for; None for names of older versions or other shapes."""
        parts = name.split(":")
        if len(parts) != 6 or not parts[1].isdigit():
            return None
        host, pid, namespace, boot, start, instance = parts
        return cls(host, int(pid), namespace, boot, start, instance)


def this_process() -> Holder:
    """A new holder name for this process (one per runtime)."""
    pid = os.getpid()
    namespace = _own_pid_namespace()
    return Holder(
        host=socket.gethostname().replace(":", "_"),
        pid=pid,
        pid_namespace=namespace,
        boot=_read(PROC / "sys/kernel/random/boot_id") if namespace else "",
        start=(_start_time(pid) or "") if namespace else "",
        instance=secrets.token_hex(4),
    )


def certainly_dead(name: str, me: Holder | None = None) -> bool:
    """Whether the holder named `name` is a process that certainly no longer runs."""
    holder = Holder.parse(name)
    me = me or this_process()
    if holder is None or not (holder.pid_namespace and holder.boot and holder.start):
        return False
    same_place = (holder.host, holder.pid_namespace, holder.boot) == (
        me.host,
        me.pid_namespace,
        me.boot,
    )
    if not same_place:
        return False
    if holder.pid == me.pid:
        return holder.start != me.start  # this pid is ours now: the old holder is gone
    return _gone(holder.pid, holder.start)


def _gone(pid: int, start: str) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # somebody else's process: look at /proc
    stat = _stat(pid)
    if stat is None:
        return True  # it ended between kill(0) and here
    return stat[0] == "Z" or stat[19] != start  # unreaped, or the pid was reused


def _own_pid_namespace() -> str:
    """This process's pid namespace, if /proc describes it; "" otherwise (e.g. a container
    whose /proc is the host's), and then pids seen there mean nothing to us."""
    try:
        if os.readlink(PROC / "self") != str(os.getpid()):
            return ""
        return str(os.stat(PROC / "self/ns/pid").st_ino)
    except OSError:
        return ""


def _start_time(pid: int) -> str | None:
    stat = _stat(pid)
    return stat[19] if stat else None


def _stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat after the command name: state first, start time 20th."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = text.rpartition(")")[2].split()
    return fields if len(fields) > 19 else None


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""
