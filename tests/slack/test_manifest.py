"""What Slack is told (manifest.yaml) and what people read (README, examples) match the code."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.policy import load_policy
from bot.settings import Settings
from bot.slack.commands import SUBCOMMANDS
from bot.slack.ids import COMMAND, Callback
from bot.slack.scopes import NEEDED_SCOPES

REPO_ROOT = Path(__file__).resolve().parents[2]
README = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
CI_RUN = (REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO_ROOT / "manifest.yaml").read_text())
    return loaded


def urls(node: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Every (path, value) whose key names a URL, anywhere in the manifest."""
    if isinstance(node, dict):
        for key, value in node.items():
            where = f"{path}.{key}" if path else key
            if isinstance(value, str) and key.endswith("url"):
                yield where, value
            else:
                yield from urls(value, where)
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from urls(item, f"{path}[{index}]")


# --- manifest.yaml -------------------------------------------------------------------------------


def test_slash_command_is_the_one_the_app_registers(manifest: dict[str, Any]) -> None:
    (command,) = manifest["features"]["slash_commands"]

    assert command["command"] == COMMAND
    hinted = [part.split()[0] for part in command["usage_hint"].split(" | ")]
    assert hinted == ["[snapshot_id]", *SUBCOMMANDS], "the hint lists every subcommand"
    assert command["description"]


def test_message_shortcut_is_the_one_the_app_registers(manifest: dict[str, Any]) -> None:
    (shortcut,) = manifest["features"]["shortcuts"]

    assert shortcut["type"] == "message"
    assert shortcut["callback_id"] == Callback.MESSAGE_SHORTCUT
    assert shortcut["name"] == "Copy DWS snapshot"


def test_the_messages_tab_is_on_for_dm_fallbacks(manifest: dict[str, Any]) -> None:
    # When a channel refuses a message (archived, bot removed), the outbox sends it by DM;
    # Slack delivers a bot's DMs only while the app's Messages tab is enabled.
    home = manifest["features"]["app_home"]
    assert home["messages_tab_enabled"] is True
    assert home["messages_tab_read_only_enabled"] is True


def test_bot_events_are_exactly_the_handled_ones(manifest: dict[str, Any]) -> None:
    events = manifest["settings"]["event_subscriptions"]["bot_events"]

    assert sorted(events) == [
        "app_home_opened",
        "app_mention",
        "subteam_members_changed",
        "subteam_updated",
    ]


def test_every_url_is_the_events_endpoint(manifest: dict[str, Any]) -> None:
    found = dict(urls(manifest))

    assert set(found) == {
        "features.slash_commands[0].url",
        "settings.event_subscriptions.request_url",
        "settings.interactivity.request_url",
        "settings.interactivity.message_menu_options_url",
    }
    for where, url in found.items():
        assert url.startswith("https://"), where
        assert url.endswith("/slack/events"), where


def test_scopes_are_the_least_needed(manifest: dict[str, Any]) -> None:
    assert sorted(manifest["oauth_config"]["scopes"]["bot"]) == sorted(NEEDED_SCOPES)
    assert sorted(NEEDED_SCOPES) == sorted(
        [
            "commands",
            "chat:write",
            "chat:write.public",
            "app_mentions:read",
            "usergroups:read",
            "users:read",
        ]
    )
    assert "user" not in manifest["oauth_config"]["scopes"]


def test_app_settings(manifest: dict[str, Any]) -> None:
    settings = manifest["settings"]
    features = manifest["features"]

    assert settings["interactivity"]["is_enabled"] is True
    assert settings["socket_mode_enabled"] is False
    assert settings["org_deploy_enabled"] is False
    assert settings["token_rotation_enabled"] is False
    assert features["bot_user"]["always_online"] is True
    assert features["app_home"]["home_tab_enabled"] is True


def test_display_information_fits_slack_limits(manifest: dict[str, Any]) -> None:
    info = manifest["display_information"]

    assert 1 <= len(info["name"]) <= 35
    assert len(info["description"]) <= 140
    assert 175 <= len(info["long_description"]) <= 4000
    assert re.fullmatch(r"#[0-9a-fA-F]{6}", info["background_color"])


# --- README and examples -------------------------------------------------------------------------


@pytest.mark.parametrize("name", [name.upper() for name in Settings.model_fields])
def test_every_setting_is_in_the_readme_table(name: str) -> None:
    assert re.search(rf"^\| `{name}` \|", README, re.MULTILINE), f"{name} is not in README.md"


def test_example_policy_parses() -> None:
    policy = load_policy(REPO_ROOT / "snapcopy.example.toml")

    assert policy.approval.required is True
    assert policy.approval.allow_self_approval is False


def first_commands() -> list[str]:
    """The lines of the code block the README starts with."""
    match = re.match(r"```\w*\n(.*?)\n```", README, re.DOTALL)
    assert match, "README.md must start with a code block"
    return match.group(1).splitlines()


def test_readme_starts_with_install_and_run_then_install_and_test() -> None:
    run, test = first_commands()

    assert re.fullmatch(
        r"python3 -m venv \.venv && \.venv/bin/pip install \. && "
        r"\.venv/bin/snapcopy serve",
        run,
    )
    assert re.fullmatch(
        r"python3 -m venv \.venv && \.venv/bin/pip install -e '\.\[test\]' && "
        r"\.venv/bin/pytest",
        test,
    )


def test_ci_installs_exactly_as_the_readme_says() -> None:
    _, test = first_commands()
    readme_install = shlex.split(test.split("&&")[1])[1:]  # pip's arguments

    ci_installs = [
        shlex.split(line)
        for line in CI_RUN.splitlines()
        if re.search(r"/pip\"? install ", line) and not line.lstrip().startswith("#")
    ]
    assert len(ci_installs) == 1
    arguments = [arg for arg in ci_installs[0][1:] if arg != "--quiet"]
    assert arguments == readme_install


def test_ci_is_strict_and_treats_no_tests_as_failure() -> None:
    assert "set -euo pipefail" in CI_RUN
    assert "python3 -m venv" in CI_RUN
    assert 'ruff" check .' in CI_RUN or "ruff check ." in CI_RUN
    assert re.search(r'"\$status" -eq 5', CI_RUN)


def test_procfile_runs_http_and_socket_mode() -> None:
    lines = (REPO_ROOT / "Procfile").read_text().splitlines()

    assert lines == ["web: snapcopy serve --port $PORT", "worker: snapcopy serve --socket"]
