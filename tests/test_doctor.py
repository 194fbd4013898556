"""`snapcopy doctor`: a checklist of the deployment, ✓ or ✗ with the fix; exit 0 only when all
pass. Run as the command it is, against the Slack and DWS stand-ins."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from bot.store import Store
from tests.conftest import StartServer
from tests.harness import REPO_ROOT, subprocess_env, write_policy
from tests.postgres import TestPostgres
from tests.slack_standin import SlackStandIn

pytestmark = pytest.mark.process


def doctor(env: dict[str, str | None], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", "doctor", *args],
        env=subprocess_env(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


def line(result: subprocess.CompletedProcess[str], name: str) -> str:
    found = [text for text in result.stdout.splitlines() if text[2:].startswith(name)]
    assert found, f"no {name!r} line in:\n{result.stdout}{result.stderr}"
    return found[0]


def test_a_good_deployment_passes_every_check(bot_env: dict[str, str], dws: Any) -> None:
    result = doctor(bot_env)

    assert result.returncode == 0, result.stdout + result.stderr
    names = ("settings", "Slack token", "Slack scopes", "database", "policy file", "policy IDs")
    for name in (*names, "DWS"):
        assert line(result, name).startswith("✓"), result.stdout
    assert "request id" in line(result, "DWS")
    assert "✗" not in result.stdout


@pytest.mark.parametrize(
    ("breakage", "name", "says"),
    [
        ("scope", "Slack scopes", "users:read"),
        ("user", "policy IDs", "U0APPROVE"),
        ("group", "policy IDs", "S0ONCALL"),
        ("token", "Slack token", "invalid_auth"),
        ("sk", "DWS", "HUAWEICLOUD_SDK_AK/_SK"),
        ("database", "database", "does not exist"),
        ("policy", "policy file", "unknown key"),
        ("example", "policy file", "nobody in this workspace can approve"),
        ("approvals", "policy approvals", "needs 3 approvals, but only 2 people"),
    ],
)
def test_each_broken_part_is_named_with_its_fix(
    bot_env: dict[str, str],
    slack: SlackStandIn,
    dws: Any,
    tmp_path: Path,
    breakage: str,
    name: str,
    says: str,
) -> None:
    env: dict[str, str | None] = dict(bot_env)
    if breakage == "scope":
        slack.scopes.remove("users:read")
    elif breakage == "user":
        slack.missing_users.add("U0APPROVE")
    elif breakage == "group":
        slack.usergroups.pop("S0ONCALL")
    elif breakage == "token":
        slack.expected_token = "xoxb-1-2-another"
    elif breakage == "sk":
        env["HUAWEICLOUD_SDK_SK"] = "not-the-secret-key"
    elif breakage == "database":
        env["SNAPCOPY_DB"] = str(tmp_path / "unmounted" / "snapcopy.db")
    elif breakage == "policy":
        env["SNAPCOPY_POLICY"] = str(write_policy(tmp_path / "bad.toml", "[rolez]\n"))
    elif breakage == "approvals":  # the on-call group has one member, and one admin
        text = '[roles]\napprover = ["S0ONCALL"]\nadmin = ["U0ADMIN"]\n[approval]\napprovals = 3\n'
        env["SNAPCOPY_POLICY"] = str(write_policy(tmp_path / "many.toml", text))
    elif breakage == "example":  # copied and never filled in
        env["SNAPCOPY_POLICY"] = str(REPO_ROOT / "snapcopy.example.toml")

    result = doctor(env)

    assert result.returncode == 1
    broken = line(result, name)
    assert broken.startswith("✗") and says in result.stdout, result.stdout
    assert "fix:" in result.stdout
    assert "Traceback" not in result.stderr


def test_doctor_is_safe_beside_a_live_bot(
    start_process: StartServer, bot_env: dict[str, str], slack: SlackStandIn, dws: Any
) -> None:
    server = start_process()
    before = (server.requests(), server.store.events())

    result = doctor(bot_env)

    assert result.returncode == 0, result.stdout
    assert (server.requests(), server.store.events()) == before, "doctor wrote nothing"
    assert server.health()["ok"] is True


def test_doctor_checks_postgresql_reach_version_migrations_and_privileges(
    bot_env: dict[str, str], dws: Any, postgres: TestPostgres, pg_url: str
) -> None:
    fresh = doctor(bot_env | {"SNAPCOPY_DB": pg_url})
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    assert "PostgreSQL 18" in line(fresh, "database")
    assert "migrations apply at the next start" in line(fresh, "database")

    Store(pg_url).close()
    current = doctor(bot_env | {"SNAPCOPY_DB": pg_url})
    assert line(current, "database").startswith("✓") and "migrations" not in line(
        current, "database"
    )

    name = urlsplit(pg_url).path.lstrip("/")
    reader = "ro_" + name[-6:]
    postgres.execute(f"CREATE ROLE {reader} LOGIN", name)
    postgres.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {reader}", name)
    limited = doctor(bot_env | {"SNAPCOPY_DB": postgres.url(name, reader)})
    assert limited.returncode == 1
    assert line(limited, "database").startswith("✗")
    assert "INSERT on requests" in line(limited, "database")


def test_doctor_names_an_unreachable_postgresql_without_its_password(
    bot_env: dict[str, str], dws: Any
) -> None:
    url = "postgresql://bot:Hunter2-secret@localhost/x?host=/nonexistent/dir"
    result = doctor(bot_env | {"SNAPCOPY_DB": url})
    assert result.returncode == 1
    assert "cannot be reached" in line(result, "database")
    assert "/nonexistent/dir" in result.stdout
    assert "Hunter2-secret" not in result.stdout + result.stderr
