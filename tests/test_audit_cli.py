"""`snapcopy audit`: the audit log as JSON, CSV or a table, read from SNAPCOPY_DB only."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.audit import STATES
from bot.domain import CopyRequest, NewRequest, State
from bot.store import Store
from tests.harness import BOT_TOKEN, subprocess_env
from tests.slack_standin import TEAM_DOMAIN, SlackStandIn

CONTRACT_FIELDS = (
    "id",
    "state",
    "source_snapshot_id",
    "backup_name",
    "description",
    "requested_by",
    "approved_by",
    "channel_id",
    "thread_ts",
    "new_snapshot_id",
    "error",
    "created_at",
    "updated_at",
)
NEW_SNAPSHOT = "4f1b6a52-2c1e-4a8f-9b0e-6f7c0d2d9e11"


def new_request(name: str, **fields: str) -> NewRequest:
    return NewRequest.model_validate(
        {
            "source_snapshot_id": f"src-{name}",
            "backup_name": name,
            "description": f"copy {name}",
            "requested_by": "U0REQUEST",
            "channel_id": "C0INCIDENT",
            "thread_ts": "1764340000.000100",
        }
        | fields
    )


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """Three requests: one waiting, one copied, one denied (ids 1, 2, 3)."""
    path = tmp_path / "audit.db"
    fill_audit_log(str(path))
    return path


@pytest.fixture
def log(database: str) -> str:
    """The same three requests, on the test's engine (tests marked `engines` run on both)."""
    fill_audit_log(database)
    return database


def fill_audit_log(database: str) -> None:
    """Three requests: one waiting, one copied, one denied (ids 1, 2, 3)."""
    store = Store(database)
    store.create(
        new_request("waiting-copy"),
        state=State.PENDING_APPROVAL,
        expires_at=None,
        actor="U0REQUEST",
    )
    copied = store.create(
        new_request("copied-copy"), state=State.PENDING_APPROVAL, expires_at=None, actor="U0REQUEST"
    )
    store.transition(
        copied.id,
        allowed_from=[State.PENDING_APPROVAL],
        to=State.APPROVED,
        event="approved",
        actor="U0APPROVE",
        approved_by="U0APPROVE",
    )
    store.transition(
        copied.id,
        allowed_from=[State.APPROVED],
        to=State.COPYING,
        event="copying",
        actor=None,
        new_snapshot_id=NEW_SNAPSHOT,
        snapshot_status="CREATING",
    )
    store.transition(
        copied.id,
        allowed_from=[State.COPYING],
        to=State.SUCCEEDED,
        event="succeeded",
        actor=None,
        snapshot_status="AVAILABLE",
    )
    denied = store.create(
        new_request("denied-copy", requested_by="U0ONCALL"),
        state=State.PENDING_APPROVAL,
        expires_at=None,
        actor="U0ONCALL",
    )
    store.transition(
        denied.id,
        allowed_from=[State.PENDING_APPROVAL],
        to=State.DENIED,
        event="denied",
        actor="U0ADMIN",
        denied_by="U0ADMIN",
        deny_reason="wrong cluster",
    )
    store.close()


def audit(db: Path | str | None, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"SNAPCOPY_DB": str(db)} if db is not None else {}
    return subprocess.run(
        [sys.executable, "-m", "bot", "audit", *args],
        env=subprocess_env(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.engines
def test_json_has_every_contract_field(log: str) -> None:
    result = audit(log, "--format", "json")

    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [row["id"] for row in rows] == [3, 2, 1]  # newest first
    for row in rows:
        assert set(CONTRACT_FIELDS) <= row.keys()
        # Every field but the token its buttons carry, which is shown nowhere; and who
        # cancelled it, from its trail.
        assert set(row) == set(CopyRequest.model_fields) - {"token"} | {"cancelled_by"}


@pytest.mark.engines
def test_json_values_are_the_recorded_ones(log: str) -> None:
    rows = {row["id"]: row for row in json.loads(audit(log, "--format", "json").stdout)}

    copied = rows[2]
    assert copied["state"] == "succeeded"
    assert copied["source_snapshot_id"] == "src-copied-copy"
    assert copied["backup_name"] == "copied-copy"
    assert copied["description"] == "copy copied-copy"
    assert copied["requested_by"] == "U0REQUEST"
    assert copied["approved_by"] == "U0APPROVE"
    assert copied["channel_id"] == "C0INCIDENT"
    assert copied["thread_ts"] == "1764340000.000100"
    assert copied["new_snapshot_id"] == NEW_SNAPSHOT
    assert copied["snapshot_status"] == "AVAILABLE"
    assert copied["error"] is None
    assert copied["created_at"] <= copied["updated_at"]
    assert rows[3]["denied_by"] == "U0ADMIN"
    assert rows[3]["deny_reason"] == "wrong cluster"
    assert rows[1]["state"] == "pending_approval"


@pytest.mark.engines
def test_csv_has_a_header_and_one_line_per_request(log: str) -> None:
    result = audit(log, "--format", "csv")

    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    header = list(rows[0].keys())
    assert header[: len(CONTRACT_FIELDS)] == list(CONTRACT_FIELDS), "the contract's fields first"
    assert sorted(header) == sorted(set(CopyRequest.model_fields) - {"token"} | {"cancelled_by"})
    assert [row["backup_name"] for row in rows] == ["denied-copy", "copied-copy", "waiting-copy"]
    assert rows[1]["new_snapshot_id"] == NEW_SNAPSHOT
    assert rows[0]["approved_by"] == ""  # None is an empty cell, not "None"
    assert json.loads(rows[0]["dws_request_ids"]) == []


@pytest.mark.engines
def test_table_is_aligned_and_readable(log: str) -> None:
    result = audit(log, "--format", "table")

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    header, rule, *body = lines
    assert header.split()[:4] == ["id", "state", "backup_name", "cluster_name"]
    assert "denied_by" in header.split(), "who denied is on screen"
    assert set(rule.replace(" ", "")) == {"-"}
    assert len(body) == 3
    # Columns line up: every row has its state where the header has "state".
    column = header.index("state")
    assert [line[column:].split()[0] for line in body] == [
        "denied",
        "succeeded",
        "pending_approval",
    ]
    assert NEW_SNAPSHOT in body[1]
    assert "U0ADMIN" in body[0]


@pytest.mark.engines
def test_table_is_the_default_format(log: str) -> None:
    assert audit(log).stdout == audit(log, "--format", "table").stdout


@pytest.mark.engines
def test_state_filters_requests(log: str) -> None:
    result = audit(log, "--format", "json", "--state", "succeeded")

    assert [row["id"] for row in json.loads(result.stdout)] == [2]


@pytest.mark.engines
def test_state_can_be_repeated(log: str) -> None:
    result = audit(log, "--format", "json", "--state", "denied", "--state", "PENDING_APPROVAL")

    assert [row["id"] for row in json.loads(result.stdout)] == [3, 1]


@pytest.mark.engines
def test_limit_keeps_the_newest(log: str) -> None:
    result = audit(log, "--format", "json", "--limit", "2")

    assert [row["id"] for row in json.loads(result.stdout)] == [3, 2]


@pytest.mark.engines
def test_events_show_the_trail(log: str) -> None:
    result = audit(log, "--format", "json", "--events")

    assert result.returncode == 0, result.stderr
    events = json.loads(result.stdout)
    assert all(
        set(event) == {"id", "request_id", "kind", "actor", "at", "details"} for event in events
    )
    trail = [(event["kind"], event["actor"]) for event in events if event["request_id"] == 2]
    assert trail == [
        ("requested", "U0REQUEST"),
        ("approved", "U0APPROVE"),
        ("copying", None),
        ("succeeded", None),
    ]
    # The requests' order (newest first), each request's trail oldest first.
    assert [event["request_id"] for event in events] == [3, 3, 2, 2, 2, 2, 1]
    assert events[-1]["details"]["backup_name"] == "waiting-copy"


@pytest.mark.engines
def test_events_of_one_request_as_a_table(log: str) -> None:
    result = audit(log, "--events", "--request", "3")

    assert result.returncode == 0, result.stderr
    header, _, *body = result.stdout.splitlines()
    assert header.split() == ["id", "request_id", "kind", "actor", "at", "details"]
    assert [line.split()[2] for line in body] == ["requested", "denied"]


def test_empty_log_says_so(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    Store(path).close()

    assert audit(path).stdout == "(no records)\n"
    assert json.loads(audit(path, "--format", "json").stdout) == []


def test_unknown_state_is_a_clear_usage_error(db_path: Path) -> None:
    result = audit(db_path, "--state", "done")

    assert result.returncode == 2
    assert "unknown state 'done'" in result.stderr
    assert "pending_approval" in result.stderr  # the known ones are listed
    assert "Traceback" not in result.stderr


def test_missing_database_is_reported_and_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such.db"

    result = audit(missing)

    assert result.returncode == 2
    assert f"no audit log at {missing}" in result.stderr
    assert "Traceback" not in result.stderr
    assert not missing.exists()
    assert not missing.parent.exists()


def test_default_database_is_snapcopy_db_in_the_working_directory(
    db_path: Path, isolated: Path
) -> None:
    db_path.rename(isolated / "snapcopy.db")

    result = audit(None, "--format", "json")

    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)) == 3


def test_audit_needs_no_slack_or_cloud_settings(db_path: Path) -> None:
    # Settings that would stop `serve` do not matter to `audit`.
    env = {"SNAPCOPY_DB": str(db_path), "PORT": "not-a-port", "SLACK_BOT_TOKEN": "xoxp-1"}
    result = subprocess.run(
        [sys.executable, "-m", "bot", "audit", "--format", "json"],
        env=subprocess_env(env),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)) == 3


# --- filters -------------------------------------------------------------------------------------


def ids(result: subprocess.CompletedProcess[str]) -> list[int]:
    assert result.returncode == 0, result.stderr
    return [row["id"] for row in json.loads(result.stdout)]


def stamp(days_ago: float) -> str:
    """The audit log's UTC timestamp of `days_ago` days ago (negative: ahead)."""
    when = datetime.now(UTC) - timedelta(days=days_ago)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def change(database: str, request_id: int, **fields: Any) -> None:
    """Set a request's fields as the bot would, on either engine."""
    store = Store(database)
    try:
        store.update(request_id, **fields)
    finally:
        store.close()


def backdate(database: str, request_id: int, days: float) -> None:
    change(database, request_id, created_at=stamp(days))


@pytest.mark.engines
def test_since_and_until_take_dates_and_durations(log: str) -> None:
    backdate(log, 1, 10)
    backdate(log, 2, 3)

    assert ids(audit(log, "--format", "json", "--since", "7d")) == [3, 2]
    assert ids(audit(log, "--format", "json", "--since", "12h")) == [3]
    assert ids(audit(log, "--format", "json", "--until", "2d")) == [2, 1]
    five_days_ago = (datetime.now(UTC) - timedelta(days=5)).date().isoformat()
    assert ids(audit(log, "--format", "json", "--since", five_days_ago)) == [3, 2]
    assert ids(audit(log, "--format", "json", "--until", five_days_ago)) == [1]


def test_a_bad_date_is_a_clear_usage_error(db_path: Path) -> None:
    result = audit(db_path, "--since", "last tuesday")

    assert result.returncode == 2
    assert "neither a date" in result.stderr and "7d" in result.stderr


@pytest.mark.engines
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--requester", "U0ONCALL"), [3]),
        (("--requester", "U0REQUEST"), [2, 1]),
        (("--approver", "U0APPROVE"), [2]),
        (("--approver", "U0APPROV"), []),  # whole IDs only
        (("--cluster", "dws-prod"), [2]),
        (("--cluster", "DWS-PROD", "--state", "denied"), []),
        (("--state", "denied", "--requester", "U0ONCALL"), [3]),
    ],
)
def test_requests_are_filtered_by_person_cluster_and_state(
    log: str, args: tuple[str, ...], expected: list[int]
) -> None:
    change(log, 2, cluster_name="dws-prod", approved_by="U0APPROVE,U0ADMIN")

    assert ids(audit(log, "--format", "json", *args)) == expected


@pytest.mark.engines
def test_events_follow_the_filtered_requests(log: str) -> None:
    result = audit(log, "--format", "json", "--events", "--requester", "U0REQUEST")

    events = json.loads(result.stdout)
    assert [event["request_id"] for event in events] == [2, 2, 2, 2, 1]


@pytest.mark.engines
def test_expiring_keeps_copies_still_kept_whose_keep_until_comes_first(log: str) -> None:
    change(log, 2, keep_until=stamp(-3))  # succeeded: kept for three more days
    change(log, 3, keep_until=stamp(-1))  # denied: nothing to keep

    assert ids(audit(log, "--format", "json", "--expiring", "7d")) == [2]
    assert ids(audit(log, "--format", "json", "--expiring", "1d")) == []


@pytest.mark.engines
def test_break_glass_keeps_the_emergency_copies(log: str) -> None:
    change(log, 2, break_glass=True)

    rows = json.loads(audit(log, "--format", "json", "--break-glass").stdout)

    assert [(row["id"], row["break_glass"]) for row in rows] == [(2, 1)]


# --- read-only -----------------------------------------------------------------------------------


def test_audit_takes_no_write_lock_and_changes_nothing(db_path: Path) -> None:
    before = db_path.read_bytes()
    with sqlite3.connect(db_path, isolation_level=None) as writer:
        writer.execute("BEGIN IMMEDIATE")  # a live bot in the middle of a write
        result = audit(db_path, "--format", "json")
        writer.execute("ROLLBACK")

    assert ids(result) == [3, 2, 1]
    assert db_path.read_bytes() == before


def test_an_empty_file_is_not_turned_into_an_audit_log(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    path.write_bytes(b"")

    result = audit(path)

    assert result.returncode == 2
    assert "no snapcopy audit log" in result.stderr
    assert path.read_bytes() == b"", "no tables created"


def test_a_file_that_is_not_sqlite_gets_a_clear_message(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("these are my notes, not a database\n" * 20)

    result = audit(path)

    assert result.returncode == 2
    assert "is not an SQLite database" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_audit_states_are_the_request_states() -> None:
    assert STATES == tuple(State)


def test_audit_needs_nothing_but_the_standard_library(db_path: Path) -> None:
    # It starts fast because it imports none of the serving stack, nor PostgreSQL's driver
    # and the store's engines, which only a PostgreSQL URL needs.
    probe = (
        "import sys, runpy; sys.argv = ['snapcopy', 'audit', '--limit', '1'];\n"
        "try:\n    runpy.run_module('bot', run_name='__main__')\nexcept SystemExit:\n    pass\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('pydantic', 'pydantic_settings', 'slack_bolt', 'slack_sdk', 'httpx', 'sqlite_utils',"
        " 'psycopg', 'psycopg_pool') or m.startswith(('bot.store', 'bot.audit_postgres')))\n"
        "print('HEAVY', heavy)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        env=subprocess_env({"SNAPCOPY_DB": str(db_path)}),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert "HEAVY []" in result.stdout, result.stdout + result.stderr


# --- reason, cancelled_by, names and links (issue 25) ---------------------------------------------


def cancel_one(db_path: Path | str) -> None:
    store = Store(db_path)
    try:
        store.update(1, reason="INC-1234 disk full")
        store.transition(
            1,
            allowed_from=[State.PENDING_APPROVAL],
            to=State.CANCELLED,
            event="cancelled",
            actor="U0ADMIN",
        )
    finally:
        store.close()


@pytest.mark.engines
def test_the_table_has_the_reason_and_who_cancelled(log: str) -> None:
    cancel_one(log)

    header, _, *body = audit(log).stdout.splitlines()

    assert "reason" in header.split() and "cancelled_by" in header.split()
    cancelled = body[-1]
    assert "U0ADMIN" in cancelled and "INC-1234 disk full" in cancelled
    rows = {row["id"]: row for row in json.loads(audit(log, "--format", "json").stdout)}
    assert rows[1]["cancelled_by"] == "U0ADMIN" and rows[2]["cancelled_by"] is None


def test_names_and_thread_links_come_from_slack_once_per_person(
    db_path: Path, slack: SlackStandIn
) -> None:
    cancel_one(db_path)
    env = {
        "SNAPCOPY_DB": str(db_path),
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_API_URL": slack.api_url,
    }

    result = run_audit(env, "--names")

    assert result.returncode == 0, result.stderr
    header, _, *body = result.stdout.splitlines()
    assert header.split()[-1] == "thread"
    assert "@u0request" in body[1] and "@u0approve" in body[1] and "U0REQUEST" not in body[1]
    assert "@u0admin" in body[2]  # cancelled it
    link = f"https://{TEAM_DOMAIN}.slack.com/archives/C0INCIDENT/p1764340000000100"
    assert all(line.endswith(link) for line in body), "whole, never cut short"
    asked = [call["user"] for call in slack.calls("users.info")]
    assert sorted(asked) == sorted(set(asked)) == ["U0ADMIN", "U0APPROVE", "U0ONCALL", "U0REQUEST"]


def test_names_without_a_token_is_a_clear_usage_error(db_path: Path) -> None:
    result = audit(db_path, "--names")

    assert result.returncode == 2
    assert "--names asks Slack: set SLACK_BOT_TOKEN" in result.stderr


def run_audit(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", "audit", *args],
        env=subprocess_env(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
