"""What can go wrong for a person using snapcopy, as types.

    SnapcopyError            one plain sentence in `.message`, safe to show in Slack
     ├── NotAllowed          the caller lacks the role an action needs
     ├── GroupsUnanswered    Slack could not say whether the person is in a group with the role
     ├── SelfApproval        the requester tried to approve their own request
     ├── AlreadyHandled      somebody else already approved, denied or cancelled it
     ├── AlreadyApproved     this person's approval is counted already (N-of-M)
     ├── RequestExpired      the request waited longer than the policy allows
     ├── UnknownRequest      no request has that id
     ├── WrongRequest        a button or form names a request that is not the one by that id
     ├── BadInput            a field is wrong; `.field` names it (modal block or command word)
     └── StoreUnavailable    the database cannot take the change now (full, locked, damaged, …)

    ConfigError              start-up cannot go on: one line per thing an operator must fix

DWS failures are `bot.dws.DwsError`; they and the SnapcopyError family reach people through one
handler (bot/slack/errors.py). ConfigError reaches the operator at start-up (bot/cli.py).
"""

from __future__ import annotations

from bot.domain import CopyRequest


class SnapcopyError(Exception):
    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class NotAllowed(SnapcopyError):
    def __init__(
        self,
        message: str,
        *,
        needed: str,
        admins: tuple[str, ...] = (),
        request_id: int | None = None,
        actor: str | None = None,
        action: str | None = None,
    ) -> None:
        self.needed = needed
        self.admins = admins  # who can grant the role: the policy's admins
        # What was refused, for the audit log.
        self.request_id = request_id
        self.actor = actor
        self.action = action
        super().__init__(message)


GROUPS_UNREADABLE = (
    "snapcopy cannot read user groups: an admin must reinstall the app with the "
    "usergroups:read scope."
)


class GroupsUnanswered(SnapcopyError):
    """Whether the person holds a role depends on user groups Slack could not tell us about:
    for a moment, or (`unreadable`) until the app is reinstalled with usergroups:read."""

    def __init__(self, groups: list[str], *, unreadable: bool = False) -> None:
        self.groups = groups
        self.unreadable = unreadable
        named = ", ".join(f"<!subteam^{group}>" for group in groups)
        if unreadable:
            message = (
                f"{GROUPS_UNREADABLE} Roles given to {named} count for nobody until then, so "
                "nothing was done."
            )
        else:
            message = (
                f"I could not ask Slack just now whether you are in {named}, which hold that "
                "role; nothing was done. Try again in a minute."
            )
        super().__init__(message)


class SelfApproval(SnapcopyError):
    pass


class AlreadyHandled(SnapcopyError):
    def __init__(self, request: CopyRequest) -> None:
        self.request = request
        super().__init__(f"Request #{request.id} was already handled: it is {request.state}.")


class AlreadyApproved(SnapcopyError):
    """The same person approved twice: it counts once."""

    def __init__(self, request: CopyRequest) -> None:
        self.request = request
        missing = request.approvals_needed - len(request.approvals)
        super().__init__(
            f"You already approved request #{request.id}; it still needs {missing} more "
            f"approval{'s' if missing != 1 else ''} from someone else."
        )


class RequestExpired(SnapcopyError):
    pass


class UnknownRequest(SnapcopyError):
    pass


class WrongRequest(SnapcopyError):
    """A click or a form names request #N with another request's token, or from another
    message than #N's own: a button from before the audit log was replaced, say. Refused and
    audited; `why` says which check failed."""

    def __init__(self, request_id: int, *, known: bool, why: str, actor: str, action: str) -> None:
        self.request_id = request_id
        self.known = known  # whether any request has that id now
        self.why = why
        self.actor = actor
        self.action = action
        if not known:
            message = (
                f"There is no request #{request_id} any more: that button is from before "
                "snapcopy's audit log was replaced; nothing was done. Ask for a new copy if it "
                "is still needed."
            )
        elif why == "message":
            message = (
                f"That button is on an old copy of request #{request_id}'s message, not on the "
                "message I keep up to date; nothing was done. Use the buttons of its latest "
                "message."
            )
        else:
            message = (
                f"That button is for an earlier request #{request_id}, not the one I know by "
                "that number now (snapcopy's audit log was replaced since it was posted); "
                "nothing was done. Ask for a new copy if it is still needed."
            )
        super().__init__(message)


class BadInput(SnapcopyError):
    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(message)


class StoreUnavailable(SnapcopyError):
    """The database could not be read or written just now; nothing was changed.

    `reason` is one of REASONS' keys; the store raises it for SQLite's "database or disk is
    full", "database is locked", "attempt to write a readonly database", I/O errors and a
    damaged file, and for PostgreSQL's server out of reach, credentials refused, privileges
    missing or locks held too long, so that an answer can say plainly that the action did not
    count.
    """

    REASONS = {
        "full": "is on a full disk",
        "locked": "is held by another process",
        "read-only": "is read-only",
        "corrupt": "is damaged",
        "io": "cannot reach its disk",
        "unavailable": "cannot be opened",
        "unreachable": "cannot be reached",
        "refused": "refused snapcopy's user name or password",
        "denied": "does not let snapcopy's user do this",
    }

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason if reason in self.REASONS else "unavailable"
        self.detail = detail
        super().__init__(
            f"This could not be saved: snapcopy's database {self.REASONS[self.reason]}. "
            "Nothing was changed and this did not count; try again in a few minutes."
        )

    @property
    def what(self) -> str:
        """What is wrong, as in "the database ..."."""
        return self.REASONS[self.reason]


class ConfigError(Exception):
    """Start-up cannot go on; `problems` holds one line per thing to fix. `sandbox_needs` is
    what `snapcopy serve --sandbox` would still lack (None: this is the sandbox already)."""

    def __init__(self, problems: list[str], *, sandbox_needs: list[str] | None = None) -> None:
        self.problems = problems
        self.sandbox_needs = sandbox_needs
        super().__init__("\n".join(problems))

    def render(self) -> str:
        lines = ["snapcopy cannot start:"]
        lines += [f"  - {problem}" for problem in self.problems]
        cloud = any(("HUAWEICLOUD_" in p or "DWS_" in p) for p in self.problems)
        if self.sandbox_needs is not None and cloud:
            needs = "; ".join(need.split(":")[0].rstrip(".") for need in self.sandbox_needs)
            verdict = (
                f"it would still need the fixes above to: {needs}."
                if needs
                else "with these settings it would start."
            )
            lines.append(
                "No cloud account yet? `snapcopy serve --sandbox` runs the whole flow against a "
                f"built-in DWS stand-in and needs no HUAWEICLOUD_* or DWS_* setting; {verdict}"
            )
        return "\n".join(lines)
