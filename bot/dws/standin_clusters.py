"""The stand-in's clusters: their state, snapshot policy and storage, and the jobs DWS runs.

Kept apart from the snapshot API in bot/dws/standin.py, which routes these paths here:

- `GET /v1.0/{project}/clusters/{id}`: status and `task_status` (an operation in progress);
- `GET /v1.0/{project}/clusters/{id}/snapshots/statistics`: `storage.used|free|paid` in GB,
  from the sizes of the cluster's snapshots and a free share;
- `GET /v2/{project}/clusters/{id}/snapshot-policies`: `keep_day`;
- `GET /v1.0/{project}/job/{id}`: a job (a deletion) that runs for `job_seconds`, then SUCCESS
  (or FAIL, after `fail_next_job`).

Answers are (status, payload) pairs; the stand-in signs nothing here, it only answers.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bot.dws.models import JobStatus, Snapshot

_ROUTES = (
    ("job", re.compile(r"/v1\.0/(?P<project>[^/]+)/job/(?P<id>[^/]+)/?")),
    (
        "statistics",
        re.compile(r"/v1\.0/(?P<project>[^/]+)/clusters/(?P<id>[^/]+)/snapshots/statistics/?"),
    ),
    ("policy", re.compile(r"/v2/(?P<project>[^/]+)/clusters/(?P<id>[^/]+)/snapshot-policies/?")),
    ("cluster", re.compile(r"/v1\.0/(?P<project>[^/]+)/clusters/(?P<id>[^/]+)/?")),
)
DEFAULT_KEEP_DAYS = 7
DEFAULT_FREE_GB = 100.0
Answer = tuple[int, dict[str, object]]


@dataclass
class _Job:
    name: str
    started: float
    begin_time: str
    failed: bool = False


@dataclass
class Clusters:
    """Cluster state the tests may change; `snapshots` lists what the stand-in holds now."""

    snapshots: Callable[[], list[Snapshot]]
    job_seconds: float = 0.5
    keep_days: dict[str, int] = field(default_factory=dict)
    task_status: dict[str, str] = field(default_factory=dict)
    free_gb: dict[str, float] = field(default_factory=dict)
    fail_next_job: bool = False  # the next job started ends FAIL
    _jobs: dict[str, _Job] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @staticmethod
    def route(path: str) -> tuple[str, str, str] | None:
        """(kind, project, id) of a cluster or job path; None for any other path."""
        for kind, pattern in _ROUTES:
            found = pattern.fullmatch(path)
            if found is not None:
                return kind, found["project"], found["id"]
        return None

    def answer(self, kind: str, item_id: str) -> Answer:
        if kind == "job":
            return self._job(item_id)
        if item_id not in self._known_clusters():
            return 404, {"error_code": "DWS.0015", "error_msg": f"Cluster {item_id} not found."}
        if kind == "statistics":
            return 200, {"statistics": self._storage(item_id)}
        if kind == "policy":
            return 200, self._policy(item_id)
        return 200, {"cluster": self._cluster(item_id)}

    def keep_day(self, cluster_id: str | None) -> int:
        """How long the cluster keeps its automated snapshots."""
        return self.keep_days.get(cluster_id or "", DEFAULT_KEEP_DAYS)

    def busy(self, cluster_id: str | None) -> str | None:
        """The operation a cluster is running, which makes DWS refuse others (DWS.0011)."""
        return self.task_status.get(cluster_id or "")

    def start_job(self, name: str) -> str:
        job_id = uuid.uuid4().hex
        with self._lock:
            failed, self.fail_next_job = self.fail_next_job, False
            self._jobs[job_id] = _Job(
                name, time.monotonic(), datetime.now(UTC).isoformat(), failed=failed
            )
        return job_id

    def _job(self, job_id: str) -> Answer:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            return 404, {"error_code": "DWS.0015", "error_msg": f"Job {job_id} not found."}
        done = time.monotonic() - job.started >= self.job_seconds
        status = JobStatus.RUNNING
        if done:
            status = JobStatus.FAIL if job.failed else JobStatus.SUCCESS
        return 200, {
            "job_id": job_id,
            "job_name": job.name,
            "begin_time": job.begin_time,
            "end_time": datetime.now(UTC).isoformat() if done else None,
            "status": status.value,
            "failed_code": "DWS.9999" if done and job.failed else None,
            "failed_detail": "The backup storage refused the deletion."
            if done and job.failed
            else None,
            "progress": "100" if done else "50",
        }

    def _known_clusters(self) -> set[str]:
        found = {s.cluster_id for s in self.snapshots() if s.cluster_id}
        return found | set(self.keep_days) | set(self.task_status) | set(self.free_gb)

    def _storage(self, cluster_id: str) -> list[dict[str, object]]:
        used = sum(
            s.size or 0.0
            for s in self.snapshots()
            if s.cluster_id == cluster_id and s.type.upper() == "MANUAL"
        )
        share = self.free_gb.get(cluster_id, DEFAULT_FREE_GB)
        values = {
            "storage.used": round(used, 3),
            "storage.free": round(max(0.0, share - used), 3),
            "storage.paid": round(max(0.0, used - share), 3),
        }
        return [{"name": name, "value": value, "unit": "GB"} for name, value in values.items()]

    def _policy(self, cluster_id: str) -> dict[str, object]:
        return {
            "keep_day": self.keep_day(cluster_id),
            "backup_strategies": [
                {"policy_id": uuid.uuid5(uuid.NAMESPACE_URL, cluster_id).hex, "backup_type": "full"}
            ],
            "device_name": "OBS",
            "server_ips": [],
            "server_port": None,
            "backup_param": None,
            "auto_backup": True,
        }

    def _cluster(self, cluster_id: str) -> dict[str, object]:
        names = {s.cluster_name for s in self.snapshots() if s.cluster_id == cluster_id}
        return {
            "id": cluster_id,
            "name": next((name for name in names if name), ""),
            "status": "AVAILABLE",
            "sub_status": "NORMAL",
            "task_status": self.task_status.get(cluster_id),
        }
