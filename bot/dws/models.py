"""The answers of the DWS snapshot API, as pydantic models, and the result of a copy.

The models ignore fields they do not name: DWS adds fields over time, and a new one must not break
a copy. The official SDK's models require none of their fields, and real answers do hold nulls,
so only the id is required; a null text field reads as empty. A list is read item by item
(`DwsClient.list_snapshots`), so one odd item cannot hide the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator


class SnapshotStatus(StrEnum):
    """Statuses DWS reports; `Snapshot.status` stays a plain string so a new one is not an error."""

    CREATING = "CREATING"
    AVAILABLE = "AVAILABLE"
    UNAVAILABLE = "UNAVAILABLE"
    RESTORING = "RESTORING"
    FROZEN = "FROZEN"  # the account is in arrears
    POLICE_FROZEN = "POLICE_FROZEN"  # frozen by the provider for a compliance reason


# DWS documents AUTO; some pages and older regions say AUTOMATED.
AUTOMATED_TYPES = frozenset({"AUTO", "AUTOMATED"})


class _Answer(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Snapshot(_Answer):
    id: str
    name: str = ""
    description: str = ""
    started: str | None = None
    finished: str | None = None
    size: float | None = None
    status: str = ""
    type: str = ""
    cluster_id: str | None = None
    cluster_name: str | None = None
    bak_keep_day: int | None = None  # an automated snapshot's retention in days, if DWS says

    @field_validator("name", "description", "status", "type", mode="before")
    @classmethod
    def _null_text_is_empty(cls, value: object) -> object:
        return "" if value is None else value

    @field_validator("bak_keep_day", mode="before")
    @classmethod
    def _a_number_of_days_or_unknown(cls, value: object) -> int | None:
        # Odd values must not cost the whole item: a retention DWS does not state is unknown.
        if isinstance(value, bool):
            return None
        try:
            days = int(str(value))
        except (TypeError, ValueError):
            return None
        return days if days > 0 else None

    @property
    def is_automated(self) -> bool:
        """Only automated snapshots can be copied; the copy itself is MANUAL."""
        return self.type.upper() in AUTOMATED_TYPES


class SnapshotEnvelope(_Answer):
    snapshot: Snapshot


class SnapshotList(_Answer):
    """The list answer before its items are read, one by one."""

    snapshots: list[Any] | None = None
    count: int | None = None


class CopyResponse(_Answer):
    snapshot_id: str


@dataclass(frozen=True)
class CopiedSnapshot:
    """The copy a `copy_once` call made: its id, and the X-Request-Id of DWS's answer."""

    snapshot_id: str
    request_id: str | None


# -- beyond the copy: deleting a copy, the job that does it, and the cluster around a snapshot --


class JobStatus(StrEnum):
    """What `GET /job/{job_id}` reports; FAIL and STOP end a job without success."""

    INIT = "INIT"
    WAITING = "WAITING"
    RUNNING = "RUNNING"
    DELAY_SCHEDULED = "DELAY_SCHEDULED"
    FAIL = "FAIL"
    SUCCESS = "SUCCESS"
    STOP = "STOP"


class DeleteResponse(_Answer):
    """`DELETE /snapshots/{id}`: older services answer no body, newer ones a job id (and, odd
    as it is, the error fields too, empty on success)."""

    job_id: str | None = None
    error_code: str | None = None
    error_msg: str | None = None


class Job(_Answer):
    job_id: str | None = None
    job_name: str | None = None
    begin_time: str | None = None
    end_time: str | None = None
    status: str = ""
    failed_code: str | None = None
    failed_detail: str | None = None
    progress: str | None = None

    @field_validator("status", mode="before")
    @classmethod
    def _null_is_empty(cls, value: Any) -> Any:
        return "" if value is None else value

    @property
    def finished(self) -> bool:
        return self.status in (JobStatus.SUCCESS, JobStatus.FAIL, JobStatus.STOP)


class _Statistic(_Answer):
    name: str = ""
    value: float | None = None
    unit: str | None = None


class SnapshotStatistics(_Answer):
    """A cluster's snapshot storage in GB: `storage.used`, `storage.free` and `storage.paid`
    (an entry DWS leaves out, or answers null, is None: unknown, not zero)."""

    statistics: list[_Statistic] | None = None

    def gigabytes(self, name: str) -> float | None:
        for item in self.statistics or []:
            if item.name == name:
                return item.value
        return None

    @property
    def used(self) -> float | None:
        return self.gigabytes("storage.used")

    @property
    def free(self) -> float | None:
        return self.gigabytes("storage.free")

    @property
    def paid(self) -> float | None:
        return self.gigabytes("storage.paid")


class SnapshotPolicy(_Answer):
    """`GET /v2/.../snapshot-policies`: how long automated snapshots are kept (1-31 days)."""

    keep_day: int | None = None


class Cluster(_Answer):
    id: str | None = None
    name: str = ""
    status: str = ""
    sub_status: str | None = None
    task_status: str | None = None  # e.g. SNAPSHOTTING, RESTORING: an operation in progress

    @field_validator("name", "status", mode="before")
    @classmethod
    def _null_is_empty(cls, value: Any) -> Any:
        return "" if value is None else value


class ClusterEnvelope(_Answer):
    cluster: Cluster
