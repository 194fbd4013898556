"""Answers to `/snapcopy help|list|status|roles` (and `@snapcopy help`): plain mrkdwn text."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.domain import EVERYONE, CopyRequest, Deletion, Role, State, parse_request_id
from bot.durations import parse_when
from bot.errors import GROUPS_UNREADABLE, BadInput
from bot.slack import mrkdwn, views
from bot.slack.services import Services

LIST_LIMIT = 10


def help_text() -> str:
    return "\n".join(
        [
            "*snapcopy* copies a GaussDB(DWS) automated snapshot once a second person approves.",
            "• `/snapcopy [snapshot_id]`: open the copy form (the request is posted here).",
            "• `/snapcopy list`: your recent requests and those waiting for your approval.",
            "• `/snapcopy status <request id>`: where one request stands.",
            "• `/snapcopy roles`: your roles and where they come from.",
            "• `/snapcopy cancel <request id>`: withdraw a request still waiting for approval.",
            "• `/snapcopy keep <request id> <date or duration>`: keep its copy until then "
            "(`2026-12-31`, `30d`).",
            "• `/snapcopy delete <request id>`: ask for its copy's deletion (approved like the "
            "copy was).",
            "• In an incident thread: the message shortcut *Copy DWS snapshot*, or "
            "`@snapcopy copy <snapshot_id> <name> [description…] [reason: <text>]`, keeps "
            "everything in that thread; `@snapcopy status <id>`, `@snapcopy list` and "
            "`@snapcopy help` work there too.",
        ]
    )


def answer(services: Services, kind: str, argument: str | None, user: str) -> str:
    if kind == "help":
        return help_text()
    if kind == "list":
        return list_text(services, user)
    if kind == "status":
        return status_text(services, argument, user)
    if kind == "roles":
        return roles_text(services, user)
    if kind == "cancel":
        return cancel_text(services, argument, user)
    return help_text()


def request_line(request: CopyRequest) -> str:
    line = (
        f"*{request.label}* {mrkdwn.escape(request.backup_name)} ← `{request.source_snapshot_id}`"
        f" · {views.STATE_LABEL[request.state]}"
    )
    if request.new_snapshot_id:
        line += f" · new `{request.new_snapshot_id}`"
    if request.keep_until and request.state == State.SUCCEEDED:
        line += f" · kept until {mrkdwn.slack_date(request.keep_until)}"
    return line


def list_text(services: Services, user: str) -> str:
    mine = services.store.find(requested_by=user, limit=LIST_LIMIT)
    waiting = waiting_for(services, user)[:LIST_LIMIT]
    parts = ["*Waiting for your approval*"]
    parts += [request_line(request) for request in waiting] or ["_nothing_"]
    reviews = to_review(services, user)
    if reviews:
        parts += ["", "*Emergency copies to review*"]
        parts += [
            request_line(request) + (" · *review overdue*" if request.review_late else "")
            for request in reviews
        ]
    parts += ["", "*Your recent requests*"]
    parts += [request_line(request) for request in mine] or ["_none yet_"]
    return "\n".join(parts)


def waiting_for(services: Services, user: str, limit: int = 100) -> list[CopyRequest]:
    """Requests this person may approve now (their own only where self-approval is allowed)."""
    return [
        request
        for request in services.store.find(states=[State.PENDING_APPROVAL], limit=limit)
        if (request.requested_by != user or request.allow_self_approval)
        and user not in request.approvals
        and services.copies.may_decide(user, request)
    ]


def to_review(services: Services, user: str, limit: int = 100) -> list[CopyRequest]:
    """Emergency copies this person may review that nobody has reviewed yet."""
    return [
        request
        for request in services.store.find(limit=limit)
        if request.break_glass
        and request.reviewed_by is None
        and request.requested_by != user
        and services.roles.is_among(user, services.roles.deciders(request))
    ]


def _request_number(argument: str | None, subcommand: str) -> int:
    number = parse_request_id(argument or "")
    if number is None:
        raise BadInput(
            "request_id",
            f"Usage: `/snapcopy {subcommand} <request id>`, for example "
            f"`/snapcopy {subcommand} 12`.",
        )
    return number


def decision_text(services: Services, kind: str, argument: str | None, rest: str, user: str) -> str:
    """`cancel`, `keep` and `delete`: decided (and committed) before Slack hears back."""
    if kind == "keep":
        return keep_text(services, argument, rest, user)
    if kind == "delete":
        number = _request_number(argument, "delete")
        request = services.retention.ask_delete(number, user)
        if request.deletion == Deletion.APPROVED:
            return f"Deleting the copy of request {request.label}; its thread hears when done."
        return f"Asked, in its thread, for the deletion of request {request.label}'s copy."
    return cancel_text(services, argument, user)


def keep_text(services: Services, argument: str | None, when: str, user: str) -> str:
    number = _request_number(argument, "keep")
    if not when:
        raise BadInput("keep_until", "Usage: `/snapcopy keep <request id> <date or duration>`.")
    try:
        until = parse_when(when, datetime.now(UTC), ahead=True, day_end=True)
    except ValueError as error:
        raise BadInput("keep_until", f"{error}.") from None
    request = services.retention.keep(number, user, until=until)
    until_text = mrkdwn.slack_date(request.keep_until)
    return f"The copy of request {request.label} is kept until {until_text}."


def cancel_text(services: Services, argument: str | None, user: str) -> str:
    request = services.copies.cancel(_request_number(argument, "cancel"), user)
    return f"Request {request.label} is cancelled; nothing will be copied."


def status_text(services: Services, argument: str | None, user: str) -> str:
    request = services.copies.status(_request_number(argument, "status"), user)
    lines = [request_line(request), views.outcome_line(request)]
    requested = mrkdwn.slack_date(request.created_at)
    lines.append(f"Requested by {mrkdwn.mention(request.requested_by)} {requested}")
    if request.error:
        lines.append(f"Error: {mrkdwn.escape(request.error)}")
    return "\n".join(lines)


def roles_text(services: Services, user: str) -> str:
    grants = services.roles.grants(user)
    groups = any(holder.startswith("S") for holder in services.copies.policy.ids())
    unreadable = ""
    if groups and not services.copies.groups_readable():
        unreadable = f"\n{GROUPS_UNREADABLE} Roles given to user groups count for nobody."
    if not grants:
        return (
            "You hold no snapcopy role. Ask an admin "
            f"({mrkdwn.mentions(services.roles.admins())}) to add you to the policy." + unreadable
        )
    roles = sorted(services.roles.roles_of(user), key=list(Role).index)
    lines = [f"Your roles: {', '.join(f'`{role}`' for role in roles)}"]
    for grant in grants:
        source = f"through {mrkdwn.mention(grant.via)}" if grant.via else "listed by user ID"
        if grant.via == EVERYONE:
            source = "everyone holds it: the sandbox runs without a policy file"
        lines.append(f"• `{grant.role}`: {source}")
    return "\n".join(lines) + unreadable
