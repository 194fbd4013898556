"""What a database is and whether its schema is current: for `snapcopy db status` and doctor.

Nothing here migrates: it opens the database, reads its schema version and compares it with
the migrations this snapcopy knows (bot/store/schema.py), and on PostgreSQL also reads the
server's version and the privileges snapcopy needs.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field

from bot.database import Database, PostgresUrl
from bot.errors import StoreUnavailable
from bot.store.schema import MIGRATIONS

# What snapcopy does to its tables: on PostgreSQL each must be granted.
NEEDED = ("SELECT", "INSERT", "UPDATE", "DELETE")
TABLES = ("requests", "events", "approvals", "delete_approvals", "work", "deliveries", "replays")


@dataclass(frozen=True)
class Status:
    engine: str
    where: str
    version: int
    known: int = len(MIGRATIONS)
    server: str = ""
    missing_privileges: list[str] = field(default_factory=list)

    @property
    def pending(self) -> int:
        return max(0, self.known - self.version)

    @property
    def too_new(self) -> bool:
        return self.version > self.known

    def lines(self) -> list[str]:
        """What `snapcopy db status` prints."""
        out = [f"engine: {self.engine}", f"database: {self.where}"]
        if self.server:
            out.append(f"server: {self.server}")
        out.append(f"schema version: {self.version} (this snapcopy knows {self.known})")
        if self.too_new:
            out.append(
                f"The database is newer than this snapcopy: its schema is version "
                f"{self.version}, and this snapcopy knows up to {self.known}. Run the release "
                "that migrated it, or a newer one."
            )
        elif self.pending:
            out.append(f"migrations pending: {self.pending} (applied at the next start)")
        else:
            out.append("migrations pending: none")
        if self.missing_privileges:
            out.append("missing privileges: " + ", ".join(self.missing_privileges))
        return out


def status(database: Database) -> Status:
    """The database's engine, schema version and, on PostgreSQL, server and privileges.
    Raises StoreUnavailable when it cannot be read."""
    if isinstance(database, PostgresUrl):
        return _postgres(database)
    path, server = database.path, f"SQLite {sqlite3.sqlite_version}"
    if not path.exists():
        return Status("sqlite", f"{path} (no file yet: made at the first start)", 0, server=server)
    try:
        # Read-only, by a URI so that no file is made and nothing is written.
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
        try:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error as error:
        raise StoreUnavailable("unavailable", f"{path}: {error}") from error
    return Status("sqlite", str(path), version, server=server)


def _postgres(database: PostgresUrl) -> Status:
    from bot.store.postgres import PostgresDb, PostgresEngine
    from bot.store.schema_postgres import version

    engine = PostgresEngine(database, pool_size=1)
    with engine.connect() as conn, engine.translated():
        db = PostgresDb(conn)
        server = str(db.execute("SHOW server_version").fetchone()[0])
        found = version(db)
        missing = [
            f"{privilege} on {table}"
            for table in TABLES
            for privilege in NEEDED
            if found
            and not db.execute("SELECT has_table_privilege(?, ?)", [table, privilege]).fetchone()[0]
        ]
        if (
            not found
            and not db.execute(
                "SELECT has_schema_privilege(current_schema(), 'CREATE')"
            ).fetchone()[0]
        ):
            missing.append("CREATE on the schema (to make the tables)")
    return Status(
        "postgresql",
        database.shown,
        found,
        server=f"PostgreSQL {server}",
        missing_privileges=missing,
    )
