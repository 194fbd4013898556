"""PostgreSQL as the engine: the SQL both engines share, the schema they share, migrations
once under a lock, honest errors (bad URL, refused password, unreachable, gone while serving),
the password never shown, and the engine reported by /healthz and /metrics."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest

from bot.database import PostgresUrl, SqliteFile, choose, parse
from bot.domain import NewRequest, State
from bot.errors import StoreUnavailable
from bot.slack.ids import Action
from bot.store import Store
from bot.store.postgres import translate
from bot.store.schema import MIGRATIONS
from tests.conftest import StartServer
from tests.flow import ask_for_copy, automated, click, ephemeral_to, wait_state
from tests.harness import APPROVER, POLICY_TOML, REQUESTER, BotServer, free_port, write_policy
from tests.postgres import TestPostgres
from tests.slack_standin import SlackStandIn
from tests.test_startup import GOOD_ENV, assert_refused, run_serve

PASSWORD = "s3cret-Pa55word"


def _name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


# --- choosing the engine ---------------------------------------------------------------------


def test_snapcopy_db_wins_then_database_url_then_the_default_file() -> None:
    url = "postgresql://bot:pw@db.example:6543/snapcopy"
    assert choose("/data/a.db", url) == SqliteFile(Path("/data/a.db"))
    chosen = choose(None, url)
    assert isinstance(chosen, PostgresUrl)
    assert (chosen.host, chosen.port, chosen.name, chosen.user) == (
        "db.example",
        6543,
        "snapcopy",
        "bot",
    )
    assert choose("", None) == SqliteFile(Path("./snapcopy.db"))
    assert isinstance(parse("postgres://h/db"), PostgresUrl), "Heroku's spelling too"


def test_a_url_shows_its_host_and_never_its_password() -> None:
    database = parse(f"postgresql://bot:{PASSWORD}@db.example/snapcopy")
    assert isinstance(database, PostgresUrl)
    assert database.shown == "postgresql://bot@db.example:5432/snapcopy"
    assert PASSWORD not in database.shown and database.secrets == [PASSWORD]


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("mysql://h/db", "mysql:// is not a database snapcopy can use"),
        ("postgresql://h:notaport/db", "cannot be read"),
        ("postgresql://h", "names no database"),
    ],
)
def test_a_bad_url_is_refused_in_one_sentence(value: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse(value)


# --- one statement text, two engines ---------------------------------------------------------


def test_translation_rewrites_placeholders_quoting_and_insert_or_ignore_only() -> None:
    assert translate("UPDATE t SET [a] = ? WHERE id = ?") == 'UPDATE t SET "a" = %s WHERE id = %s'
    assert translate("SELECT '?', [x] FROM t WHERE y LIKE 'a%' AND z = ?") == (
        "SELECT '?', \"x\" FROM t WHERE y LIKE 'a%' AND z = %s"
    )
    assert translate("INSERT OR IGNORE INTO t (a) VALUES (?)") == (
        "INSERT INTO t (a) VALUES (%s) ON CONFLICT DO NOTHING"
    )
    assert translate("INSERT OR IGNORE INTO t (a) VALUES (?) RETURNING id") == (
        "INSERT INTO t (a) VALUES (%s) ON CONFLICT DO NOTHING RETURNING id"
    )


def _sqlite_columns(path: Path) -> dict[str, set[str]]:
    with sqlite3.connect(path) as conn:
        tables = [
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        ]
        return {
            table: {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
            for table in tables
            if not table.startswith("sqlite_")
        }


def _postgres_columns(url: str) -> dict[str, set[str]]:
    columns: dict[str, set[str]] = {}
    with psycopg.connect(url) as conn:
        for table, column in conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name <> 'schema_version'"
        ):
            columns.setdefault(table, set()).add(column)
    return columns


def test_both_engines_have_the_same_tables_columns_and_version(tmp_path: Path, pg_url: str) -> None:
    Store(tmp_path / "a.db").close()
    Store(pg_url).close()
    assert _postgres_columns(pg_url) == _sqlite_columns(tmp_path / "a.db")
    with psycopg.connect(pg_url) as conn:
        versions = [row[0] for row in conn.execute("SELECT version FROM schema_version ORDER BY 1")]
    assert versions == list(range(1, len(MIGRATIONS) + 1))


def test_hosts_starting_together_migrate_once(pg_url: str) -> None:
    stores: list[Store] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            stores.append(Store(pg_url))
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(stores) == 4
    with psycopg.connect(pg_url) as conn:
        count, distinct = conn.execute(
            "SELECT count(*), count(DISTINCT version) FROM schema_version"
        ).fetchone() or (0, 0)
    assert count == distinct == len(MIGRATIONS)
    for store in stores:
        store.close()


def test_a_database_newer_than_this_snapcopy_is_refused_by_name(pg_url: str) -> None:
    Store(pg_url).close()
    with psycopg.connect(pg_url) as conn:
        conn.execute("INSERT INTO schema_version (version) VALUES (%s)", [len(MIGRATIONS) + 1])
    with pytest.raises(Exception, match="newer than this snapcopy"):
        Store(pg_url)


# --- honest errors -----------------------------------------------------------------------------


def _new(name: str) -> NewRequest:
    return NewRequest(
        source_snapshot_id="4ca46bf1-5c61-48ff-b4f3-0ad4e5e3ba90",
        backup_name=name,
        requested_by=REQUESTER,
        channel_id="C0INCIDENT",
    )


def test_an_unreachable_server_is_named_without_its_password() -> None:
    url = f"postgresql://bot:{PASSWORD}@localhost/snapcopy?host=/nonexistent/socket-dir"
    with pytest.raises(StoreUnavailable) as trouble:
        Store(url, start_seconds=1.0)
    assert trouble.value.reason == "unreachable"
    assert "/nonexistent/socket-dir" in trouble.value.detail
    assert PASSWORD not in trouble.value.detail + str(trouble.value)


@pytest.mark.parametrize(
    ("user", "database", "reason"),
    [("postgres", "no_such_db", "unavailable"), ("no_such_role", "postgres", "refused")],
)
def test_a_missing_database_or_role_is_not_an_unreachable_server(
    postgres: TestPostgres, user: str, database: str, reason: str
) -> None:
    with pytest.raises(StoreUnavailable) as trouble:
        Store(postgres.url(database, user, PASSWORD), start_seconds=1.0)
    assert trouble.value.reason == reason
    assert "does not exist" in trouble.value.detail and PASSWORD not in trouble.value.detail


@pytest.fixture
def password_user(postgres: TestPostgres, pg_url: str) -> Iterator[str]:
    """A role that must give its password (scram), owning the test's database."""
    database = _name(pg_url)
    yield postgres.password_role(database, PASSWORD)


def test_a_refused_password_says_so_without_showing_it(
    postgres: TestPostgres, pg_url: str, password_user: str
) -> None:
    database = _name(pg_url)
    with pytest.raises(StoreUnavailable) as trouble:
        Store(postgres.url(database, password_user, "wrong-" + PASSWORD), start_seconds=2.0)
    assert trouble.value.reason == "refused"
    assert PASSWORD not in trouble.value.detail
    store = Store(postgres.url(database, password_user, PASSWORD))  # the right one works
    store.create(_new("with-password"), state=State.PENDING_APPROVAL, expires_at=None, actor="U")
    store.close()


@pytest.mark.process
@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("postgresql://bot@db.example", "names no database"),
        (f"postgresql://bot:{PASSWORD}@localhost/x?host=/nonexistent/dir", "cannot be reached"),
        (f"postgresql://bot:{PASSWORD}@localhost/x?colour=blue", "cannot be used"),
    ],
)
def test_serve_refuses_a_bad_url_and_an_unreachable_server_in_one_sentence(
    value: str, says: str, tmp_path: Path
) -> None:
    policy = write_policy(tmp_path / "snapcopy.toml", POLICY_TOML)
    env = GOOD_ENV | {
        "SNAPCOPY_DB": value,
        "SNAPCOPY_POLICY": str(policy),
        "SLACK_API_URL": "http://127.0.0.1:9/api/",  # never reached: the database is first
    }
    result = run_serve(env, "--port", str(free_port()))
    assert_refused(result, "SNAPCOPY_DB", says)
    assert PASSWORD not in result.stdout + result.stderr


# --- the database going away while serving ------------------------------------------------------


def _cut_off(postgres: TestPostgres, database: str, cut: bool) -> None:
    """Refuse (or allow again) every connection to `database`, ending the open ones."""
    postgres.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS {"false" if cut else "true"}')
    if cut:
        postgres.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            f" WHERE datname = '{database}' AND pid <> pg_backend_pid()"
        )


def test_a_click_while_the_database_is_away_is_refused_plainly_and_nothing_is_lost(
    start_http_server: StartServer,
    slack: SlackStandIn,
    dws: Any,
    dws_snapshots: list[Any],
    postgres: TestPostgres,
    pg_url: str,
) -> None:
    server = start_http_server(env_overrides={"SNAPCOPY_DB": pg_url})
    database = _name(pg_url)
    request = ask_for_copy(server, slack, REQUESTER, automated(dws_snapshots).id, "while-away")
    server.close_store()
    _cut_off(postgres, database, cut=True)
    try:
        started = time.monotonic()
        click(server, APPROVER, Action.APPROVE, request)
        assert time.monotonic() - started < 3.0, "the answer came within Slack's 3 s"
        ephemeral_to(slack, APPROVER, "did not count")
        health = server.get("/healthz")
        assert health.status_code == 503 and health.json()["database"] is False
    finally:
        _cut_off(postgres, database, cut=False)
    assert server.store.require(request.id).state == State.PENDING_APPROVAL, "nothing changed"
    assert dws.copy_calls == 0
    click(server, APPROVER, Action.APPROVE, request)  # the database is back: it counts now
    wait_state(server, request, State.SUCCEEDED, timeout=20)
    assert dws.copy_calls == 1


# --- what reports the engine ---------------------------------------------------------------------


@pytest.mark.engines
def test_health_and_metrics_name_the_engine(http_server: BotServer, database: str) -> None:
    engine = "postgresql" if database.startswith("postgresql") else "sqlite"
    assert http_server.health()["database_engine"] == engine
    metrics = http_server.get("/metrics").text
    assert f'snapcopy_database_info{{engine="{engine}"}} 1.0' in metrics


def test_the_password_is_in_no_log_line(
    start_process: StartServer, postgres: TestPostgres, pg_url: str, password_user: str
) -> None:
    database = _name(pg_url)
    url = postgres.url(database, password_user, PASSWORD)
    server = start_process(env_overrides={"SNAPCOPY_DB": None, "DATABASE_URL": url})
    assert server.health()["database_engine"] == "postgresql"
    server.stop()
    lines = [
        json.loads(line)
        for line in server.log_path.read_text().splitlines()
        if line.startswith("{")
    ]
    started = next(line for line in lines if line.get("message", "").endswith("starting"))
    assert started["database"] == {"engine": "postgresql", "url": parse(url).shown}
    assert PASSWORD not in server.log_path.read_text()
