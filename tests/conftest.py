"""Fixtures shared by every test.

Isolation (autouse): no SLACK_*, HUAWEICLOUD_*, DWS_*, SNAPCOPY_*, PORT or proxy variable from
the machine reaches a test, and each test runs in its own temporary directory, so no stray
`.env` or `snapcopy.toml` is read.

End to end, a test asks for `server` (the bot running against both stand-ins with the default
policy) and drives it:

    def test_requester_gets_the_modal(server, slack):
        answer = server.command(REQUESTER, "")
        assert answer.status_code == 200
        slack.wait_for("views.open")

Three tiers, one interface (`BotServer`):
- `server` and `start_server(...)`: the dispatch tier (tests/dispatch.py). A fresh Runtime,
  database and stand-ins for each test; signed requests go straight to `App.dispatch`, with no
  HTTP server, in milliseconds. Most tests use it.
- `http_server` and `start_http_server(...)`: the same Runtime served over real HTTP on loopback
  by the production front end (uvicorn, bot/front.py), from a thread of this process: for tests
  about serving (routes, hostile clients, the front end).
- `start_process(...)`: the real `snapcopy serve` process, for tests about processes (signals,
  crashes, restarts, several processes on one database; mark them `@pytest.mark.process`);
  `start_socket_bot(...)` the bot in Socket Mode.
`slack` is the Slack stand-in (tests/slack_standin.py), `dws` the DWS stand-in
(bot/dws/standin.py), `dws_snapshots` what it was seeded with.
"""

from __future__ import annotations

import errno
import os
import re
import sqlite3
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests import slackreq
from tests.dispatch import DispatchBot
from tests.harness import (
    APP_TOKEN,
    DWS_AK,
    DWS_PROJECT_ID,
    DWS_SK,
    ONCALL_GROUP,
    ONCALL_MEMBER,
    POLICY_TOML,
    PROXY_VARIABLES,
    BotServer,
    InProcessServer,
    ProcessServer,
    SocketBot,
    bot_environment,
    free_port,
    write_policy,
)
from tests.postgres import TestPostgres
from tests.slack_standin import RESPONSE_URL_PATH, SlackStandIn

_ISOLATED = re.compile(r"(SLACK_|HUAWEICLOUD_|DWS_|SNAPCOPY_).*|PORT|DATABASE_URL")

# Fixtures that serve the bot; a test using none of them is a unit test (`pytest -m unit`).
_SERVING = frozenset(
    {
        "server",
        "start_server",
        "http_server",
        "start_http_server",
        "start_process",
        "start_socket_bot",
    }
)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests marked `engines` run once on SQLite and once on PostgreSQL (`database`)."""
    if metafunc.definition.get_closest_marker("engines") and "database" in metafunc.fixturenames:
        metafunc.parametrize("database", ["sqlite", "postgresql"], indirect=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if not fixtures & _SERVING and item.get_closest_marker("process") is None:
            item.add_marker(pytest.mark.unit)


# Nothing listens here: a bot that tries to reach DWS fails fast instead of reaching the cloud.
UNREACHABLE_DWS = "http://127.0.0.1:9"


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in list(os.environ):
        if _ISOLATED.fullmatch(name) or name in PROXY_VARIABLES:
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="session")
def postgres() -> TestPostgres:
    """The test run's PostgreSQL server (tests/postgres.py), started on first use.

    Its data lives outside pytest's numbered temporary directories: another pytest session
    starting meanwhile deletes the oldest of those, and would pull a running server's files
    away. The xdist workers of one run share it by the run's id."""
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID") or f"{os.getpid()}-{time.time_ns()}"
    return TestPostgres(Path(tempfile.gettempdir()) / f"snapcopy-postgres-{run}")


@pytest.fixture
def pg_url(postgres: TestPostgres) -> Iterator[str]:
    """A new, empty PostgreSQL database of this test's own."""
    name = postgres.create_database()
    try:
        yield postgres.url(name)
    finally:
        postgres.drop_database(name)


@pytest.fixture
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where the bot keeps its audit log: an SQLite file, or (tests marked `engines`, run a
    second time) a PostgreSQL database of the test's own."""
    if getattr(request, "param", "sqlite") == "postgresql":
        url: str = request.getfixturevalue("pg_url")
        return url
    return str(tmp_path / "snapcopy.db")


@pytest.fixture
def slack(monkeypatch: pytest.MonkeyPatch) -> Iterator[SlackStandIn]:
    """Slack's Web API; the on-call user group S0ONCALL has one member, U0ONCALL.

    Requests built with tests/slackreq.py carry response_urls of this stand-in, so replies
    sent with Bolt's `respond()` are recorded as "response_url" calls.
    """
    standin = SlackStandIn(usergroups={ONCALL_GROUP: [ONCALL_MEMBER]})
    standin.start()
    monkeypatch.setattr(slackreq, "RESPONSE_URL_BASE", standin.url + RESPONSE_URL_PATH)
    try:
        yield standin
    finally:
        standin.stop()


@pytest.fixture
def _dws_seeded() -> Iterator[tuple[Any, list[Any]]]:
    standin_module = pytest.importorskip(
        "bot.dws.standin", reason="bot.dws.standin (the DWS stand-in) is not written yet"
    )
    standin = standin_module.DwsStandIn(DWS_AK, DWS_SK, DWS_PROJECT_ID, copy_delay=0.5)
    standin.start()
    try:
        yield standin, standin.seed_demo()
    finally:
        standin.stop()


@pytest.fixture
def dws(_dws_seeded: tuple[Any, list[Any]]) -> Any:
    """The DWS stand-in, started and seeded with `seed_demo()`."""
    return _dws_seeded[0]


@pytest.fixture
def dws_snapshots(_dws_seeded: tuple[Any, list[Any]]) -> list[Any]:
    """The snapshots `seed_demo()` created: automated ones of two clusters, and manual ones."""
    return _dws_seeded[1]


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    """snapcopy.toml: requester U0REQUEST + group S0ONCALL, approver U0APPROVE, admin U0ADMIN;
    approval required, no self approval."""
    return write_policy(tmp_path / "snapcopy.toml", POLICY_TOML)


@pytest.fixture
def slack_only_env(slack: SlackStandIn, policy_file: Path, database: str) -> dict[str, str]:
    """Environment for a bot that talks to the Slack stand-in and never reaches DWS."""
    env = bot_environment(
        slack_api_url=slack.api_url,
        dws_url=UNREACHABLE_DWS,
        db=database,
        policy=policy_file,
    )
    return env | {"SNAPCOPY_POLL_SECONDS": "0.2", "SNAPCOPY_RETRY_SECONDS": "0.2"}


@pytest.fixture
def bot_env(slack_only_env: dict[str, str], dws: Any) -> dict[str, str]:
    """Environment for a bot against both stand-ins (skips while bot.dws.standin is missing)."""
    return slack_only_env | {"DWS_ENDPOINT": dws.url}


StartServer = Callable[..., BotServer]


def _server_factory(
    kind: type[DispatchBot] | type[InProcessServer] | type[ProcessServer],
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> Iterator[StartServer]:
    servers: list[BotServer] = []

    def start(
        env: Mapping[str, str | None] | None = None,
        *,
        env_overrides: Mapping[str, str | None] | None = None,
        policy: str | Mapping[str, Mapping[str, Any]] | None = None,
        args: Sequence[str] = (),
        **options: Any,
    ) -> BotServer:
        merged: dict[str, str | None] = dict(
            env if env is not None else request.getfixturevalue("bot_env")
        )
        if policy is not None:
            path = write_policy(tmp_path / f"policy-{len(servers) + 1}.toml", policy)
            merged["SNAPCOPY_POLICY"] = str(path)
        merged.update(env_overrides or {})
        server = kind.start(merged, cwd=tmp_path, args=args, **options)
        servers.append(server)
        return server

    try:
        yield start
    finally:
        for server in reversed(servers):
            server.stop()


@pytest.fixture
def start_server(
    request: pytest.FixtureRequest, tmp_path: Path, database: str
) -> Iterator[StartServer]:
    """A factory: `start_server(env=None, *, env_overrides=None, policy=None, args=())`, the bot
    in this process with requests dispatched to its Bolt app (no HTTP server).

    - `env`: the whole environment (default: `bot_env`, both stand-ins).
    - `env_overrides`: changes on top; a None value removes the variable.
    - `policy`: TOML text or `{"roles": {...}, "approval": {...}}` written to a new file.
    - `args`: `("--sandbox",)` or nothing.

    Servers share the test's database (`database`: SQLite, or PostgreSQL too for tests marked
    `engines`) unless told otherwise, so stopping one and starting another is a restart. Every
    server started is stopped at the end of the test.
    """
    yield from _server_factory(DispatchBot, request, tmp_path)


@pytest.fixture
def start_http_server(
    request: pytest.FixtureRequest, tmp_path: Path, database: str
) -> Iterator[StartServer]:
    """Like `start_server`, but served over HTTP on loopback by the production front end."""
    yield from _server_factory(InProcessServer, request, tmp_path)


@pytest.fixture
def start_process(
    request: pytest.FixtureRequest, tmp_path: Path, database: str
) -> Iterator[StartServer]:
    """Like `start_server`, but each server is a real `python -m bot serve` process, which can
    be sent SIGTERM (`terminate()`) or SIGKILL (`kill()`). `options` go to `ProcessServer.start`
    (`port`, `port_option`, `timeout`), `args` to `serve`."""
    yield from _server_factory(ProcessServer, request, tmp_path)


@pytest.fixture
def server(start_server: StartServer) -> BotServer:
    """The bot, running against both stand-ins with the default policy (dispatch tier)."""
    return start_server()


@pytest.fixture
def http_server(start_http_server: StartServer) -> BotServer:
    """The bot served over HTTP on loopback, against both stand-ins with the default policy."""
    return start_http_server()


StartSocketBot = Callable[..., SocketBot]


@pytest.fixture
def start_socket_bot(
    request: pytest.FixtureRequest, slack: SlackStandIn, tmp_path: Path
) -> Iterator[StartSocketBot]:
    """A factory for `snapcopy serve --socket`: `start_socket_bot(env=None, *, env_overrides=None,
    args=())`, like start_server; SLACK_APP_TOKEN is added and the signing secret removed.
    Returns once the bot holds a Socket Mode connection to the Slack stand-in."""
    bots: list[SocketBot] = []

    def start(
        env: Mapping[str, str | None] | None = None,
        *,
        env_overrides: Mapping[str, str | None] | None = None,
        args: Sequence[str] = (),
    ) -> SocketBot:
        merged: dict[str, str | None] = dict(
            env if env is not None else request.getfixturevalue("bot_env")
        )
        # Each bot's /livez, /healthz and /metrics on a port of its own.
        merged |= {"SLACK_APP_TOKEN": APP_TOKEN, "SLACK_SIGNING_SECRET": None}
        merged.setdefault("PORT", str(free_port()))
        merged.update(env_overrides or {})
        bot = SocketBot.start(merged, cwd=tmp_path, slack=slack, args=args)
        bots.append(bot)
        return bot

    try:
        yield start
    finally:
        for bot in bots:
            bot.stop()


# --- a database in trouble ------------------------------------------------------------------------


@pytest.fixture
def small_volume(tmp_path: Path) -> Iterator[Path]:
    """A 4 MB tmpfs mounted for the test (skips where mounting needs a root this is not)."""
    mount = tmp_path / "volume"
    mount.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(mount)],
        capture_output=True,
    )
    if mounted.returncode != 0:
        pytest.skip("needs root to mount a small tmpfs: " + mounted.stderr.decode().strip())
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def fill_volume(volume: Path) -> Path:
    """Fill `volume` to the last byte with one file, and return it (unlink it to free)."""
    filler = volume / "filler"
    chunk = b"\0" * 65536
    with filler.open("wb", buffering=0) as out:
        for size in (65536, 4096, 512, 1):
            try:
                while True:
                    out.write(chunk[:size])
            except OSError as error:
                if error.errno != errno.ENOSPC:
                    raise
    return filler


def hold_write_lock(db_path: Path, seconds: float) -> threading.Event:
    """Another writer: a connection of its own holds BEGIN IMMEDIATE on the database for
    `seconds`, from a thread; the event is set once it holds the lock."""
    holding = threading.Event()

    def hold() -> None:
        conn = sqlite3.connect(db_path, isolation_level=None, timeout=10)
        try:
            conn.execute("BEGIN IMMEDIATE")
            holding.set()
            threading.Event().wait(seconds)
            conn.execute("ROLLBACK")
        finally:
            conn.close()

    threading.Thread(target=hold, daemon=True).start()
    assert holding.wait(10), "could not take the write lock"
    return holding


def damage_an_index(db_path: Path, index: str = "requests_state") -> Callable[[], None]:
    """Overwrite the root page of `index` with garbage, as a bad sector would (the database must
    not be in use); returns what puts the page back, as a repair would."""
    conn = sqlite3.connect(db_path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        query = "SELECT rootpage FROM sqlite_master WHERE name = ?"
        (root,) = conn.execute(query, [index]).fetchone()
    finally:
        conn.close()
    offset = (root - 1) * page_size
    with db_path.open("r+b") as file:
        file.seek(offset)
        original = file.read(page_size)
        file.seek(offset)
        file.write(b"\xa5" * page_size)

    def repair() -> None:
        with db_path.open("r+b") as file:
            file.seek(offset)
            file.write(original)

    return repair
