"""`snapcopy audit`: the audit log as JSON, CSV or a table, read from SNAPCOPY_DB only."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.domain import CopyRequest, NewRequest, State
from bot.store import Store
from tests.harness import subprocess_env

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
def db_path(tmp_path: Path) -> Iterator[Path]:
    """Three requests: one waiting, one copied, one denied (ids 1, 2, 3)."""
    path = tmp_path / "audit.db"
    store = Store(path)
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
    yield path


def audit(db: Path | None, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"SNAPCOPY_DB": str(db)} if db is not None else {}
    return subprocess.run(
        [sys.executable, "-m", "bot", "audit", *args],
        env=subprocess_env(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_json_has_every_contract_field(db_path: Path) -> None:
    result = audit(db_path, "--format", "json")

    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [row["id"] for row in rows] == [3, 2, 1]  # newest first
    for row in rows:
        assert set(CONTRACT_FIELDS) <= row.keys()
        assert set(row) == set(CopyRequest.model_fields)


def test_json_values_are_the_recorded_ones(db_path: Path) -> None:
    rows = {row["id"]: row for row in json.loads(audit(db_path, "--format", "json").stdout)}

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


def test_csv_has_a_header_and_one_line_per_request(db_path: Path) -> None:
    result = audit(db_path, "--format", "csv")

    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert list(rows[0].keys()) == list(CopyRequest.model_fields)
    assert [row["backup_name"] for row in rows] == ["denied-copy", "copied-copy", "waiting-copy"]
    assert rows[1]["new_snapshot_id"] == NEW_SNAPSHOT
    assert rows[0]["approved_by"] == ""  # None is an empty cell, not "None"
    assert json.loads(rows[0]["dws_request_ids"]) == []


def test_table_is_aligned_and_readable(db_path: Path) -> None:
    result = audit(db_path, "--format", "table")

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    header, rule, *body = lines
    assert header.split()[:4] == ["id", "state", "source_snapshot_id", "backup_name"]
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


def test_table_is_the_default_format(db_path: Path) -> None:
    assert audit(db_path).stdout == audit(db_path, "--format", "table").stdout


def test_state_filters_requests(db_path: Path) -> None:
    result = audit(db_path, "--format", "json", "--state", "succeeded")

    assert [row["id"] for row in json.loads(result.stdout)] == [2]


def test_state_can_be_repeated(db_path: Path) -> None:
    result = audit(db_path, "--format", "json", "--state", "denied", "--state", "PENDING_APPROVAL")

    assert [row["id"] for row in json.loads(result.stdout)] == [3, 1]


def test_limit_keeps_the_newest(db_path: Path) -> None:
    result = audit(db_path, "--format", "json", "--limit", "2")

    assert [row["id"] for row in json.loads(result.stdout)] == [3, 2]


def test_events_show_the_trail(db_path: Path) -> None:
    result = audit(db_path, "--format", "json", "--events")

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
    assert events[0]["details"]["backup_name"] == "waiting-copy"


def test_events_of_one_request_as_a_table(db_path: Path) -> None:
    result = audit(db_path, "--events", "--request", "3")

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
