"""Fixtures for the DWS client tests: a scripted fake over MockTransport, and the real stand-in."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bot.dws.client import DwsClient, RetryPolicy, build_http_client
from bot.dws.signer import AkSkAuth
from bot.dws.standin import DwsStandIn

from .fakes import AK, BASE_URL, PROJECT, SK, FakeClock, FakeDws

# Small numbers keep the suite fast; uniform() returning its upper bound makes backoff exact.
POLICY = RetryPolicy(attempts=4, base_delay=0.5, max_delay=4.0, total_budget=60.0)


def upper_bound(low: float, high: float) -> float:
    return high


@pytest.fixture
def fake() -> FakeDws:
    return FakeDws()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def http(fake: FakeDws) -> Iterator[httpx.Client]:
    auth = AkSkAuth(AK, SK, PROJECT)
    with build_http_client(BASE_URL, auth, transport=httpx.MockTransport(fake)) as client:
        yield client


def client_over(http: httpx.Client, clock: FakeClock) -> DwsClient:
    """A client whose sleeps and jitter are the fake clock's, so retries are exact and instant."""
    return DwsClient(
        http,
        PROJECT,
        retry=POLICY,
        sleep=clock.sleep,
        monotonic=clock.monotonic,
        uniform=upper_bound,
    )


@pytest.fixture
def client(http: httpx.Client, clock: FakeClock) -> DwsClient:
    return client_over(http, clock)


@pytest.fixture
def standin() -> Iterator[DwsStandIn]:
    with DwsStandIn(AK, SK, PROJECT, copy_delay=0.05) as dws:
        yield dws


@pytest.fixture
def live_http(standin: DwsStandIn) -> Iterator[httpx.Client]:
    auth = AkSkAuth(AK, SK, PROJECT)
    with build_http_client(standin.url, auth, connect_timeout=1.0, read_timeout=0.3) as client:
        yield client


@pytest.fixture
def live_client(live_http: httpx.Client, clock: FakeClock) -> DwsClient:
    return client_over(live_http, clock)


@pytest.fixture
def sdk_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the SDK on loopback and out of the real home directory.

    The SDK writes ~/.huaweicloud/application_id the first time it builds its User-Agent, and
    `requests` honours proxy variables; neither may reach past this test.
    """
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
