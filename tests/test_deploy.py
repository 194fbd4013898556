"""What a deployment needs beside the code: the file a platform's buildpack detects the app by,
an example of every setting, and a warning for a setting's name mistyped.

Regressions (issue 25): Heroku's Python buildpack does not detect a project with only
pyproject.toml; there was no list of settings to start a `.env` from; and
`SNAPCOPY_POLL_SECOND=5` was silently ignored.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from bot.settings import Settings, misspelt_variables, variables_set
from tests.conftest import StartServer
from tests.harness import REPO_ROOT

PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
ENV_EXAMPLE = REPO_ROOT / ".env.example"
_SETTING_LINE = re.compile(r"^(# )?([A-Z][A-Z0-9_]*)=(.*)$")


def requirement_lines() -> list[str]:
    text = (REPO_ROOT / "requirements.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and line[0] != "#"]


def test_requirements_txt_installs_the_project_with_pyprojects_dependencies_pinned() -> None:
    """The buildpack installs `requirements.txt`; it must install snapcopy itself and pin
    exactly the runtime dependencies pyproject.toml declares, within their ranges."""
    first, *pinned = requirement_lines()
    assert first == ".", "snapcopy itself, built from pyproject.toml (not editable)"
    declared = {
        canonicalize_name(r.name): r for r in map(Requirement, PYPROJECT["project"]["dependencies"])
    }
    pins = {}
    for line in pinned:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)(?:\[([a-z,]+)\])?==([0-9][A-Za-z0-9.]*)", line)
        assert match, f"requirements.txt: '{line}' is not name[extras]==version"
        name = canonicalize_name(match[1])
        pins[name] = match[3]
        extras = set(filter(None, (match[2] or "").split(",")))
        assert extras == declared[name].extras, f"{name}: the same extras in both files"
    assert sorted(pins) == sorted(declared), "add or remove the dependency in both files"
    for name, version in pins.items():
        assert declared[name].specifier.contains(version), (
            f"{name}=={version} is outside pyproject.toml's {declared[name].specifier}"
        )


def env_example() -> dict[str, tuple[str, bool]]:
    """NAME → (value, whether the line is commented out)."""
    found = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        match = _SETTING_LINE.match(line)
        if match:
            assert match[2] not in found, f"{match[2]} is listed twice"
            found[match[2]] = (match[3], bool(match[1]))
    return found


def test_env_example_lists_every_setting() -> None:
    assert sorted(env_example()) == sorted(name.upper() for name in Settings.model_fields)


@pytest.mark.parametrize("name", list(Settings.model_fields))
def test_env_example_gives_each_setting_its_default(name: str) -> None:
    value, commented = env_example()[name.upper()]
    default = Settings.model_fields[name].default
    if default is None:
        assert value == "", "a setting with no default is left empty"
    else:
        assert not commented
        assert type(default)(value) == default


def test_env_example_copied_to_dot_env_changes_no_default(isolated: Path) -> None:
    (isolated / ".env").write_text(ENV_EXAMPLE.read_text(encoding="utf-8"), encoding="utf-8")
    from_example = Settings()
    defaults = Settings(_env_file=None)  # type: ignore[call-arg]
    for name, field in Settings.model_fields.items():
        if field.default is not None:
            assert getattr(from_example, name) == getattr(defaults, name), name


# --- misspelt variables ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "closest"),
    [
        ("SNAPCOPY_POLL_SECOND", "SNAPCOPY_POLL_SECONDS"),
        ("snapcopy_loglevel", "SNAPCOPY_LOG_LEVEL"),
        ("SNAPCOPY_DATABASE", "SNAPCOPY_DB"),
        ("SLACK_BOT_TOKN", "SLACK_BOT_TOKEN"),
        ("SLACK_SIGNING_SECRETS", "SLACK_SIGNING_SECRET"),
        ("DWS_REGOIN", "DWS_REGION"),
        ("DWS_PROJECT_ID", "HUAWEICLOUD_SDK_PROJECT_ID"),
    ],
)
def test_a_misspelt_variable_is_named_with_the_closest_setting(name: str, closest: str) -> None:
    assert misspelt_variables([name]) == [
        f"{name.upper()} is not a snapcopy setting and is ignored: did you mean {closest}?"
    ]


@pytest.mark.parametrize(
    "name",
    ["SLACK_BOT_TOKEN", "slack_bot_token", "SLACK_CLIENT_ID", "SLACK_WEBHOOK_URL", "PATH", "PORT"],
)
def test_settings_and_other_tools_variables_are_not_flagged(name: str) -> None:
    assert misspelt_variables([name]) == []


def test_an_unknown_snapcopy_variable_is_flagged_even_with_nothing_close() -> None:
    [warning] = misspelt_variables(["SNAPCOPY_XYZZY"])
    assert warning.startswith("SNAPCOPY_XYZZY is not a snapcopy setting and is ignored")


def test_variables_set_reads_the_environment_and_dot_env(isolated: Path) -> None:
    (isolated / ".env").write_text("SNAPCOPY_POLICY=x.toml\nexport DWS_REGOIN=eu\n")
    assert variables_set({"PATH": "/bin"}) == {"PATH", "SNAPCOPY_POLICY", "DWS_REGOIN"}


def test_start_up_warns_of_misspelt_variables_in_the_environment_and_dot_env(
    start_server: StartServer, monkeypatch: pytest.MonkeyPatch, isolated: Path
) -> None:
    monkeypatch.setenv("SNAPCOPY_POLL_SECOND", "5")
    (isolated / ".env").write_text("SLACK_SIGNING_SECRETS=x\n", encoding="utf-8")

    server = start_server()

    warnings = [
        record["message"]
        for record in server.log_records()
        if record["level"] == "WARNING" and record["message"].startswith("settings: ")
    ]
    assert warnings == [
        "settings: SLACK_SIGNING_SECRETS is not a snapcopy setting and is ignored: did you mean "
        "SLACK_SIGNING_SECRET?",
        "settings: SNAPCOPY_POLL_SECOND is not a snapcopy setting and is ignored: did you mean "
        "SNAPCOPY_POLL_SECONDS?",
    ]
