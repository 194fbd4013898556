"""The end-to-end harness: the bot served over real HTTP on loopback, in two forms.

- `InProcessServer.start()` builds the same Runtime that `snapcopy serve` builds (settings read
  from the given environment, the policy file, the WSGI app of bot/server.py) and serves it on a
  free loopback port from a thread of the test process. It starts in milliseconds, so most
  tests get a fresh server, fresh stand-ins and a fresh database of their own.
- `ProcessServer.start()` launches a real `python -m bot serve` (embedded gunicorn) and waits
  until `GET /healthz` answers. Tests about processes use it: serving, signals, SIGKILL and
  restart, several processes on one database.

Both are `BotServer`s: a handle that signs and posts Slack requests, reads the JSON log lines the
bot wrote (`.stderr()`), and reads its audit log. `SocketBot.start()` launches Socket Mode and
waits until it has connected to the Slack stand-in. The fixtures in `tests/conftest.py` wire all
of them to the stand-ins; use those (`server`, `start_server`, `start_process`,
`start_socket_bot`) rather than this module directly.

Processes run this checkout's code (PYTHONPATH points at the repository) in the test's temporary
directory, in their own process group, with stderr (JSON log lines) in a file.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from bot.app import Runtime, build_runtime
from bot.domain import CopyRequest, State
from bot.front import BufferedWsgi
from bot.front import server as front_server
from bot.logs import configure_logging
from bot.policy import Policy
from bot.server import HEALTH_PATH, make_wsgi_app
from bot.settings import Settings, load_all
from bot.store import Store
from tests import slackreq
from tests.slack_standin import SlackStandIn
from tests.slackreq import SlackRequest

REPO_ROOT = Path(__file__).resolve().parent.parent

# --- who is who: the default policy's people, and the credentials the stand-ins accept ----------

REQUESTER = "U0REQUEST"
ONCALL_GROUP = "S0ONCALL"
ONCALL_MEMBER = "U0ONCALL"  # a requester through the user group only
APPROVER = "U0APPROVE"
ADMIN = "U0ADMIN"
OUTSIDER = "U0OUTSIDE"  # no role at all

BOT_TOKEN = "xoxb-1111111111-2222222222-snapcopyTestBotToken"
SIGNING_SECRET = "test-signing-secret-5d41402abc4b2a76b9719d911017c592"
APP_TOKEN = "xapp-1-A0SNAPCOPY-1-snapcopyTestAppToken"

DWS_AK = "HPUADWSTESTACCESSKEY"
DWS_SK = "dws-test-secret-key-8c6976e5b5410415bde908bd4dee15df"
DWS_PROJECT_ID = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"

SECRETS = (BOT_TOKEN, SIGNING_SECRET, APP_TOKEN, DWS_SK)

POLICY_TOML = f"""\
[roles]
requester = ["{REQUESTER}", "{ONCALL_GROUP}"]
approver = ["{APPROVER}"]
admin = ["{ADMIN}"]

[approval]
required = true
allow_self_approval = false
expires_after_minutes = 240
"""

START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0
HTTP_TIMEOUT = httpx.Timeout(10.0, connect=2.0)

# The bot must reach the stand-ins directly, whatever proxy the machine is configured with.
PROXY_VARIABLES = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def write_policy(path: Path, policy: str | Mapping[str, Mapping[str, Any]]) -> Path:
    """Write a policy file: TOML text as is, or `{"roles": {...}, "approval": {...}}`."""
    text = policy if isinstance(policy, str) else _toml(policy)
    path.write_text(text, encoding="utf-8")
    return path


def _toml(tables: Mapping[str, Mapping[str, Any]]) -> str:
    lines = []
    for table, values in tables.items():
        lines.append(f"[{table}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
        lines.append("")
    return "\n".join(lines)


def bot_environment(
    *, slack_api_url: str, dws_url: str, db: Path | str, policy: Path
) -> dict[str, str]:
    """Everything `snapcopy serve` needs to run against the stand-ins."""
    return {
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack_api_url,
        "HUAWEICLOUD_SDK_AK": DWS_AK,
        "HUAWEICLOUD_SDK_SK": DWS_SK,
        "HUAWEICLOUD_SDK_PROJECT_ID": DWS_PROJECT_ID,
        "DWS_ENDPOINT": dws_url,
        "SNAPCOPY_DB": str(db),
        "SNAPCOPY_POLICY": str(policy),
    }


def subprocess_env(env: Mapping[str, str | None]) -> dict[str, str]:
    """The current environment plus `env` (None removes a variable), running this checkout."""
    merged = {key: value for key, value in os.environ.items() if key not in PROXY_VARIABLES}
    merged["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])
    )
    merged["PYTHONUNBUFFERED"] = "1"
    for key, value in env.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


class AuditLog:
    """Reading a bot's audit log from the test, beside the bot (SQLite WAL allows both)."""

    db_path: Path
    database: str  # SNAPCOPY_DB: the SQLite file's path, or a PostgreSQL URL
    _store: Store | None = None

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store(self.database)
        return self._store

    def close_store(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def requests(self, *states: State) -> list[CopyRequest]:
        """Copy requests in the audit log, oldest first; only those in `states` if given."""
        return self.store.find(states=states or None, newest_first=False)

    def wait_for_request(self, request_id: int, state: State, timeout: float = 10.0) -> CopyRequest:
        """Poll the audit log until request `request_id` reaches `state`."""
        deadline = time.monotonic() + timeout
        while True:
            request = self.store.get(request_id)
            if request is not None and request.state == state:
                return request
            if time.monotonic() > deadline:
                seen = request.state if request else "no such request"
                raise AssertionError(
                    f"request #{request_id} did not reach {state} within {timeout} s (it is "
                    f"{seen}); events: {self.store.events(request_id)}"
                )
            time.sleep(0.02)


class BotServer(AuditLog):
    """A snapcopy serving HTTP on a loopback port, and a signed-request client for it."""

    def __init__(self, *, port: int, env: Mapping[str, str | None], log_path: Path) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.env = dict(env)
        self.log_path = log_path
        self.database = env.get("SNAPCOPY_DB") or "snapcopy.db"
        self.db_path = Path(self.database)
        self.signing_secret = self.env.get("SLACK_SIGNING_SECRET") or SIGNING_SECRET
        self.http = httpx.Client(base_url=self.url, timeout=HTTP_TIMEOUT, trust_env=False)

    def stop(self) -> int | None:
        raise NotImplementedError

    # --- what it did -----------------------------------------------------------------------

    def stderr(self) -> str:
        """Everything the bot logged so far (JSON log lines, or a start-up error)."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def log_records(self) -> list[dict[str, Any]]:
        """The JSON log lines; a line that is not JSON fails the test that asks."""
        return [json.loads(line) for line in self.stderr().splitlines() if line.strip()]

    def wait_healthy(self, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            self._check_alive("it was healthy")
            try:
                answer = self.http.get("/healthz", timeout=1.0)
                if answer.status_code == 200:
                    return
                last = f"{answer.status_code} {answer.text}"
            except httpx.TransportError as error:
                last = repr(error)
            time.sleep(0.02)
        raise AssertionError(
            f"snapcopy serve was not healthy within {timeout} s (last: {last}); its output:\n"
            + self.stderr()
        )

    def _check_alive(self, what: str) -> None:
        """Raise if the server is gone before `what`."""

    # --- talking to it ---------------------------------------------------------------------

    def post(
        self,
        body: bytes | str,
        content_type: str,
        *,
        sign: bool = True,
        secret: str | None = None,
        timestamp: int | None = None,
        headers: Mapping[str, str] | None = None,
        path: str = "/slack/events",
    ) -> httpx.Response:
        """POST a raw body, signed with the server's signing secret unless told otherwise."""
        raw = body.encode() if isinstance(body, str) else body
        all_headers = {"Content-Type": content_type}
        if sign:
            all_headers |= slackreq.sign(raw, secret or self.signing_secret, timestamp=timestamp)
        all_headers |= dict(headers or {})
        return self.http.post(path, content=raw, headers=all_headers)

    def send(self, request: SlackRequest, **options: Any) -> httpx.Response:
        """POST a built request (see tests/slackreq.py); options as for post()."""
        headers = {**request.headers, **options.pop("headers", {})}
        return self.post(request.body, request.content_type, headers=headers, **options)

    def command(self, user_id: str, text: str = "", **fields: Any) -> httpx.Response:
        """`/snapcopy <text>` typed by `user_id`; fields as for slackreq.slash_command()."""
        return self.send(slackreq.slash_command(user_id, text, **fields))

    def interact(self, payload: dict[str, Any] | SlackRequest, **options: Any) -> httpx.Response:
        """An interaction: a payload dict, or a request from one of slackreq's builders."""
        request = payload if isinstance(payload, SlackRequest) else slackreq.interactive(payload)
        return self.send(request, **options)

    def event(
        self,
        event: dict[str, Any],
        *,
        event_id: str | None = None,
        retry_num: int | None = None,
        retry_reason: str = "http_timeout",
    ) -> httpx.Response:
        """An Events API delivery; `retry_num` makes it a re-delivery, as Slack marks them."""
        headers = slackreq.retry_headers(retry_num, retry_reason) if retry_num else None
        return self.send(slackreq.event_callback(event, event_id=event_id, headers=headers))

    def get(self, path: str) -> httpx.Response:
        return self.http.get(path)

    def health(self) -> dict[str, Any]:
        answer: dict[str, Any] = self.http.get("/healthz").json()
        return answer


# --- in process ----------------------------------------------------------------------------------


def settings_from(env: Mapping[str, str | None], *, sandbox: bool) -> tuple[Settings, Policy]:
    """What `snapcopy serve` would load from `env` (and nothing else: no `.env`, no os.environ
    for the names given)."""
    values = {key.lower(): value for key, value in env.items() if value is not None}
    return load_all(socket=False, sandbox=sandbox, _env_file=None, **values)


class InProcessBot(BotServer):
    """The Runtime of `snapcopy serve`, built in this process, logging to a file of its own."""

    def __init__(self, runtime: Runtime, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.runtime = runtime
        self._log_handler: logging.Handler | None = None
        self._log_file: Any = None

    @staticmethod
    def build(
        env: Mapping[str, str | None],
        *,
        cwd: Path,
        args: Sequence[str],
        log_path: Path | None,
        unused: Mapping[str, Any],
    ) -> tuple[Runtime, Path, logging.Handler, Any]:
        """The Runtime `snapcopy serve [--sandbox]` builds from `env`, and its log file."""
        unknown = [arg for arg in args if arg != "--sandbox"]
        if unknown or unused:
            raise TypeError(f"in-process bots take only --sandbox; use start_process: {unknown}")
        sandbox = "--sandbox" in args
        settings, policy = settings_from(env, sandbox=sandbox)
        log_path = log_path or cwd / f"bot-inprocess-{time.monotonic_ns()}.log"
        log_file = log_path.open("a", encoding="utf-8")
        handler = configure_logging(
            settings.snapcopy_log_level, secrets=settings.secret_values(), stream=log_file
        )
        runtime = build_runtime(settings, policy, socket=False, sandbox=sandbox)
        return runtime, log_path, handler, log_file

    def close_log(self) -> None:
        if self._log_handler is not None:
            logging.getLogger().removeHandler(self._log_handler)
            self._log_handler = None
        self._log_file.close()

    def stderr(self) -> str:
        if self._log_file is not None and not self._log_file.closed:
            self._log_file.flush()
        return super().stderr()


class InProcessServer(InProcessBot):
    """An in-process Runtime served on loopback by the production front end (uvicorn,
    bot/front.py), on a thread of its own."""

    def __init__(self, runtime: Runtime, front: uvicorn.Server, **kwargs: Any) -> None:
        super().__init__(runtime, **kwargs)
        self._front = front
        self._thread: threading.Thread | None = None

    @classmethod
    def start(
        cls,
        env: Mapping[str, str | None],
        *,
        cwd: Path,
        args: Sequence[str] = (),
        log_path: Path | None = None,
        timeout: float = START_TIMEOUT,
        **unused: Any,
    ) -> InProcessServer:
        runtime, log_path, handler, log_file = cls.build(
            env, cwd=cwd, args=args, log_path=log_path, unused=unused
        )
        app = BufferedWsgi(
            make_wsgi_app(runtime),
            on_startup=runtime.start_background,
            on_shutdown=runtime.close,
            own_thread=(HEALTH_PATH,),
        )
        listening = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listening.bind(("127.0.0.1", 0))
        front = front_server(app)
        port = listening.getsockname()[1]
        server = cls(runtime, front, port=port, env=env, log_path=log_path)
        server._log_handler, server._log_file = handler, log_file
        server._thread = threading.Thread(
            target=front.run, kwargs={"sockets": [listening]}, daemon=True
        )
        server._thread.start()
        try:
            server.wait_healthy(timeout)
        except BaseException:
            server.stop()
            raise
        return server

    def stop(self) -> int | None:
        """Stop serving; the front end's shutdown closes the Runtime. Safe to call twice."""
        if self._thread is None:
            return 0
        self.http.close()
        self._front.should_exit = True
        self._thread.join(STOP_TIMEOUT)
        self._thread = None
        self.close_store()
        self.close_log()
        return 0


# --- as processes --------------------------------------------------------------------------------


class BotProcess:
    """A running `python -m bot serve …`; stop() it (the fixtures do) to end the process."""

    process: subprocess.Popen[bytes]
    log_path: Path
    _log_file: Any
    # Run through a prefix (`unshare …`): signals go to its whole group, since the prefix
    # does not pass them on to the process it runs.
    prefixed: bool = False

    def _signal(self, signum: int) -> None:
        if self.prefixed:
            os.killpg(self.process.pid, signum)
        else:
            self.process.send_signal(signum)

    @staticmethod
    def spawn(
        env: Mapping[str, str | None],
        *,
        cwd: Path,
        serve_args: Sequence[str],
        log_path: Path,
        prefix: Sequence[str] = (),
        module: str = "bot",
    ) -> tuple[subprocess.Popen[bytes], Any]:
        """`python -m <module> serve …`, run through `prefix` (e.g. `unshare …`) if given."""
        log_file = log_path.open("ab")
        process = subprocess.Popen(
            [*prefix, sys.executable, "-m", module, "serve", *serve_args],
            cwd=cwd,
            env=subprocess_env(env),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
            # Its own process group, so that kill() can take the master and worker down at once.
            start_new_session=True,
        )
        return process, log_file

    def terminate(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM and wait, like a platform stopping a dyno; returns the exit status."""
        if self.process.poll() is None:
            self._signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(
                f"snapcopy serve ignored SIGTERM for {timeout} s; its output:\n{self.stderr()}"
            ) from None

    def kill(self) -> int:
        """SIGKILL the master and its worker at once: a crash, with no chance to clean up."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass  # It exited between poll() and here.
        return self.process.wait(STOP_TIMEOUT)

    def stop_process(self) -> int | None:
        """Release everything; safe to call twice and after terminate() or kill()."""
        try:
            if self.process.poll() is None:
                self._signal(signal.SIGTERM)
                try:
                    return self.process.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    return self.process.wait()
            return self.process.returncode
        finally:
            self._log_file.close()

    def stderr(self) -> str:
        """Everything the process wrote so far (JSON log lines, or a start-up error)."""
        if not self._log_file.closed:
            self._log_file.flush()
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def _exited_early(self, what: str) -> AssertionError:
        return AssertionError(
            f"snapcopy serve exited with {self.process.returncode} before {what}; its output:\n"
            + self.stderr()
        )


class ProcessServer(BotProcess, BotServer):
    """`snapcopy serve` in HTTP mode as a real process (gunicorn) on a loopback port."""

    def __init__(self, process: subprocess.Popen[bytes], *, log_file: Any, **kwargs: Any) -> None:
        BotServer.__init__(self, **kwargs)
        self.process = process
        self._log_file = log_file

    @classmethod
    def start(
        cls,
        env: Mapping[str, str | None],
        *,
        cwd: Path,
        args: Sequence[str] = (),
        port: int | None = None,
        port_option: bool = True,
        log_path: Path | None = None,
        timeout: float = START_TIMEOUT,
        prefix: Sequence[str] = (),
        module: str = "bot",
    ) -> ProcessServer:
        """Start and wait for /healthz. With `port_option=False` the port is not passed as
        `--port`: the process must find it in `env["PORT"]`. `prefix` runs it through another
        command (`unshare …`), `module` through another entry point (tests/clockstep.py)."""
        if port_option:
            port = port or free_port()
            port_args = ["--port", str(port)]
        else:
            port, port_args = int(env["PORT"] or 0), []
        log_path = log_path or cwd / f"bot-{port}.log"
        serve_args = ["--host", "127.0.0.1", *port_args, *args]
        process, log_file = cls.spawn(
            env, cwd=cwd, serve_args=serve_args, log_path=log_path, prefix=prefix, module=module
        )
        server = cls(process, port=port, env=env, log_path=log_path, log_file=log_file)
        server.prefixed = bool(prefix)
        try:
            server.wait_healthy(timeout)
        except BaseException:
            server.stop()
            raise
        return server

    def _check_alive(self, what: str) -> None:
        if self.process.poll() is not None:
            raise self._exited_early(what)

    def stop(self) -> int | None:
        # Kept-alive connections would make gunicorn linger on them for a couple of seconds.
        self.http.close()
        try:
            return self.stop_process()
        finally:
            self.close_store()


class SocketBot(BotProcess, AuditLog):
    """`snapcopy serve --socket`, connected to the Slack stand-in's Socket Mode endpoint.

    Drive it with `slack.socket_send(slackreq.socket_envelope(...))` and read the
    acknowledgements with `slack.wait_for("socket_mode.ack", ...)`.
    """

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        *,
        env: Mapping[str, str | None],
        log_path: Path,
        log_file: Any,
    ) -> None:
        self.process = process
        self.env = dict(env)
        self.log_path = log_path
        self._log_file = log_file
        self.database = env.get("SNAPCOPY_DB") or "snapcopy.db"
        self.db_path = Path(self.database)

    @classmethod
    def start(
        cls,
        env: Mapping[str, str | None],
        *,
        cwd: Path,
        slack: SlackStandIn,
        args: Sequence[str] = (),
        timeout: float = START_TIMEOUT,
    ) -> SocketBot:
        log_path = cwd / f"bot-socket-{time.monotonic_ns()}.log"
        serve_args = ["--socket", *args]
        process, log_file = cls.spawn(env, cwd=cwd, serve_args=serve_args, log_path=log_path)
        bot = cls(process, env=env, log_path=log_path, log_file=log_file)
        try:
            deadline = time.monotonic() + timeout
            while not slack.calls("socket_mode.connect"):
                if bot.process.poll() is not None:
                    raise bot._exited_early("it connected")
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"snapcopy serve --socket did not connect within {timeout} s; its "
                        f"output:\n{bot.stderr()}"
                    )
                time.sleep(0.02)
        except BaseException:
            bot.stop()
            raise
        return bot

    def stop(self) -> int | None:
        try:
            return self.stop_process()
        finally:
            self.close_store()
