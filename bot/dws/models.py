"""The answers of the DWS snapshot API, as pydantic models, and the result of a copy.

The models ignore fields they do not name: DWS adds fields over time, and a new one must not break
a copy. Only what snapcopy reads is required.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, field_validator


class SnapshotStatus(StrEnum):
    """Statuses DWS reports; `Snapshot.status` stays a plain string so a new one is not an error."""

    CREATING = "CREATING"
    AVAILABLE = "AVAILABLE"
    UNAVAILABLE = "UNAVAILABLE"
    RESTORING = "RESTORING"
    FROZEN = "FROZEN"


# DWS documents AUTO; some pages and older regions say AUTOMATED.
AUTOMATED_TYPES = frozenset({"AUTO", "AUTOMATED"})


class _Answer(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Snapshot(_Answer):
    id: str
    name: str
    description: str = ""
    started: str | None = None
    finished: str | None = None
    size: float | None = None
    status: str
    type: str = ""
    cluster_id: str | None = None
    cluster_name: str | None = None

    @field_validator("description", mode="before")
    @classmethod
    def _null_description_is_empty(cls, value: object) -> object:
        return "" if value is None else value

    @property
    def is_automated(self) -> bool:
        """Only automated snapshots can be copied; the copy itself is MANUAL."""
        return self.type.upper() in AUTOMATED_TYPES


class SnapshotEnvelope(_Answer):
    snapshot: Snapshot


class SnapshotList(_Answer):
    snapshots: list[Snapshot]
    count: int | None = None


class CopyResponse(_Answer):
    snapshot_id: str


@dataclass(frozen=True)
class CopiedSnapshot:
    """The copy a `copy_snapshot` call leaves behind.

    `adopted` is True when an earlier attempt's answer was lost and the copy was found by its
    name afterwards, rather than named in the answer to this call's request.
    """

    snapshot_id: str
    request_id: str | None
    adopted: bool = False
