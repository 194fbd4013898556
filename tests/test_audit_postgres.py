"""`snapcopy audit` on PostgreSQL: the same output and filters as on SQLite, in a read-only
transaction, and a server that cannot be reached, a refused password, a missing database or a
table the auditor may not read, each said in one sentence that names the host and never the
password. (tests/test_audit_cli.py runs its tests on both engines too.)"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

from bot.audit_postgres import open_read_only
from bot.database import PostgresUrl, parse
from bot.store import Store
from tests.postgres import TestPostgres
from tests.test_audit_cli import audit, cancel_one, fill_audit_log, ids, run_audit

# Times differ between two databases filled one after the other; nothing else may.
_TIMES = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
PASSWORD = "Aud1t-pw"


@pytest.fixture
def twins(tmp_path: Path, pg_url: str) -> tuple[str, str]:
    """The same audit log in an SQLite file and in a PostgreSQL database."""
    path = str(tmp_path / "audit.db")
    for database in (path, pg_url):
        fill_audit_log(database)
        cancel_one(database)
    return path, pg_url


@pytest.mark.parametrize(
    "args",
    [
        ("--format", "json"),
        ("--format", "csv"),
        ("--format", "table"),
        ("--format", "json", "--state", "denied", "--state", "succeeded"),
        ("--format", "json", "--limit", "1"),
        ("--format", "json", "--events"),
        ("--format", "json", "--request", "2", "--events"),
        ("--format", "json", "--requester", "U0ONCALL"),
        ("--format", "json", "--approver", "U0APPROVE"),
        ("--format", "json", "--since", "1h"),
        ("--format", "csv", "--until", "2000-01-01"),
    ],
)
def test_postgresql_prints_what_sqlite_prints(
    twins: tuple[str, str], args: tuple[str, ...]
) -> None:
    outputs = []
    for database in twins:
        result = audit(None, "--db", database, *args)
        assert result.returncode == 0, result.stderr
        outputs.append(_TIMES.sub("<time>", result.stdout))
    assert outputs[0] == outputs[1]
    assert outputs[0].strip() not in ("", "[]") or "--until" in args


@pytest.mark.parametrize("where", ["environment", ".env"])
def test_database_url_is_read_when_snapcopy_db_is_unset(
    twins: tuple[str, str], isolated: Path, where: str
) -> None:
    env = {"DATABASE_URL": twins[1]} if where == "environment" else {}
    if where == ".env":
        (isolated / ".env").write_text(f"DATABASE_URL={twins[1]}\n")
    assert ids(run_audit(env, "--format", "json")) == [3, 2, 1]
    # SNAPCOPY_DB comes first, as for serve: here an empty SQLite log.
    Store(isolated / "empty.db").close()
    assert ids(run_audit(env | {"SNAPCOPY_DB": "empty.db"}, "--format", "json")) == []


@pytest.mark.parametrize(
    "write",
    [
        "INSERT INTO events (request_id, kind, actor, at, details) VALUES (1, 'x', 'U', '', '{}')",
        "UPDATE requests SET state = 'deleted'",
        "DELETE FROM events",
        "CREATE TABLE audit_was_here (id INTEGER)",
    ],
)
def test_the_transaction_is_read_only(twins: tuple[str, str], write: str) -> None:
    database = parse(twins[1])
    assert isinstance(database, PostgresUrl)
    before = _contents(twins[1])
    with open_read_only(database, RuntimeError) as reader:
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            reader.conn.execute(write)  # type: ignore[call-overload,unused-ignore]
    assert _contents(twins[1]) == before


def _contents(url: str) -> tuple[object, ...]:
    with psycopg.connect(url) as conn:
        found = conn.execute(
            "SELECT (SELECT count(*) FROM events), (SELECT string_agg(state, ',' ORDER BY id)"
            " FROM requests), to_regclass('audit_was_here')"
        ).fetchone()
    assert found is not None
    return tuple(found)


def refused(result: subprocess.CompletedProcess[str], *said: str) -> None:
    """Exit 2 and one sentence that says all of `said`, without the password."""
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("snapcopy audit: ") and result.stderr.count("\n") == 1
    assert all(words in result.stderr for words in said), result.stderr
    assert PASSWORD not in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unreachable_server_is_named_without_the_password() -> None:
    url = f"postgresql://auditor:{PASSWORD}@localhost/snapcopy?host=/nonexistent/dir"
    refused(audit(None, "--db", url), "cannot be reached", "/nonexistent/dir")
    # The same from SNAPCOPY_DB.
    refused(audit(url), "cannot be reached", "/nonexistent/dir")


@pytest.fixture
def auditor(postgres: TestPostgres, twins: tuple[str, str]) -> tuple[str, str]:
    """A role that must give its password and has been granted nothing on the audit log's
    tables, and the log's database."""
    database = urlsplit(twins[1]).path.lstrip("/")
    return postgres.password_role(database, PASSWORD), database


def test_a_refused_password_is_said_without_it(
    postgres: TestPostgres, auditor: tuple[str, str]
) -> None:
    role, database = auditor
    url = postgres.url(database, role, "not-" + PASSWORD)
    refused(audit(None, "--db", url), "refused", postgres.socket_dir, "password")


def test_a_missing_database_is_named(postgres: TestPostgres) -> None:
    url = postgres.url("no_such_log", "postgres", PASSWORD)
    refused(audit(None, "--db", url), "cannot be opened", "no_such_log", "does not exist")


def test_an_auditor_needs_select_and_is_told_what_it_may_not_read(
    postgres: TestPostgres, auditor: tuple[str, str]
) -> None:
    role, database = auditor
    url = postgres.url(database, role, PASSWORD)
    refused(audit(None, "--db", url), "permission denied for table requests", "do this")

    # Who cancelled a request is read from its events.
    postgres.execute(f"GRANT SELECT ON requests TO {role}", database)
    refused(audit(None, "--db", url), "permission denied for table events")

    postgres.execute(f"GRANT SELECT ON events TO {role}", database)  # SELECT is all it needs
    for args in ((), ("--events",)):
        result = audit(None, "--db", url, "--format", "json", *args)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)


def test_an_empty_postgresql_database_is_no_audit_log(pg_url: str) -> None:
    result = audit(None, "--db", pg_url)
    assert result.returncode == 2
    assert "no snapcopy audit log" in result.stderr
