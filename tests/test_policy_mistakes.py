"""Policy mistakes caught before they bite (issue 25), and the policy reloaded on SIGHUP.

Regressions: `approvals = 3` with two possible approvers started silently and no request could
ever be approved; `[rules]` for `[[rules]]` was "Input should be a valid tuple"; a group's name
where its ID belongs got advice about copying a member's ID; a token without usergroups:read
made group members "try again in a minute", forever; and a policy change needed a restart.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import pytest

from bot.domain import State
from bot.errors import ConfigError
from bot.policy import parse_policy
from bot.slack.ids import Action
from tests.conftest import StartServer
from tests.flow import ask_for_copy, automated, click, ephemeral_to, wait_state
from tests.harness import (
    ADMIN,
    APPROVER,
    ONCALL_GROUP,
    ONCALL_MEMBER,
    POLICY_TOML,
    REQUESTER,
    BotServer,
    write_policy,
)
from tests.slack_standin import SlackStandIn


def problems(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_policy(text, source="snapcopy.toml")
    return "\n".join(caught.value.problems)


# --- the file's shape ----------------------------------------------------------------------------


def test_rules_written_as_one_table_is_a_plain_sentence_with_the_line() -> None:
    found = problems('[roles]\napprover = ["U0A"]\n\n[rules]\nclusters = ["prod-*"]\n')

    assert found == (
        "snapcopy.toml: line 4: [rules] should be [[rules]]: rules is a list of tables, one per "
        "rule, each starting with its own [[rules]] line."
    )
    assert "tuple" not in found


def test_roles_written_as_a_list_of_tables_is_named_too() -> None:
    found = problems('[[roles]]\napprover = ["U0A"]\n')

    assert "line 1: [[roles]] should be [roles]: roles is one table." in found


# --- names where IDs belong ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["@dba-oncall", "dba-oncall", "DBA team", "alice"])
def test_a_name_where_an_id_belongs_gets_advice_about_groups(name: str) -> None:
    found = problems(f'[roles]\napprover = ["{name}"]\n')

    assert f"'{name}' is not a Slack user ID" in found
    assert "Administration → User groups" in found and "'Copy group ID' (S…)" in found


def test_a_channel_id_where_a_person_belongs_is_called_a_channel() -> None:
    found = problems('[approval]\nnotify = ["C0SECURITY"]\n')

    assert "but a channel's" in found


# --- more approvals than approvers ---------------------------------------------------------------


def test_more_approvals_than_listed_people_can_give_is_a_warning() -> None:
    policy = parse_policy(
        '[roles]\napprover = ["U0A"]\nadmin = ["U0B"]\n[approval]\napprovals = 3\n'
        '[[rules]]\nclusters = ["prod-*"]\napprovers = ["U0C", "U0D"]\napprovals = 2\n'
    )

    assert policy.warnings() == [
        "[approval] needs 3 approvals, but only 2 people may give one (its approvers and the "
        "admins): its requests can never be approved."
    ]


def test_groups_are_counted_through_their_members() -> None:
    policy = parse_policy('[roles]\napprover = ["S0DBAS"]\n[approval]\napprovals = 2\n')
    assert policy.warnings() == [], "at start the group's members are not known"

    short = policy.short_of_approvers(lambda group: frozenset({"U0ONLY"}))
    assert short and short[0].startswith("[approval] needs 2 approvals, but only 1 person")
    assert policy.short_of_approvers(lambda group: frozenset({"U0A", "U0B"})) == []


def test_start_up_warns_of_more_approvals_than_approvers(
    start_server: StartServer, dws: Any
) -> None:
    server = start_server(policy=POLICY_TOML + "approvals = 3\n")

    said = [r["message"] for r in server.log_records() if r["level"] == "WARNING"]
    assert any("[approval] needs 3 approvals, but only 2 people" in m for m in said), said


# --- a token without usergroups:read -------------------------------------------------------------


def test_without_usergroups_read_group_members_are_told_the_truth(
    start_server: StartServer, slack: SlackStandIn, dws: Any
) -> None:
    slack.scopes.remove("usergroups:read")
    server = start_server()

    said = [r["message"] for r in server.log_records() if r["level"] == "WARNING"]
    assert any(
        "lacks the usergroups:read scope" in m and f"given to {ONCALL_GROUP} count for nobody" in m
        for m in said
    ), said

    server.command(ONCALL_MEMBER, "", response_url=slack.response_url("open"))
    told = slack.wait_for("response_url", lambda c: "user groups" in c["text"])["text"]
    assert "snapcopy cannot read user groups" in told and "usergroups:read" in told
    assert "Try again in a minute" not in told

    server.command(ONCALL_MEMBER, "roles", response_url=slack.response_url("roles"))
    roles = slack.wait_for("response_url", lambda c: "You hold no" in c["text"])["text"]
    assert "snapcopy cannot read user groups" in roles


def test_with_usergroups_read_roles_say_nothing_of_it(
    server: BotServer, slack: SlackStandIn
) -> None:
    server.command(ONCALL_MEMBER, "roles", response_url=slack.response_url("roles"))
    roles = slack.wait_for("response_url", lambda c: "Your roles" in c["text"])["text"]
    assert "cannot read user groups" not in roles


# --- reloading the policy ------------------------------------------------------------------------

NEWCOMER = "U0NEWBIE"


def test_a_reloaded_policy_decides_new_requests_and_old_ones_keep_their_approvers(
    start_server: StartServer, slack: SlackStandIn, dws: Any, dws_snapshots: list[Any]
) -> None:
    server = start_server()
    source = automated(dws_snapshots).id
    before = ask_for_copy(server, slack, REQUESTER, source, "made-before")
    path = Path(server.env["SNAPCOPY_POLICY"] or "")
    path.write_text(POLICY_TOML.replace(f'"{APPROVER}"', f'"{NEWCOMER}"'), encoding="utf-8")

    assert server.runtime.reload_policy() is True

    after = ask_for_copy(server, slack, REQUESTER, source, "made-after")
    click(server, NEWCOMER, Action.APPROVE, before)
    ephemeral_to(slack, NEWCOMER, "approver role")
    click(server, APPROVER, Action.APPROVE, before)  # fixed when it was made
    wait_state(server, before, State.SUCCEEDED)
    click(server, NEWCOMER, Action.APPROVE, after)
    wait_state(server, after, State.SUCCEEDED)
    assert any(r["message"] == "policy reloaded" for r in server.log_records())


def test_a_bad_policy_file_keeps_the_old_policy_and_says_why(
    start_server: StartServer, slack: SlackStandIn, dws: Any, dws_snapshots: list[Any]
) -> None:
    server = start_server()
    path = Path(server.env["SNAPCOPY_POLICY"] or "")
    path.write_text(POLICY_TOML + '\n[rules]\nclusters = ["prod-*"]\n', encoding="utf-8")

    assert server.runtime.reload_policy() is False

    [error] = [r for r in server.log_records() if r["level"] == "ERROR"]
    assert error["message"].startswith("policy not reloaded, the one in force stays: ")
    assert "[rules] should be [[rules]]" in error["message"]
    request = ask_for_copy(server, slack, REQUESTER, automated(dws_snapshots).id, "still-old")
    click(server, APPROVER, Action.APPROVE, request)
    wait_state(server, request, State.SUCCEEDED)


@pytest.mark.process
def test_sighup_reloads_the_policy_of_a_running_bot(
    start_process: StartServer, tmp_path: Path
) -> None:
    path = write_policy(tmp_path / "reloaded.toml", POLICY_TOML)
    server = start_process(env_overrides={"SNAPCOPY_POLICY": str(path)})

    path.write_text(POLICY_TOML + "[[rules]\n", encoding="utf-8")
    server.process.send_signal(signal.SIGHUP)  # type: ignore[attr-defined]
    wait_for_log(server, "policy not reloaded")
    path.write_text(POLICY_TOML.replace(f'"{ADMIN}"', f'"{NEWCOMER}"'), encoding="utf-8")
    server.process.send_signal(signal.SIGHUP)  # type: ignore[attr-defined]
    wait_for_log(server, "policy reloaded")

    assert server.health()["ok"] is True, "still serving"


def wait_for_log(server: BotServer, message: str, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        for record in server.log_records():
            if record["message"].startswith(message):
                return record
        if time.monotonic() > deadline:
            raise AssertionError(f"no log line {message!r} in:\n{server.stderr()}")
        time.sleep(0.05)
