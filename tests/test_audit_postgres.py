"""`snapcopy audit` on PostgreSQL: the same output and filters as on SQLite, in a read-only
transaction, and a server that cannot be reached named without its password."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from bot.audit_postgres import open_read_only
from bot.database import PostgresUrl, parse
from tests.harness import subprocess_env
from tests.test_audit_cli import audit, cancel_one, fill_audit_log

# Times differ between two databases filled one after the other; nothing else may.
_TIMES = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


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


def test_database_url_is_read_when_snapcopy_db_is_unset(twins: tuple[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bot", "audit", "--format", "json"],
        env=subprocess_env({"DATABASE_URL": twins[1]}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert [row["id"] for row in json.loads(result.stdout)] == [3, 2, 1]


def test_the_transaction_is_read_only(twins: tuple[str, str]) -> None:
    database = parse(twins[1])
    assert isinstance(database, PostgresUrl)
    with open_read_only(database, RuntimeError) as reader:
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            reader.conn.execute("DELETE FROM events")
    with psycopg.connect(twins[1]) as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] > 0


def test_an_unreachable_server_is_named_without_the_password() -> None:
    url = "postgresql://auditor:Aud1t-pw@localhost/snapcopy?host=/nonexistent/dir"
    result = audit(None, "--db", url)
    assert result.returncode == 2
    assert "cannot be reached" in result.stderr and "/nonexistent/dir" in result.stderr
    assert "Aud1t-pw" not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_an_empty_postgresql_database_is_no_audit_log(pg_url: str) -> None:
    result = audit(None, "--db", pg_url)
    assert result.returncode == 2
    assert "no snapcopy audit log" in result.stderr
