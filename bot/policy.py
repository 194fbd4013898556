"""The policy file: who holds which role, and how requests are approved, per cluster.

Read once at start (TOML), validated with pydantic, every problem reported together with the
line of the `[[rules]]` table at fault. `Policy.for_cluster` is the approval rule a new request
is given; a request keeps it, whatever later happens to the file.
"""

from __future__ import annotations

import fnmatch
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
)

from bot.domain import EVERYONE, Role
from bot.errors import ConfigError

_SLACK_ID = re.compile(r"[UWS][A-Z0-9]{2,}")

GroupMembers = Callable[[str], frozenset[str]]


def _strict_int(value: object) -> object:
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError("must be a whole number")
    return value


_ID_LIKE = re.compile(r"[A-Z][A-Z0-9]{2,}")


def _slack_id(value: str) -> str:
    if _SLACK_ID.fullmatch(value):
        return value
    problem = f"'{value}' is not a Slack user ID (U…/W…) or user-group ID (S…)"
    if value.startswith("C") and _ID_LIKE.fullmatch(value):
        raise ValueError(
            f"{problem} but a channel's: roles, approvers and notify name people and user groups"
        )
    if _ID_LIKE.fullmatch(value):
        raise ValueError(f"{problem}; find it in the person's profile → ⋮ → 'Copy member ID'")
    raise ValueError(
        f"{problem} but a name, and snapcopy needs the ID. For a user group: Slack → "
        "Administration → User groups (or the group's page) → ⋮ → 'Copy group ID' (S…); for "
        "a person: their profile → ⋮ → 'Copy member ID' (U…)"
    )


def _listed(value: object) -> object:
    """A single string where a list is expected is a list of one."""
    return [value] if isinstance(value, str) else value


SlackId = Annotated[str, AfterValidator(_slack_id)]
SlackIds = Annotated[tuple[SlackId, ...], BeforeValidator(_listed)]
_CHANNEL_OR_ID = re.compile(r"[CGUWS][A-Z0-9]{2,}")


def _channel_or_person(value: str) -> str:
    if not _CHANNEL_OR_ID.fullmatch(value):
        raise ValueError(
            f"'{value}' is not a Slack channel ID (C…/G…), user ID (U…/W…) or user-group ID (S…)"
        )
    return value


NotifyTarget = Annotated[str, AfterValidator(_channel_or_person)]

# Bounds that keep every date the policy makes computable and every wait humane.
MAX_MINUTES = 60 * 24 * 90  # 90 days
MAX_APPROVALS = 10
Minutes = Annotated[float, Field(gt=0, le=MAX_MINUTES, allow_inf_nan=False)]
MAX_DAYS = 3650  # ten years: a keep-until must stay a date people can read
Days = Annotated[float, Field(gt=0, le=MAX_DAYS, allow_inf_nan=False)]
Approvals = Annotated[int, Field(ge=1, le=MAX_APPROVALS), BeforeValidator(_strict_int)]


class Roles(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    requester: SlackIds = ()
    approver: SlackIds = ()
    admin: SlackIds = ()

    def holders(self, role: Role) -> tuple[str, ...]:
        held: tuple[str, ...] = getattr(self, role.value)
        return held


APPROVAL_KEYS = (
    "required",
    "approvals",
    "allow_self_approval",
    "expires_after_minutes",
    "remind_after_minutes",
    "notify",
    "require_reason",
    "urgent_within_hours",
    "escalate_after_minutes",
    "escalate_to",
)


LIFECYCLE_KEYS = ("keep_days", "max_keep_days", "warn_before_days", "delete_requires_approval")


class Lifecycle(BaseModel):
    """`[lifecycle]`: how long a copy is kept, and how it is deleted once that time passes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    keep_days: Days | None = None  # unset: a copy is kept until someone deletes it
    max_keep_days: Days | None = None  # unset: no limit
    warn_before_days: Days = 3
    delete_requires_approval: StrictBool = True

    def check(self) -> None:
        """The keys that only make sense together."""
        if self.keep_days and self.max_keep_days and self.keep_days > self.max_keep_days:
            raise ValueError(
                f"keep_days ({self.keep_days:g}) is longer than max_keep_days "
                f"({self.max_keep_days:g})"
            )


class Approval(BaseModel):
    """`[approval]`: how approval works for every snapshot no rule matches."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    required: StrictBool = True
    approvals: Approvals = 1
    allow_self_approval: StrictBool = False
    expires_after_minutes: Minutes = 240
    remind_after_minutes: Minutes | None = None
    notify: SlackIds | None = None
    require_reason: StrictBool = False
    # A source expiring sooner than this makes the request urgent: its reminder goes out at once.
    urgent_within_hours: Annotated[float, Field(gt=0, le=24 * 31, allow_inf_nan=False)] = 6
    escalate_after_minutes: Minutes | None = None
    escalate_to: SlackIds = ()


_GLOB = re.compile(r"[A-Za-z0-9_.*?!\[\]-]+")


def _cluster_pattern(value: str) -> str:
    value = value.strip()
    if not _GLOB.fullmatch(value) or value.count("[") != value.count("]"):
        raise ValueError(
            f"'{value}' is not a cluster name glob or cluster ID (letters, digits, - and _, "
            "with * ? [...] as wildcards)"
        )
    return value


ClusterPattern = Annotated[str, AfterValidator(_cluster_pattern)]


class Rule(BaseModel):
    """`[[rules]]`: approval for the snapshots of some clusters; unset keys come from
    `[approval]`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    clusters: Annotated[tuple[ClusterPattern, ...], BeforeValidator(_listed)] = Field(min_length=1)
    approvers: SlackIds | None = None
    required: StrictBool | None = None
    approvals: Approvals | None = None
    allow_self_approval: StrictBool | None = None
    expires_after_minutes: Minutes | None = None
    remind_after_minutes: Minutes | None = None
    notify: SlackIds | None = None
    require_reason: StrictBool | None = None
    urgent_within_hours: Annotated[float, Field(gt=0, le=24 * 31, allow_inf_nan=False)] | None = (
        None
    )
    escalate_after_minutes: Minutes | None = None
    escalate_to: SlackIds | None = None
    keep_days: Days | None = None
    max_keep_days: Days | None = None
    warn_before_days: Days | None = None
    delete_requires_approval: StrictBool | None = None

    def matches(self, cluster_id: str | None, cluster_name: str | None) -> bool:
        for pattern in self.clusters:
            if cluster_id and pattern.lower() == cluster_id.lower():
                return True
            if cluster_name and fnmatch.fnmatchcase(cluster_name.lower(), pattern.lower()):
                return True
        return False

    def overrides(self, keys: tuple[str, ...] = APPROVAL_KEYS) -> dict[str, Any]:
        return {key: getattr(self, key) for key in keys if getattr(self, key) is not None}


@dataclass(frozen=True)
class ApprovalPolicy:
    """How one request is approved: `[approval]` with the matching rule's keys on top."""

    settings: Approval
    approvers: tuple[str, ...]  # who may approve (admins always may, besides)
    rule: int | None  # 1-based number of the matching [[rules]] table, None for [approval]
    lifecycle: Lifecycle = Lifecycle()  # `[lifecycle]` with the rule's keys on top

    @property
    def notify(self) -> tuple[str, ...]:
        return self.settings.notify if self.settings.notify is not None else self.approvers


class BreakGlass(BaseModel):
    """`[break_glass]`: who may copy at once and be reviewed afterwards. Absent: nobody."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    allowed: SlackIds = Field(min_length=1)
    notify: tuple[NotifyTarget, ...] = ()
    review_within_hours: Annotated[float, Field(gt=0, le=24 * 31, allow_inf_nan=False)] = 24


class Policy(BaseModel):
    """Who may ask for a copy, who may approve one, and how approval works."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    roles: Roles = Roles()
    approval: Approval = Approval()
    lifecycle: Lifecycle = Lifecycle()
    break_glass: BreakGlass | None = None
    rules: tuple[Rule, ...] = ()

    def lifecycle_problems(self) -> list[tuple[int | None, str]]:
        """(rule number or None for [lifecycle], why) where keys contradict each other."""
        found: list[tuple[int | None, str]] = []
        tables: list[tuple[int | None, Lifecycle]] = [(None, self.lifecycle)]
        tables += [(number, self.lifecycle_of(rule)) for number, rule in enumerate(self.rules, 1)]
        for number, lifecycle in tables:
            try:
                lifecycle.check()
            except ValueError as error:
                found.append((number, str(error)))
        return found

    def lifecycle_of(self, rule: Rule) -> Lifecycle:
        return self.lifecycle.model_copy(update=rule.overrides(LIFECYCLE_KEYS))

    def for_cluster(self, cluster_id: str | None, cluster_name: str | None) -> ApprovalPolicy:
        """The first rule matching the source snapshot's cluster wins; else `[approval]`."""
        for number, rule in enumerate(self.rules, start=1):
            if rule.matches(cluster_id, cluster_name):
                settings = self.approval.model_copy(update=rule.overrides())
                approvers = rule.approvers if rule.approvers is not None else None
                return ApprovalPolicy(
                    settings, approvers or self.roles.approver, number, self.lifecycle_of(rule)
                )
        return ApprovalPolicy(self.approval, self.roles.approver, None, self.lifecycle)

    @property
    def is_open(self) -> bool:
        """The sandbox's policy: anyone may request, anyone else may approve."""
        return EVERYONE in self.roles.requester

    def ids(self) -> set[str]:
        """Every user and group ID the policy names."""
        found = {*self.roles.requester, *self.approving_ids(), *(self.approval.notify or ())}
        for rule in self.rules:
            found.update(rule.notify or ())
        if self.break_glass is not None:
            found.update(self.break_glass.allowed)
            found.update(i for i in self.break_glass.notify if not i.startswith("C"))
        return found - {EVERYONE}

    def approving_ids(self) -> set[str]:
        """Who may approve something: the approver role, the admins, the rules' approvers."""
        found = {*self.roles.approver, *self.roles.admin, *self.approval.escalate_to}
        for rule in self.rules:
            found.update(rule.approvers or ())
            found.update(rule.escalate_to or ())
        return found

    def warnings(self) -> list[str]:
        """What start-up and doctor warn of: nobody can approve, not as many as needed can, or
        only made-up people can."""
        found = self.unapprovable() + self.short_of_approvers()
        examples = sorted(self.ids() & EXAMPLE_IDS)
        if examples:
            nobody = (
                ", so nobody in this workspace can approve"
                if self.approving_ids() and self.approving_ids() <= EXAMPLE_IDS
                else ""
            )
            found.append(
                f"{', '.join(examples)} are snapcopy.example.toml's made-up IDs, not people or "
                f"groups of your workspace{nobody}: put your own members' IDs (profile → ⋮ → "
                "Copy member ID) and groups' IDs in their place."
            )
        return found

    def tables(self) -> list[tuple[str, Approval, tuple[str, ...]]]:
        """Each way a request can be approved: where it is written, its settings, and who may
        approve besides the admins."""
        tables = [("[approval]", self.approval, self.roles.approver)]
        for number, rule in enumerate(self.rules, start=1):
            approval = self.approval.model_copy(update=rule.overrides())
            tables.append((f"[[rules]] #{number}", approval, rule.approvers or self.roles.approver))
        return tables

    def unapprovable(self) -> list[str]:
        """Where approval is required but nobody could ever give it: start-up warnings."""
        if self.roles.admin:
            return []  # admins may always approve
        return [
            f"{where} requires approval, but the policy names no approver and no admin: "
            "nobody can approve these requests."
            for where, approval, approvers in self.tables()
            if approval.required and not approvers
        ]

    def reason_required(self) -> bool | None:
        """Whether a request needs a reason: True for every cluster, False for none, None when
        it depends on the cluster's rule."""
        needs = {approval.require_reason for _, approval, _ in self.tables()}
        return needs.pop() if len(needs) == 1 else None

    def short_of_approvers(self, members: GroupMembers | None = None) -> list[str]:
        """Where more approvals are needed than there are people who may give them. Without
        `members` (who is in a user group), only tables naming users alone are counted."""
        found = []
        for where, approval, approvers in self.tables():
            holders = {*approvers, *self.roles.admin}
            if not approval.required or not approvers or EVERYONE in holders:
                continue
            groups = {holder for holder in holders if holder.startswith("S")}
            if groups and members is None:
                continue  # doctor counts them
            people = holders - groups
            for group in groups:
                people |= members(group) if members is not None else frozenset()
            if len(people) < approval.approvals:
                found.append(
                    f"{where} needs {approval.approvals} approvals, but only {len(people)} "
                    f"{'person' if len(people) == 1 else 'people'} may give one (its approvers "
                    "and the admins): its requests can never be approved."
                )
        return found

    def unreachable_rules(self) -> list[tuple[int, str]]:
        """Rules that can never match: (rule number, why)."""
        found = []
        seen: set[str] = set()
        catch_all: int | None = None
        for number, rule in enumerate(self.rules, start=1):
            patterns = {pattern.lower() for pattern in rule.clusters}
            if catch_all is not None:
                found.append((number, f"rule {catch_all} before it matches every cluster ('*')"))
            elif patterns <= seen:
                found.append((number, "earlier rules already match all of its clusters"))
            seen |= patterns
            if "*" in patterns and catch_all is None:
                catch_all = number
        return found


# The made-up IDs of snapcopy.example.toml and of the README's copy of it (a test keeps them in
# step): a policy still holding them was copied and not filled in.
EXAMPLE_IDS = frozenset(
    "S0DWSONCALL U01ALICE U02BOB U03CAROL S0DBA S0PRODDBA S0DBALEADS S0INCIDENTCMD".split()
)


def sandbox_policy() -> Policy:
    """`snapcopy serve --sandbox` with no policy file: anyone may request a copy, anyone but
    its requester may approve it, nobody is pinged, and nobody is an admin."""
    roles = Roles.model_construct(requester=(EVERYONE,), approver=(EVERYONE,), admin=())
    return Policy(roles=roles, approval=Approval(notify=()))


def parse_policy(text: str, source: str = "policy") -> Policy:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError([f"{source} is not valid TOML: {error}."]) from None
    lines = _rule_lines(text)
    shape = _table_shapes(data, text)
    if shape:
        raise ConfigError([f"{source}: {problem}" for problem in shape])
    try:
        policy = Policy.model_validate(data)
    except ValidationError as error:
        raise ConfigError(
            [f"{source}: {line}" for line in _describe_policy_errors(error, lines)]
        ) from None
    problems = [
        f"{source}: {_where(lines, number)}can never match: {why}."
        for number, why in policy.unreachable_rules()
    ]
    problems += [
        f"{source}: {_where(lines, number) if number else '[lifecycle] '}{why}."
        for number, why in policy.lifecycle_problems()
    ]
    if problems:
        raise ConfigError(problems)
    return policy


def _table_shapes(data: dict[str, Any], text: str) -> list[str]:
    """`[rules]` where `[[rules]]` belongs (or `[[roles]]` where `[roles]` does), as a plain
    sentence with the line, before pydantic calls it "a valid tuple"."""
    problems = []
    for name, many in (("rules", True), ("roles", False), ("approval", False)):
        value = data.get(name)
        written = f"[{name}]" if many else f"[[{name}]]"
        if (many and isinstance(value, dict)) or (not many and isinstance(value, list)):
            line = _header_line(text, written)
            meant = f"[[{name}]]" if many else f"[{name}]"
            kind = "a list of tables, one per rule" if many else "one table"
            problems.append(
                f"line {line}: {written} should be {meant}: {name} is {kind}"
                + (", each starting with its own [[rules]] line." if many else ".")
            )
    return problems


def _header_line(text: str, header: str) -> int | str:
    for number, line in enumerate(text.splitlines(), start=1):
        if line.split("#")[0].replace(" ", "") == header:
            return number
    return "?"


def _rule_lines(text: str) -> list[int]:
    """The line number of each `[[rules]]` header, in order."""
    return [
        number
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip().split("#")[0].strip() == "[[rules]]"
    ]


def _where(lines: list[int], rule: int) -> str:
    line = f" (line {lines[rule - 1]})" if 0 < rule <= len(lines) else ""
    return f"[[rules]] #{rule}{line} "


def _describe_policy_errors(error: ValidationError, rule_lines: list[int]) -> list[str]:
    problems = []
    for item in error.errors():
        location = item["loc"]
        where = ""
        if location[:1] == ("rules",) and len(location) > 1 and isinstance(location[1], int):
            where = _where(rule_lines, location[1] + 1)
            location = location[2:]
        key = ".".join(str(part) for part in location if not isinstance(part, int))
        if item["type"] == "extra_forbidden":
            problems.append(
                f"{where}unknown key '{key}' (known: [roles] requester, approver, admin; "
                f"[approval] {', '.join(APPROVAL_KEYS)}; [lifecycle] {', '.join(LIFECYCLE_KEYS)}; "
                "[break_glass] allowed, notify, review_within_hours; [[rules]] clusters, "
                "approvers and any [approval] or [lifecycle] key)."
            )
        else:
            message = str(item["msg"]).removeprefix("Value error, ")
            problems.append(f"{where}'{key}': {message}.")
    return problems


def load_policy(path: Path) -> Policy:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            [
                f"policy file {path} does not exist: copy snapcopy.example.toml there and list "
                "who may request and approve copies (or set SNAPCOPY_POLICY)."
            ]
        ) from None
    except OSError as error:
        raise ConfigError([f"policy file {path} cannot be read: {error.strerror}."]) from None
    return parse_policy(text, source=str(path))
