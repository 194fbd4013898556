"""Deleting a copy, the job that does it, and what a cluster says about itself: snapcopy's
client against the stand-in (real HTTP, real signatures), and both checked against the
official SDK (huaweicloudsdkdws, test-only): its models' answers parse in snapcopy, and its
client reads the stand-in's answers."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import closing
from typing import Any

import httpx
import pytest
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkdws.v2.model import (
    DeleteSnapshotRequest,
    ListClusterDetailsRequest,
    ListJobDetailsRequest,
    ListJobDetailsResponse,
    ListSnapshotPolicyRequest,
    ListSnapshotPolicyResponse,
    ListSnapshotStatisticsRequest,
    ListSnapshotStatisticsResponse,
    SnapshotsStatistic,
)

from bot.dws import (
    AkSkAuth,
    DwsClient,
    DwsError,
    Job,
    JobStatus,
    RetryPolicy,
    SnapshotPolicy,
    SnapshotStatistics,
    build_http_client,
)
from bot.dws.standin import DwsStandIn
from tests.dws.fakes import AK, PROJECT, SK
from tests.dws.test_sdk_contract import filled, on_the_wire, sdk_client

PROD = "6f1c2b9e-3a47-4d8e-9b6a-1e2f3c4d5a6b"


@pytest.fixture
def dws(standin: DwsStandIn) -> Iterator[DwsClient]:
    with build_http_client(standin.url, AkSkAuth(AK, SK, PROJECT)) as http:
        yield DwsClient(http, PROJECT, retry=RetryPolicy(attempts=1))


def a_copy(standin: DwsStandIn, dws: DwsClient, name: str = "keep-for-incident") -> str:
    source = standin.add_snapshot("dws-prod-20261204020000", size=40.0)
    return dws.copy_once(source.id, name).snapshot_id


def test_a_deleted_copy_is_gone_once_its_job_succeeds(standin: DwsStandIn, dws: DwsClient) -> None:
    standin.clusters.job_seconds = 0.3
    copy_id = a_copy(standin, dws)
    job_id = dws.delete_once(copy_id)
    assert job_id is not None
    assert dws.find_snapshot_by_name("keep-for-incident") is None
    first = dws.get_job(job_id)
    assert (first.status, first.finished) == (JobStatus.RUNNING, False)
    deadline = time.monotonic() + 5
    while not (job := dws.get_job(job_id)).finished and time.monotonic() < deadline:
        time.sleep(0.05)
    assert job.status == JobStatus.SUCCESS and job.failed_code is None
    assert standin.deletions == 1


def test_deleting_again_is_dws_0001_already_gone(standin: DwsStandIn, dws: DwsClient) -> None:
    copy_id = a_copy(standin, dws)
    dws.delete_once(copy_id)
    with pytest.raises(DwsError) as gone:
        dws.delete_once(copy_id)
    assert (gone.value.status, gone.value.error_code) == (400, "DWS.0001")


def test_automated_snapshots_cannot_be_deleted(standin: DwsStandIn, dws: DwsClient) -> None:
    source = standin.add_snapshot("dws-prod-20261204020000")
    with pytest.raises(DwsError) as refused:
        dws.delete_once(source.id)
    assert refused.value.error_code == "DWS.0001"
    assert [s.id for s in standin.snapshots] == [source.id]


def test_a_busy_cluster_refuses_a_deletion_with_dws_0011(
    standin: DwsStandIn, dws: DwsClient
) -> None:
    copy_id = a_copy(standin, dws)
    standin.clusters.task_status[PROD] = "SNAPSHOTTING"
    with pytest.raises(DwsError) as busy:
        dws.delete_once(copy_id)
    assert (busy.value.status, busy.value.error_code, busy.value.retryable) == (
        409,
        "DWS.0011",
        True,
    )
    assert dws.get_cluster(PROD).task_status == "SNAPSHOTTING"


def test_an_old_service_that_answers_no_body_has_no_job() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        assert request.method == "DELETE"
        return httpx.Response(202)

    auth = AkSkAuth(AK, SK, PROJECT)
    transport = httpx.MockTransport(answer)
    with build_http_client("https://dws.example.invalid", auth, transport=transport) as http:
        client = DwsClient(http, PROJECT, retry=RetryPolicy(attempts=1))
        assert client.delete_once("4ca46bf1-5c61-48ff-b4f3-0ad4e5e3ba90") is None


def test_storage_counts_manual_copies_against_the_free_share(
    standin: DwsStandIn, dws: DwsClient
) -> None:
    standin.clusters.free_gb[PROD] = 50.0
    a_copy(standin, dws, "first-copy")
    a_copy(standin, dws, "second-copy")
    storage = dws.snapshot_statistics(PROD)
    assert (storage.used, storage.free, storage.paid) == (80.0, 0.0, 30.0)


def test_the_policy_says_how_long_automated_snapshots_are_kept(
    standin: DwsStandIn, dws: DwsClient
) -> None:
    standin.add_snapshot("dws-prod-20261204020000")
    assert dws.snapshot_policy(PROD).keep_day == 7
    standin.clusters.keep_days[PROD] = 3
    assert dws.snapshot_policy(PROD).keep_day == 3


def test_an_unknown_cluster_is_not_found(dws: DwsClient) -> None:
    with pytest.raises(DwsError) as missing:
        dws.get_cluster("0b7e4c1d-8f2a-4e6b-a3d5-000000000000")
    assert (missing.value.status, missing.value.error_code) == (404, "DWS.0015")


@pytest.mark.parametrize("bad", ["../snapshots", "a/b", "", "x" * 65])
def test_ids_that_would_change_the_path_are_refused_before_sending(
    dws: DwsClient, bad: str
) -> None:
    with pytest.raises(ValueError):
        dws.get_cluster(bad)


# -- the official SDK as the oracle ---------------------------------------------------------


def test_the_sdks_full_answers_parse_in_snapcopy() -> None:
    job = filled(ListJobDetailsResponse)
    job.status = "FAIL"
    parsed = Job.model_validate_json(on_the_wire(job))
    assert (parsed.status, parsed.finished, parsed.failed_code) == ("FAIL", True, "failed_code")
    entries = [
        SnapshotsStatistic(name=name, value=value, unit="GB")
        for name, value in (("storage.used", 80.0), ("storage.free", 0.0), ("storage.paid", 30.0))
    ]
    statistics = ListSnapshotStatisticsResponse(statistics=entries)
    storage = SnapshotStatistics.model_validate_json(on_the_wire(statistics))
    assert (storage.used, storage.free, storage.paid) == (80.0, 0.0, 30.0)
    policy = filled(ListSnapshotPolicyResponse)
    assert SnapshotPolicy.model_validate_json(on_the_wire(policy)).keep_day == policy.keep_day


def test_missing_storage_entries_are_unknown_not_zero() -> None:
    storage = SnapshotStatistics.model_validate_json(
        json.dumps({"statistics": [{"name": "storage.used", "value": None, "unit": "GB"}]})
    )
    assert (storage.used, storage.free, storage.paid) == (None, None, None)


@pytest.fixture
def sdk(standin: DwsStandIn, sdk_home: None) -> Iterator[Any]:
    with closing(sdk_client(standin.url)) as client:
        yield client


def test_the_sdk_deletes_and_follows_the_job_through_the_stand_in(
    standin: DwsStandIn, dws: DwsClient, sdk: Any
) -> None:
    copy_id = a_copy(standin, dws)
    deleted = sdk.delete_snapshot(DeleteSnapshotRequest(snapshot_id=copy_id))
    job = sdk.list_job_details(ListJobDetailsRequest(job_id=deleted.job_id))
    assert job.job_id == deleted.job_id and job.status in ("RUNNING", "SUCCESS")
    with pytest.raises(ClientRequestException) as gone:
        sdk.delete_snapshot(DeleteSnapshotRequest(snapshot_id=copy_id))
    assert gone.value.error_code == "DWS.0001"


def test_the_sdk_reads_the_clusters_storage_policy_and_state(
    standin: DwsStandIn, dws: DwsClient, sdk: Any
) -> None:
    a_copy(standin, dws)
    standin.clusters.task_status[PROD] = "RESTORING"
    storage = sdk.list_snapshot_statistics(ListSnapshotStatisticsRequest(cluster_id=PROD))
    assert {item.name: item.value for item in storage.statistics}["storage.used"] == 40.0
    policy = sdk.list_snapshot_policy(ListSnapshotPolicyRequest(cluster_id=PROD))
    assert policy.keep_day == 7
    cluster = sdk.list_cluster_details(ListClusterDetailsRequest(cluster_id=PROD))
    assert (cluster.cluster.task_status, cluster.cluster.name) == ("RESTORING", "dws-prod")
