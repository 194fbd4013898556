"""A broken configuration stops `python -m bot serve` at once, with one message naming every
problem, exit status 2, no traceback, and none of the secret values it was given."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from bot.domain import NewRequest, State
from bot.store import Store
from tests.conftest import StartServer, damage_an_index, fill_volume, hold_write_lock
from tests.harness import (
    BOT_TOKEN,
    DWS_AK,
    DWS_PROJECT_ID,
    DWS_SK,
    POLICY_TOML,
    SIGNING_SECRET,
    free_port,
    subprocess_env,
    write_policy,
)
from tests.slack_standin import SlackStandIn

# Each test starts a real `python -m bot serve`: about processes, not the inner loop.
pytestmark = pytest.mark.process

USER_TOKEN = "xoxp-1111111111-2222222222-3333333333-personalUserTokenValue"
APP_TOKEN_LOOKALIKE = "xoxb-9999999999-not-an-app-level-token"

GOOD_ENV = {
    "SLACK_BOT_TOKEN": BOT_TOKEN,
    "SLACK_SIGNING_SECRET": SIGNING_SECRET,
    "HUAWEICLOUD_SDK_AK": DWS_AK,
    "HUAWEICLOUD_SDK_SK": DWS_SK,
    "HUAWEICLOUD_SDK_PROJECT_ID": DWS_PROJECT_ID,
    "DWS_REGION": "ap-southeast-1",
}
SECRET_VALUES = (BOT_TOKEN, SIGNING_SECRET, DWS_SK, USER_TOKEN, APP_TOKEN_LOOKALIKE)


def run_serve(env: dict[str, str | None], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", "serve", "--host", "127.0.0.1", *args],
        env=subprocess_env(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


def assert_refused(result: subprocess.CompletedProcess[str], *names: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Traceback" not in output
    assert result.stderr.startswith("snapcopy cannot start:")
    for name in names:
        assert name in result.stderr, f"{name!r} is not named in:\n{result.stderr}"
    for secret in SECRET_VALUES:
        assert secret not in output


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    return write_policy(tmp_path / "snapcopy.toml", POLICY_TOML)


def test_nothing_configured_names_every_missing_setting() -> None:
    result = run_serve({})

    assert_refused(
        result,
        "SLACK_BOT_TOKEN",
        "SLACK_SIGNING_SECRET",
        "HUAWEICLOUD_SDK_AK",
        "HUAWEICLOUD_SDK_SK",
        "HUAWEICLOUD_SDK_PROJECT_ID",
        "DWS_REGION or DWS_ENDPOINT",
        "snapcopy.toml does not exist",
    )
    # One message: every problem is one bullet of it.
    assert result.stderr.count("\n  - ") == 7


@pytest.mark.parametrize(
    ("change", "named"),
    [
        pytest.param(
            {"SLACK_BOT_TOKEN": USER_TOKEN},
            "SLACK_BOT_TOKEN does not start with 'xoxb-'",
            id="user-token",
        ),
        pytest.param({"DWS_REGION": "Frankfurt"}, "DWS_REGION 'Frankfurt'", id="bad-region"),
        pytest.param({"PORT": "eighty"}, "PORT", id="port-not-a-number"),
        pytest.param(
            {"DWS_REGION": None, "DWS_ENDPOINT": "dws.example.com"},
            "DWS_ENDPOINT",
            id="endpoint-not-a-url",
        ),
        pytest.param({"SNAPCOPY_POLL_SECONDS": "-1"}, "SNAPCOPY_POLL_SECONDS", id="negative-poll"),
        pytest.param({"HUAWEICLOUD_SDK_SK": "  "}, "HUAWEICLOUD_SDK_SK is not set", id="blank-sk"),
    ],
)
def test_malformed_setting_is_named(
    policy: Path, change: dict[str, str | None], named: str
) -> None:
    result = run_serve(GOOD_ENV | change)

    assert_refused(result, named)
    assert result.stderr.count("\n  - ") == 1


def test_every_problem_is_reported_together(tmp_path: Path) -> None:
    write_policy(tmp_path / "snapcopy.toml", '[roles]\nrequester = ["alice"]\n')

    result = run_serve(GOOD_ENV | {"SLACK_BOT_TOKEN": USER_TOKEN, "DWS_REGION": "Frankfurt"})

    assert_refused(result, "SLACK_BOT_TOKEN", "DWS_REGION", "'alice'")
    assert result.stderr.count("\n  - ") == 3


def test_missing_policy_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "policy.toml"

    result = run_serve(GOOD_ENV | {"SNAPCOPY_POLICY": str(missing)})

    assert_refused(result, str(missing), "does not exist", "SNAPCOPY_POLICY")


@pytest.mark.parametrize(
    ("policy_text", "named"),
    [
        pytest.param('[roles\nrequester = ["U0A"]\n', "not valid TOML", id="bad-toml"),
        pytest.param(
            '[roles]\nrequestor = ["U0A"]\n', "unknown key 'roles.requestor'", id="unknown-key"
        ),
        pytest.param(
            '[roles]\napprover = ["bob@example.com"]\n', "'bob@example.com'", id="not-a-slack-id"
        ),
        pytest.param('[approval]\nrequired = "yes"\n', "'approval.required'", id="wrong-type"),
        pytest.param(
            "[approval]\nexpires_after_minutes = 0\n",
            "'approval.expires_after_minutes'",
            id="zero-expiry",
        ),
    ],
)
def test_malformed_policy_is_named(tmp_path: Path, policy_text: str, named: str) -> None:
    path = write_policy(tmp_path / "snapcopy.toml", policy_text)

    result = run_serve(GOOD_ENV)

    assert_refused(result, path.name, named)


def test_socket_mode_needs_an_app_token(policy: Path) -> None:
    result = run_serve(GOOD_ENV, "--socket")

    assert_refused(result, "SLACK_APP_TOKEN is not set", "connections:write")
    # Socket Mode does not verify signatures, so it does not ask for the signing secret.
    assert "SLACK_SIGNING_SECRET" not in result.stderr


def test_socket_mode_rejects_a_bot_token_as_app_token(policy: Path) -> None:
    result = run_serve(GOOD_ENV | {"SLACK_APP_TOKEN": APP_TOKEN_LOOKALIKE}, "--socket")

    assert_refused(result, "SLACK_APP_TOKEN does not start with 'xapp-'")


def test_settings_are_read_from_a_dotenv_file(tmp_path: Path, policy: Path) -> None:
    lines = [f"{name}={value}" for name, value in GOOD_ENV.items()]
    (tmp_path / ".env").write_text("\n".join(lines) + "\nDWS_REGION=Frankfurt\n")

    result = run_serve({})

    # Everything else came from .env: the region is the only complaint.
    assert_refused(result, "DWS_REGION 'Frankfurt'")
    assert result.stderr.count("\n  - ") == 1


def test_bad_port_option_is_a_usage_error() -> None:
    result = run_serve({}, "--port", "http")

    assert result.returncode == 2
    assert "not a port number" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_database_directory_that_does_not_exist_is_named_not_created(
    tmp_path: Path, policy: Path
) -> None:
    unmounted = tmp_path / "volume" / "data"
    env = GOOD_ENV | {"SNAPCOPY_DB": str(unmounted / "snapcopy.db"), "SNAPCOPY_POLICY": str(policy)}

    result = run_serve(env)

    assert_refused(result, "SNAPCOPY_DB", str(unmounted), "does not exist")
    assert not unmounted.exists(), "an unmounted volume must not become a fresh, empty log"


@pytest.mark.parametrize(
    ("where", "says"),
    [
        ("/proc/self/snapcopy.db", "read-only for this user"),  # read-only even for root
        ("{tmp}/snapcopy.db/inner.db", "is not a directory"),
        ("{tmp}", "is a directory"),
    ],
)
def test_a_database_path_that_cannot_be_written_is_a_clear_error(
    tmp_path: Path, policy: Path, where: str, says: str
) -> None:
    (tmp_path / "snapcopy.db").write_text("")
    path = where.format(tmp=tmp_path)
    env = GOOD_ENV | {"SNAPCOPY_DB": path, "SNAPCOPY_POLICY": str(policy)}

    result = run_serve(env)

    assert_refused(result, "SNAPCOPY_DB", says)


# --- a database that cannot be used: one sentence, exit 2 (regression: a full volume made a
# restart exit 3 with uvicorn's traceback, and a damaged index was found only by the first
# request) -----------------------------------------------------------------------------------------


def _made(path: Path) -> Path:
    store = Store(path)
    store.create(
        NewRequest(
            source_snapshot_id="4ca46bf1-5c61-48ff-b4f3-0ad4e5e3ba90",
            backup_name="keep-me",
            requested_by="U0REQUEST",
            channel_id="C0INCIDENT",
        ),
        state=State.PENDING_APPROVAL,
        expires_at=None,
        actor="U0REQUEST",
    )
    store.close()
    return path


def _one_sentence(result: subprocess.CompletedProcess[str], *says: str) -> None:
    assert_refused(result, "SNAPCOPY_DB", *says)
    assert result.stderr.count("\n  - ") == 1, result.stderr
    assert result.stderr.rstrip().endswith("then start snapcopy again."), result.stderr


def test_a_full_volume_stops_start_up_with_one_sentence(small_volume: Path, policy: Path) -> None:
    db = _made(small_volume / "snapcopy.db")
    fill_volume(small_volume)

    result = run_serve(GOOD_ENV | {"SNAPCOPY_DB": str(db), "SNAPCOPY_POLICY": str(policy)})

    _one_sentence(result, "is on a full disk", "free some space")


def test_a_damaged_database_stops_start_up_with_one_sentence(tmp_path: Path, policy: Path) -> None:
    db = _made(tmp_path / "snapcopy.db")
    damage_an_index(db)

    result = run_serve(GOOD_ENV | {"SNAPCOPY_DB": str(db), "SNAPCOPY_POLICY": str(policy)})

    _one_sentence(result, "is damaged", "restore it from a backup")


def test_a_database_another_writer_holds_stops_start_up_with_one_sentence(
    tmp_path: Path, policy: Path
) -> None:
    db = _made(tmp_path / "snapcopy.db")
    hold_write_lock(db, seconds=15)  # longer than start-up waits for it

    result = run_serve(GOOD_ENV | {"SNAPCOPY_DB": str(db), "SNAPCOPY_POLICY": str(policy)})

    _one_sentence(result, "is held by another process", "stop the process that holds it")


def test_a_read_only_volume_stops_start_up_with_one_sentence(
    small_volume: Path, policy: Path
) -> None:
    db = _made(small_volume / "snapcopy.db")
    remounted = subprocess.run(["mount", "-o", "remount,ro", str(small_volume)])
    assert remounted.returncode == 0

    result = run_serve(GOOD_ENV | {"SNAPCOPY_DB": str(db), "SNAPCOPY_POLICY": str(policy)})

    assert_refused(result, "SNAPCOPY_DB", "read-only")
    assert result.stderr.count("\n  - ") == 1, result.stderr


# --- the bot token, asked of Slack at start -----------------------------------------------------


@pytest.mark.process
def test_a_revoked_token_stops_start_up_with_one_sentence(
    slack: SlackStandIn, slack_only_env: dict[str, str]
) -> None:
    slack.expected_token = "xoxb-1-2-theOneSlackAccepts"  # ours is not it: invalid_auth

    port = str(free_port())  # never listened on: start-up stops before serving
    result = run_serve(slack_only_env | {"DWS_ENDPOINT": "http://127.0.0.1:9"}, "--port", port)

    assert_refused(result, "Slack refused SLACK_BOT_TOKEN (invalid_auth)", "Reinstall the app")
    assert result.stderr.count("\n  - ") == 1


@pytest.mark.process
def test_slack_down_at_start_is_a_warning_and_the_token_is_asked_again(
    start_process: StartServer, slack: SlackStandIn, slack_only_env: dict[str, str]
) -> None:
    slack.fail_next("auth.test", error="service_unavailable", status=503)

    server = start_process(slack_only_env)

    deadline = time.monotonic() + 10
    while len(slack.calls("auth.test")) < 2:
        assert time.monotonic() < deadline, "the token was not asked about again"
        time.sleep(0.05)
    records = server.log_records()
    assert any("could not be asked" in r["message"] for r in records)
    while not any(r["message"] == "Slack accepts the bot token" for r in server.log_records()):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert server.health()["ok"] is True


@pytest.mark.process
def test_a_policy_where_nobody_can_approve_is_a_warning(
    start_process: StartServer, slack_only_env: dict[str, str]
) -> None:
    server = start_process(slack_only_env, policy={"roles": {"requester": ["U0REQUEST"]}})

    warnings = [r for r in server.log_records() if r["level"] == "WARNING"]

    assert any("[approval] requires approval" in r["message"] for r in warnings), warnings
