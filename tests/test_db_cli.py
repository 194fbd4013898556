"""`snapcopy db status` and `snapcopy db copy`, on real SQLite files and a real PostgreSQL."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bot import cli
from bot.domain import NewRequest, State
from bot.store import Counted, Store
from bot.store.copying import TABLES
from bot.store.schema import MIGRATIONS
from bot.work.queue import Queue, Work
from tests.harness import subprocess_env

PASSWORD = "Copy-s3cret"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(["db", *args])
    out, err = capsys.readouterr()
    return code, out, err


def new(name: str) -> NewRequest:
    return NewRequest(
        source_snapshot_id="4ca46bf1-5c61-48ff-b4f3-0ad4e5e3ba90",
        backup_name=name,
        requested_by="U0REQUEST",
        channel_id="C0INCIDENT",
        approvals_needed=2,
        approvers=["U0APPROVE", "U0OTHER"],
        source_size=180.4,
    )


def fill(store: Store) -> None:
    """Requests in several states, with events, approvals, owed work and a replay."""
    waiting = store.create(
        new("waiting"),
        state=State.PENDING_APPROVAL,
        expires_at=None,
        actor="U0REQUEST",
        work=[Work(Queue.SLACK, "announce")],
    )
    store.count_approval(
        waiting.id,
        "U0APPROVE",
        lambda users, n: Counted("approval", {}, {}, []),
        waiting=lambda request: request.state == State.PENDING_APPROVAL,
    )
    copying = store.create(
        new("copying"),
        state=State.APPROVED,
        expires_at=None,
        actor="U0REQUEST",
        work=[Work(Queue.DWS, "copy")],
    )
    store.transition(
        copying.id,
        allowed_from=[State.APPROVED],
        to=State.COPYING,
        event="copy_started",
        actor=None,
    )
    store.add_dws_request_id(copying.id, "dws-1")
    store.add_work(waiting.id, [Work(Queue.SLACK, "remind", {"in": 3})])
    store.record_event(None, "group_members_changed", None, {"group": "S0ONCALL"})
    store.first_delivery("Ev1")
    store.first_sight("v0=sig", "2030-01-01T00:00:00.000Z", wait=1.0)
    store.remember_answer("v0=sig", (200, "application/json", b"\x00{}"), wait=1.0)


def rows(database: str, table: str) -> list[tuple[Any, ...]]:
    store = Store(database)
    try:
        with store.connection() as db:
            found = db.execute(f"SELECT * FROM {table}").fetchall()
    finally:
        store.close()
    return sorted(
        (tuple(bytes(v) if isinstance(v, memoryview) else v for v in row) for row in found),
        key=repr,
    )


def older_file(path: Path, version: int) -> None:
    """An SQLite file at schema `version`, as the release of that version made it: its
    migrations applied by hand, not by this snapcopy's store."""
    with closing(sqlite3.connect(path)) as conn:
        for script in MIGRATIONS[:version]:
            conn.executescript(script)
        conn.execute(f"PRAGMA user_version = {version}")


def one_sentence(err: str) -> None:
    assert err.count("\n") == 1 and err.rstrip().endswith("."), err


def test_status_of_a_new_file_a_current_one_and_postgresql(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, pg_url: str
) -> None:
    path = tmp_path / "snapcopy.db"
    code, out, _ = run(capsys, "status", "--db", str(path))
    assert code == 0 and "engine: sqlite" in out and f"database: {path} (no file yet" in out
    assert f"migrations pending: {len(MIGRATIONS)}" in out
    assert not path.exists(), "status makes no file"
    Store(path).close()
    code, out, _ = run(capsys, "status", "--db", str(path))
    assert code == 0 and f"database: {path}\nserver: SQLite 3." in out
    assert f"schema version: {len(MIGRATIONS)} (this snapcopy knows {len(MIGRATIONS)})" in out
    assert "migrations pending: none" in out
    code, out, _ = run(capsys, "status", "--db", pg_url)
    assert code == 0 and "engine: postgresql" in out and "server: PostgreSQL 18" in out
    assert "database: postgresql://postgres@/" in out and ":5432/t_" in out, "the socket's dir"


def test_status_of_a_database_newer_than_this_snapcopy_exits_1(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "snapcopy.db"
    Store(path).close()
    with closing(sqlite3.connect(path)) as conn:
        conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 2}")
    code, out, _ = run(capsys, "status", "--db", str(path))
    assert code == 1
    assert f"newer than this snapcopy: its schema is version {len(MIGRATIONS) + 2}" in out


def test_status_counts_the_migrations_an_older_file_lacks(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "old.db"
    older_file(path, 7)
    code, out, _ = run(capsys, "status", "--db", str(path))
    assert code == 0
    assert f"schema version: 7 (this snapcopy knows {len(MIGRATIONS)})" in out
    assert f"migrations pending: {len(MIGRATIONS) - 7} (applied at the next start)" in out
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (7,), "status only reads"


def test_status_of_a_postgresql_database_newer_than_this_snapcopy_exits_1(
    capsys: pytest.CaptureFixture[str], pg_url: str
) -> None:
    Store(pg_url).close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("INSERT INTO schema_version (version) VALUES (%s)", [len(MIGRATIONS) + 1])
    code, out, _ = run(capsys, "status", "--db", pg_url)
    assert code == 1
    assert f"schema version: {len(MIGRATIONS) + 1} (this snapcopy knows {len(MIGRATIONS)})" in out
    assert "The database is newer than this snapcopy" in out


def test_status_reads_snapcopy_db_then_database_url(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, pg_url: str
) -> None:
    monkeypatch.setenv("DATABASE_URL", pg_url)
    code, out, _ = run(capsys, "status")
    assert code == 0 and "engine: postgresql" in out
    Path(".env").write_text("SNAPCOPY_DB=chosen.db\n", encoding="utf-8")
    code, out, _ = run(capsys, "status")
    assert "engine: sqlite" in out and "chosen.db" in out, "SNAPCOPY_DB in .env wins"
    monkeypatch.setenv("SNAPCOPY_DB", "other.db")
    code, out, _ = run(capsys, "status")
    assert "other.db" in out, "the environment wins over .env"


def test_an_unreachable_database_is_one_sentence_without_the_password(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"postgresql://bot:{PASSWORD}@localhost/x?host=/nonexistent/dir"
    code, out, err = run(capsys, "status", "--db", url)
    assert code == 2 and "/nonexistent/dir" in err and "cannot be reached" in err
    assert PASSWORD not in out + err
    one_sentence(err)
    code, out, err = run(capsys, "copy", url, "copy.db")
    assert code == 2 and "SOURCE postgresql://bot@/nonexistent/dir" in err
    assert PASSWORD not in out + err
    one_sentence(err)


@pytest.mark.parametrize(
    ("url", "said"),
    [
        (f"postgresql://bot:{PASSWORD}@db.example/x?colour=blue", '"colour"'),
        ("postgresql://bot:Copy%zz@db.example/x", "percent-encoded"),
    ],
)
def test_a_url_libpq_cannot_read_is_one_sentence_without_the_password(
    capsys: pytest.CaptureFixture[str], url: str, said: str
) -> None:
    code, out, err = run(capsys, "status", "--db", url)
    assert code == 2 and "the PostgreSQL URL postgresql://bot@db.example:5432/x cannot" in err
    assert said in err
    assert PASSWORD not in out + err and "Copy%zz" not in out + err
    one_sentence(err)


@pytest.mark.parametrize("direction", ["sqlite-to-postgresql", "postgresql-to-sqlite"])
def test_copy_keeps_every_row_and_new_requests_get_new_ids(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, pg_url: str, direction: str
) -> None:
    path = str(tmp_path / "snapcopy.db")
    source, target = (path, pg_url) if direction.startswith("sqlite") else (pg_url, path)
    store = Store(source)
    fill(store)
    store.close()

    code, out, err = run(capsys, "copy", source, target)
    assert code == 0, err
    assert "every count matches" in out
    for table in TABLES:
        assert rows(target, table) == rows(source, table), table
    copied = Store(target)
    with copied.connection() as db:
        sizes = db.execute("SELECT source_size, approved_by FROM requests").fetchall()
        (body,) = db.execute("SELECT body FROM replays").fetchone()
    assert [tuple(row) for row in sizes] == [(180.4, None), (180.4, None)], "REAL and NULL"
    assert bytes(body) == b"\x00{}", "a BLOB is bytea and back"

    later = copied.create(
        new("after-the-move"), state=State.PENDING_APPROVAL, expires_at=None, actor="U0REQUEST"
    )
    assert later.id == 3
    assert copied.claim(Queue.DWS, "worker", 30) is not None, "owed work is still owed"
    copied.close()


def test_copy_refuses_a_target_that_is_not_empty(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, pg_url: str
) -> None:
    store = Store(pg_url)
    fill(store)
    store.close()
    older = tmp_path / "old.db"
    older_file(older, len(MIGRATIONS) - 1)
    with closing(sqlite3.connect(older)) as conn, conn:
        insert_old_rows(conn)
    code, _, err = run(capsys, "copy", str(older), pg_url)
    assert code == 2 and "is not empty (it holds requests, events, approvals, work)" in err
    one_sentence(err)
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM requests").fetchone() == (2,)
    with closing(sqlite3.connect(older)) as conn:
        version = conn.execute("PRAGMA user_version").fetchone()
    assert version == (len(MIGRATIONS) - 1,), "a refused copy migrates no source"


def test_copy_refuses_a_source_newer_than_this_snapcopy(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, pg_url: str
) -> None:
    path = tmp_path / "newer.db"
    Store(path).close()
    with closing(sqlite3.connect(path)) as conn:
        conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    code, _, err = run(capsys, "copy", str(path), pg_url)
    assert code == 2 and f"SOURCE {path} is newer than this snapcopy" in err
    one_sentence(err)
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT to_regclass('requests')").fetchone() == (None,)


def test_copy_of_a_missing_source_or_a_bad_url_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, pg_url: str
) -> None:
    code, _, err = run(capsys, "copy", str(tmp_path / "nope.db"), pg_url)
    assert code == 2 and "there is no database" in err
    code, _, err = run(capsys, "copy", str(tmp_path / "nope.db"), "mysql://h/db")
    assert code == 2 and "mysql://" in err


def insert_old_rows(conn: sqlite3.Connection) -> None:
    """Rows as the previous release wrote them (no request token yet), by hand."""
    conn.execute(
        "INSERT INTO requests (id, state, source_snapshot_id, backup_name, requested_by,"
        " created_at, updated_at, source_size, approvals_needed)"
        " VALUES (7, 'copying', 'snap-1', 'old-copy', 'U0REQUEST', '2030-01-01T00:00:00Z',"
        " '2030-01-01T00:00:00Z', 12.5, 2)"
    )
    conn.execute(
        "INSERT INTO events (id, request_id, kind, actor, at) VALUES"
        " (40, 7, 'requested', 'U0REQUEST', '2030-01-01T00:00:00Z'),"
        " (41, 7, 'approval', 'U0APPROVE', '2030-01-01T00:01:00Z')"
    )
    conn.execute("INSERT INTO approvals VALUES (7, 'U0APPROVE', '2030-01-01T00:01:00Z')")
    conn.execute(
        "INSERT INTO work (id, queue, request_id, kind, due_at, created_at)"
        " VALUES (9, 'dws', 7, 'copy', '2030-01-01T00:01:00Z', '2030-01-01T00:01:00Z')"
    )
    conn.execute("INSERT INTO replays VALUES ('v0=old', '2030-01-01', 200, 'text/plain', x'00ff')")


def test_a_file_of_the_previous_schema_is_migrated_then_copied(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, pg_url: str
) -> None:
    path = tmp_path / "old.db"
    older_file(path, len(MIGRATIONS) - 1)
    with closing(sqlite3.connect(path)) as conn, conn:
        insert_old_rows(conn)
    code, out, err = run(capsys, "copy", str(path), pg_url)
    assert code == 0, err
    assert (
        f"SOURCE was at schema version {len(MIGRATIONS) - 1}: migrated it to version "
        f"{len(MIGRATIONS)} first." in out
    )
    for table in TABLES:
        assert rows(pg_url, table) == rows(str(path), table), table
    store = Store(pg_url)
    (old,) = store.find()
    assert (old.id, old.backup_name, old.source_size) == (7, "old-copy", 12.5)
    assert old.token, "the migration gave it a token, and the copy kept it"
    assert (
        store.create(
            new("next"), state=State.PENDING_APPROVAL, expires_at=None, actor="U0REQUEST"
        ).id
        == 8
    )
    store.close()


def test_a_database_of_the_previous_release_copies_to_postgresql(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, pg_url: str
) -> None:
    dump = Path(__file__).parent / "store" / "data" / "previous_release.sql"
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(dump.read_text(encoding="utf-8"))
    code, out, err = run(capsys, "copy", str(path), pg_url)
    assert code == 0, err
    store = Store(pg_url)
    assert {r.backup_name for r in store.find()} == {"waiting-for-two", "being-copied", "done"}
    store.close()


@pytest.mark.process
def test_db_status_as_a_command_reads_database_url_from_dotenv(tmp_path: Path, pg_url: str) -> None:
    # No Slack or cloud setting at all: `db status` needs only where the database is.
    (tmp_path / ".env").write_text(f"DATABASE_URL={pg_url}\n", encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "bot", "db", "status"],
        cwd=tmp_path,
        env=subprocess_env({}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "engine: postgresql" in result.stdout
    assert f"migrations pending: {len(MIGRATIONS)}" in result.stdout
