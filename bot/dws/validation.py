"""The input rules of DWS linked-copy, checked before anything is sent.

The same functions back the client and the Slack modal, so a person sees the exact rule they broke
while typing, and the client never sends a request DWS would refuse for its shape. Each function
strips surrounding whitespace and returns the value to use; a broken rule raises `InvalidInput`
naming the field and saying, in one sentence, what to change.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable
from typing import Literal

FieldName = Literal["snapshot_id", "backup_name", "description"]

# A canonical 8-4-4-4-12 UUID. DWS snapshot ids are UUIDs, and only a UUID may reach a URL path:
# anything else could smuggle '/', '..' or '?' into the request.
SNAPSHOT_ID_PATTERN = (
    r"(?<![0-9A-Fa-f-])"
    r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
    r"(?![0-9A-Fa-f-])"
)
UUID_RE = re.compile(SNAPSHOT_ID_PATTERN)

EXAMPLE_SNAPSHOT_ID = "4ca46bf1-5c61-48ff-b4f3-0ad4e5e3ba90"
NAME_MIN_LENGTH = 4
NAME_MAX_LENGTH = 64
DESCRIPTION_MAX_LENGTH = 256
DESCRIPTION_FORBIDDEN = "!<>'=&\""
_NAME_CHARS = frozenset(string.ascii_letters + string.digits + "-_")


class InvalidInput(ValueError):
    """A value breaks one of DWS's input rules; `message` is meant for the person who typed it."""

    def __init__(self, field: FieldName, message: str) -> None:
        super().__init__(message)
        self.field: FieldName = field
        self.message = message

    def __reduce__(self) -> tuple[type[InvalidInput], tuple[FieldName, str]]:
        return (type(self), (self.field, self.message))


def validate_snapshot_id(value: str) -> str:
    """Return the snapshot id lower-cased, or raise if it is not a canonical UUID."""
    candidate = value.strip()
    if not candidate:
        raise InvalidInput("snapshot_id", "Snapshot ID is required.")
    if UUID_RE.fullmatch(candidate) is None:
        raise InvalidInput(
            "snapshot_id", f"Snapshot ID must be a UUID such as {EXAMPLE_SNAPSHOT_ID}."
        )
    return candidate.lower()


def find_snapshot_id(text: str) -> str | None:
    """Return the first UUID standing on its own in free text (a Slack message), lower-cased."""
    match = UUID_RE.search(text)
    return match.group(0).lower() if match else None


def validate_backup_name(value: str) -> str:
    """Return the name for the copy, or raise naming the first rule it breaks."""
    name = value.strip()
    if not name:
        raise InvalidInput("backup_name", "The new name is required.")
    if not _is_ascii_letter(name[0]):
        raise InvalidInput("backup_name", "The new name must start with a letter.")
    bad = _distinct(c for c in name if c not in _NAME_CHARS)
    if bad:
        raise InvalidInput(
            "backup_name",
            f"The new name may contain only letters, digits, '-' and '_', not {_quoted(bad)}.",
        )
    if not NAME_MIN_LENGTH <= len(name) <= NAME_MAX_LENGTH:
        raise InvalidInput(
            "backup_name",
            f"The new name must be {NAME_MIN_LENGTH} to {NAME_MAX_LENGTH} characters long; "
            f"it is {len(name)}.",
        )
    return name


def validate_description(value: str | None) -> str:
    """Return the description (empty when none is given), or raise naming the rule it breaks."""
    description = (value or "").strip()
    if len(description) > DESCRIPTION_MAX_LENGTH:
        raise InvalidInput(
            "description",
            f"The description must be at most {DESCRIPTION_MAX_LENGTH} characters; "
            f"it is {len(description)}.",
        )
    bad = _distinct(c for c in description if c in DESCRIPTION_FORBIDDEN)
    if bad:
        raise InvalidInput(
            "description",
            f"The description cannot contain {_quoted(bad)}; "
            f"DWS does not accept any of {' '.join(DESCRIPTION_FORBIDDEN)}.",
        )
    return description


def _is_ascii_letter(char: str) -> bool:
    return char in string.ascii_letters


def _distinct(chars: Iterable[str]) -> list[str]:
    """The characters in order of first appearance, each once."""
    return list(dict.fromkeys(chars))


def _quoted(chars: list[str]) -> str:
    # repr() makes a space or a tab visible in the message: "not ' ', '.'".
    return ", ".join(repr(c) for c in chars)
