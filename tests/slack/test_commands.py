"""`/snapcopy help | list | status <id> | roles` and words it does not know.

Each answer is private to the person who typed the command: text alone (help, an unknown word)
comes back in the acknowledgement itself; answers that need a lookup go to the command's
response_url. Both are ephemeral, open no modal and post nothing in the channel.
"""

from __future__ import annotations

from typing import Any

import pytest

from bot.domain import CopyRequest, State
from bot.slack.ids import Action, Block, Callback
from tests import slackreq
from tests.flow import ask_for_copy, automated, click, timed, wait_for_reply, wait_state
from tests.harness import ADMIN, APPROVER, ONCALL_MEMBER, OUTSIDER, REQUESTER, BotServer
from tests.slack_standin import SlackStandIn

WAITING, RECENT = "*Waiting for your approval*", "*Your recent requests*"


def ask(server: BotServer, slack: SlackStandIn, user: str, text: str, name: str) -> str:
    """Type `/snapcopy <text>` and return the private answer's text."""
    url = slack.response_url(name)
    answer = timed(server.command, user, text, response_url=url)
    assert answer.status_code == 200, answer.text
    told = slack.wait_for("response_url", lambda call: call.path.endswith(f"/{name}"))
    assert told["response_type"] == "ephemeral", told.params
    said: str = told["text"]
    return said


def ask_in_ack(server: BotServer, user: str, text: str) -> str:
    """Type `/snapcopy <text>` and return the answer carried by the acknowledgement."""
    answer = timed(server.command, user, text)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["response_type"] == "ephemeral", body
    said: str = body["text"]
    return said


def nothing_else_happened(slack: SlackStandIn) -> None:
    assert not slack.calls("views.open")
    assert not slack.calls("chat.postMessage")
    assert not slack.calls("chat.postEphemeral")


def sections(text: str) -> tuple[list[str], list[str]]:
    """The list answer's two parts, as lines: waiting for me, and mine."""
    assert text.startswith(WAITING) and f"\n\n{RECENT}\n" in text, text
    waiting, recent = text.removeprefix(WAITING + "\n").split(f"\n\n{RECENT}\n")
    return waiting.splitlines(), recent.splitlines()


def line_of(lines: list[str], request: CopyRequest) -> str:
    found = [line for line in lines if line.startswith(f"*#{request.id}* ")]
    assert len(found) == 1, lines
    return found[0]


# --- help and unknown words ----------------------------------------------------------------------


@pytest.mark.parametrize("text", ["help", "HELP", "  help  "])
def test_help_lists_every_subcommand_privately(
    server: BotServer, slack: SlackStandIn, text: str
) -> None:
    told = ask_in_ack(server, OUTSIDER, text)
    for usage in (
        "`/snapcopy [snapshot_id]`",
        "`/snapcopy list`",
        "`/snapcopy status <request id>`",
        "`/snapcopy roles`",
        "Copy DWS snapshot",
        "`@snapcopy copy <snapshot_id> <name> [description…] [reason: <text>]`",
    ):
        assert usage in told
    nothing_else_happened(slack)
    assert not slack.calls("response_url"), "the answer was already in the acknowledgement"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("frobnicate", "`frobnicate`"),
        ("Approve 12", "`Approve`"),
        ("<!here> now", "`&lt;!here&gt;`"),
        ("not-hex", "`not-hex`"),
    ],
    ids=["word", "capitalised-word-with-argument", "channel-ping", "short-non-id"],
)
def test_an_unknown_subcommand_is_named_with_the_help(
    server: BotServer, slack: SlackStandIn, text: str, shown: str
) -> None:
    told = ask_in_ack(server, REQUESTER, text)
    assert told.startswith(f"I don't know {shown}.\n")
    assert "`/snapcopy list`" in told, "the help follows"
    assert "<!here>" not in told
    nothing_else_happened(slack)
    assert server.requests() == []


# --- list ----------------------------------------------------------------------------------------


def test_list_shows_my_recent_requests_and_those_waiting_for_my_approval(
    server: BotServer, slack: SlackStandIn, dws: Any, dws_snapshots: list[Any]
) -> None:
    source = automated(dws_snapshots).id
    first = ask_for_copy(server, slack, REQUESTER, source, "list-first")
    second = ask_for_copy(server, slack, REQUESTER, source, "list-second")
    admins = ask_for_copy(server, slack, ADMIN, source, "list-admins")
    click(server, APPROVER, Action.APPROVE, first)
    copied = wait_state(server, first, State.SUCCEEDED)
    wait_for_reply(slack, copied, f"`{copied.new_snapshot_id}`) is AVAILABLE")

    # A requester approves nothing: only their own requests, newest first, with state and id.
    waiting, recent = sections(ask(server, slack, REQUESTER, "list", "requester"))
    assert waiting == ["_nothing_"]
    assert [line.split()[0] for line in recent] == [f"*#{second.id}*", f"*#{first.id}*"]
    assert "list-second" in line_of(recent, second) and "Waiting for approval" in line_of(
        recent, second
    )
    assert f"← `{source}`" in line_of(recent, first)
    assert "Copied, AVAILABLE" in line_of(recent, first)
    assert f"new `{copied.new_snapshot_id}`" in line_of(recent, first)
    assert f"#{admins.id}" not in "\n".join(recent)

    # An approver sees everything waiting, and has asked for nothing.
    waiting, recent = sections(ask(server, slack, APPROVER, "list", "approver"))
    assert {line.split()[0] for line in waiting} == {f"*#{second.id}*", f"*#{admins.id}*"}
    assert recent == ["_none yet_"]

    # An admin may not approve their own request, so it waits only for others.
    waiting, recent = sections(ask(server, slack, ADMIN, "list", "admin"))
    assert [line.split()[0] for line in waiting] == [f"*#{second.id}*"]
    assert [line.split()[0] for line in recent] == [f"*#{admins.id}*"]
    assert not slack.calls("views.open")


def test_list_for_someone_who_never_asked(server: BotServer, slack: SlackStandIn) -> None:
    waiting, recent = sections(ask(server, slack, OUTSIDER, "list", "outsider"))
    assert (waiting, recent) == (["_nothing_"], ["_none yet_"])
    nothing_else_happened(slack)


# --- status --------------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["{id}", "#{id}"])
def test_status_tells_where_a_waiting_request_stands(
    server: BotServer, slack: SlackStandIn, dws_snapshots: list[Any], form: str
) -> None:
    source = automated(dws_snapshots).id
    request = ask_for_copy(server, slack, REQUESTER, source, "status-waits", "keep it")
    told = ask(server, slack, APPROVER, "status " + form.format(id=request.id), "status")
    lines = told.splitlines()
    assert lines[0].startswith(f"*#{request.id}* status-waits ← `{source}`")
    assert "Waiting for approval" in lines[0]
    assert any(line.startswith(f"Requested by <@{REQUESTER}> <!date^") for line in lines)
    assert not any(line.startswith("Error:") for line in lines)


def test_status_of_a_copied_request_names_the_new_snapshot_and_the_approver(
    server: BotServer, slack: SlackStandIn, dws: Any, dws_snapshots: list[Any]
) -> None:
    request = ask_for_copy(server, slack, REQUESTER, automated(dws_snapshots).id, "status-done")
    click(server, APPROVER, Action.APPROVE, request)
    done = wait_state(server, request, State.SUCCEEDED)
    told = ask(server, slack, REQUESTER, f"status {request.id}", "status")
    assert f"new `{done.new_snapshot_id}`" in told
    assert f"approved by <@{APPROVER}>" in told
    assert "Copied, AVAILABLE" in told


def test_status_of_a_denied_request_gives_who_and_why(
    server: BotServer, slack: SlackStandIn, dws_snapshots: list[Any]
) -> None:
    request = ask_for_copy(server, slack, REQUESTER, automated(dws_snapshots).id, "status-no")
    click(server, APPROVER, Action.DENY, request)
    modal = slack.wait_for("views.open", lambda c: c["view"]["callback_id"] == Callback.DENY_MODAL)
    answer = server.interact(
        slackreq.view_submission(
            APPROVER,
            Callback.DENY_MODAL,
            {Block.DENY_REASON: {Action.DENY_REASON: "use <b>last week's</b>"}},
            modal["view"]["private_metadata"],
        )
    )
    assert answer.status_code == 200
    wait_state(server, request, State.DENIED)
    told = ask(server, slack, REQUESTER, f"status {request.id}", "status")
    assert f"Denied by <@{APPROVER}>: use &lt;b&gt;last week's&lt;/b&gt;" in told
    assert "<b>" not in told


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("status", "Usage: `/snapcopy status <request id>`"),
        ("status abc", "Usage: `/snapcopy status <request id>`"),
        ("status -3", "Usage: `/snapcopy status <request id>`"),
        ("status 4096", "There is no request #4096."),
        ("status #4096", "There is no request #4096."),
    ],
    ids=["missing", "not-a-number", "negative", "unknown", "unknown-with-hash"],
)
def test_status_with_a_bad_or_unknown_id_says_so(
    server: BotServer, slack: SlackStandIn, text: str, answer: str
) -> None:
    told = ask(server, slack, REQUESTER, text, "status")
    assert told.startswith(answer), told
    nothing_else_happened(slack)


# --- roles ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("user", "roles", "sources"),
    [
        (REQUESTER, "`requester`", ["• `requester`: listed by user ID"]),
        (ONCALL_MEMBER, "`requester`", ["• `requester`: through <!subteam^S0ONCALL>"]),
        (APPROVER, "`requester`, `approver`", ["• `approver`: listed by user ID"]),
        (ADMIN, "`requester`, `approver`, `admin`", ["• `admin`: listed by user ID"]),
    ],
    ids=["requester", "group-member", "approver", "admin"],
)
def test_roles_says_which_roles_i_hold_and_where_they_come_from(
    server: BotServer, slack: SlackStandIn, user: str, roles: str, sources: list[str]
) -> None:
    told = ask(server, slack, user, "roles", "roles")
    assert told.splitlines() == [f"Your roles: {roles}", *sources]
    nothing_else_happened(slack)


def test_roles_of_someone_with_none_names_the_admins_to_ask(
    server: BotServer, slack: SlackStandIn
) -> None:
    told = ask(server, slack, OUTSIDER, "roles", "roles")
    assert told.startswith("You hold no snapcopy role.")
    assert f"<@{ADMIN}>" in told
    nothing_else_happened(slack)


def test_a_role_through_a_group_is_lost_when_the_group_lookup_fails(
    start_server: Any, slack: SlackStandIn
) -> None:
    # Failing from the start: the lookup made at start-up must not hand the role out either.
    slack.fail_next("usergroups.users.list", error="missing_scope")
    server = start_server()
    told = ask(server, slack, ONCALL_MEMBER, "roles", "roles")
    assert told.startswith("You hold no snapcopy role."), "a failed lookup grants nothing"
    slack.wait_for("usergroups.users.list")
