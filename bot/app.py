"""Builds a running snapcopy: the Bolt app, the audit log, the DWS client and the copy service.

Nothing here runs at import time; `build_runtime` is called once per process (by HTTP or Socket
Mode serving), so threads and connections belong to that process.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
from pydantic import SecretStr
from slack_bolt import App, BoltContext
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler
from slack_sdk.proxy_env_variable_loader import load_http_proxy_from_env

import bot
from bot.catalog import SnapshotCatalog
from bot.database import SqliteFile
from bot.deletion_jobs import Deleter
from bot.dws import AkSkAuth, DwsClient, DwsTarget, RegionalDws, RetryPolicy, build_http_client
from bot.dws_jobs import COPY, FOLLOW, Copier
from bot.errors import StoreUnavailable
from bot.group_changes import StoredChangeLog
from bot.incident import Incident
from bot.lifecycle import CopyService
from bot.metrics import Metrics, System
from bot.policy import Policy
from bot.retention import DELETE, DELETE_FOLLOW, Retention
from bot.roles import GroupMembers, RoleResolver
from bot.settings import Settings, misspelt_variables, policy_for, variables_set
from bot.slack import actions, commands, errors, events, home, modals, options, shortcuts
from bot.slack.client import ObservedWebClient, SandboxWebClient
from bot.slack.deferred import AfterAck
from bot.slack.outbox import SlackOutbox
from bot.slack.sandbox import SandboxRespond
from bot.slack.scopes import GROUPS_SCOPE, GroupAccess
from bot.slack.services import Services
from bot.slack.startup import TokenCheck, check_token, keep_checking
from bot.stakes import StakesReader
from bot.store import Store
from bot.sweeper import Sweeper
from bot.work.backoff import Backoff
from bot.work.queue import Queue
from bot.work.workers import Workers, by_kind, holder_name

log = logging.getLogger(__name__)

# How long shutdown waits for DWS and Slack calls in flight before giving their work back.
STOP_WORK_SECONDS = 3.0
SANDBOX_PROJECT_ID = "0sandbox0000000000000000000000000"


class Stopping(Exception):
    """The process is shutting down; a wait for DWS ends early."""


@dataclass
class Runtime:
    """Everything one process serves with; `close()` releases it."""

    bolt: App
    store: Store
    settings: Settings
    policy: Policy
    services: Services
    metrics: Metrics
    workers: tuple[Workers, ...] = ()
    sandbox: bool = False
    token_unverified: bool = False  # Slack could not be asked at start: keep asking
    stop: threading.Event = field(default_factory=threading.Event)
    _closers: list[Callable[[], None]] = field(default_factory=list)
    sweeper: Sweeper | None = None

    def start_background(self) -> None:
        """Work that outlives a request: what a crash left, the DWS and Slack workers, and the
        sweeper."""
        # First, and in the background: the first clicks find the policy's groups known.
        roles = self.services.roles
        roles.prefetch(roles.policy_groups())
        if self.token_unverified:
            threading.Thread(
                target=keep_checking,
                args=(self.bolt.client, self.stop),
                name="snapcopy-token-check",
                daemon=True,
            ).start()
        if self.sweeper is not None:
            try:
                self.sweeper.recover()
            except StoreUnavailable as error:
                log.error(
                    "could not pick up unfinished work at start; the sweeper tries again",
                    extra={"reason": error.reason, "error": error.detail},
                )
        for workers in self.workers:
            workers.start()
        if self.sweeper is not None:
            self.sweeper.start()

    def on_close(self, closer: Callable[[], None]) -> None:
        """Call `closer` when the runtime closes, before the store does."""
        self._closers.append(closer)

    def reload_policy(self) -> bool:
        """Read the policy file again (SIGHUP). A file with problems changes nothing: the
        policy in force stays, and the log says why. Requests already made keep the approvers
        and approvals they were given."""
        policy, problems = policy_for(self.settings, sandbox=self.sandbox)
        if policy is None:
            log.error(
                "policy not reloaded, the one in force stays: %s",
                " ".join(problems),
                extra={"policy": str(self.settings.snapcopy_policy)},
            )
            return False
        self.policy = policy
        self.services.copies.policy = policy
        self.services.roles.use(policy)
        if self.sweeper is not None:
            self.sweeper.policy = policy
        if isinstance(self.bolt.client, SandboxWebClient):
            self.bolt.client.open_policy = policy.is_open
        for warning in policy.warnings():
            log.warning("policy: %s", warning)
        log.info(
            "policy reloaded",
            extra={"policy": str(self.settings.snapcopy_policy), "rules": len(policy.rules)},
        )
        return True

    def close(self) -> None:
        """Stop claiming work, let calls in flight end, give the rest back; safe to call twice."""
        self.stop.set()
        for workers in self.workers:
            workers.stop(STOP_WORK_SECONDS)
        self.workers = ()
        if self.sweeper is not None:
            self.sweeper.stop(STOP_WORK_SECONDS)
        while self._closers:
            self._closers.pop()()
        self.store.close()


def build_runtime(
    settings: Settings,
    policy: Policy,
    *,
    socket: bool = False,
    sandbox: bool = False,
    dws_transport: httpx.BaseTransport | None = None,
) -> Runtime:
    """Everything one process serves with, in the order it depends on itself: the store, Slack,
    DWS, roles, the workers of the two queues, the lifecycle, and the listeners."""
    closers: list[Callable[[], None]] = []
    stop = threading.Event()
    store = Store(settings.database)
    store.check()  # damaged, full, read-only or held too long: stop here, in one sentence
    metrics = Metrics(store)
    client = slack_client(settings, metrics, sandbox=sandbox, open_policy=policy.is_open)
    token = _check_token(client)
    groups = GroupAccess(client, token.scopes)
    warn_at_start(settings, policy, groups_readable=groups.readable, socket=socket, sandbox=sandbox)
    dws, jobs_dws = dws_clients(
        settings,
        stop,
        sandbox=sandbox,
        transport=dws_transport,
        closers=closers,
        observer=lambda call, outcome, ok, request_id: metrics.call(System.DWS, call, outcome, ok),
    )
    roles = role_resolver(policy, store, groups.members, metrics)
    workers = _workers(settings, store, metrics, jobs_dws, client, roles, sandbox=sandbox)
    stakes = StakesReader(store, jobs_dws)
    copies = CopyService(store, dws, policy, roles, stakes, groups_readable=groups.is_readable)
    catalog = SnapshotCatalog(dws)
    after_ack = AfterAck()
    closers += [catalog.close, after_ack.close, roles.close, copies.close, stakes.close]
    retention = Retention(store, roles)
    incident = Incident(store, roles)
    services = Services(
        copies=copies,
        retention=retention,
        incident=incident,
        store=store,
        roles=roles,
        catalog=catalog,
        after_ack=after_ack,
        sandbox=sandbox,
    )
    return Runtime(
        bolt=bolt_app(settings, client, services, socket=socket, sandbox=sandbox),
        store=store,
        settings=settings,
        policy=policy,
        services=services,
        metrics=metrics,
        workers=workers,
        sandbox=sandbox,
        token_unverified=not token.ok,
        stop=stop,
        sweeper=Sweeper(copies, retention, incident, store, policy),
        _closers=closers,
    )


def role_resolver(
    policy: Policy, store: Store, members: GroupMembers, metrics: Metrics
) -> RoleResolver:
    """Roles through Slack's user groups: looked up with `members` (GroupAccess's), counted,
    and kept fresh by the group changes every process records in the store."""
    return RoleResolver(
        policy,
        members,
        changes=StoredChangeLog(store),
        on_lookup=metrics.group_lookup,
        on_answer=metrics.group_answer,
    )


def announce_start(settings: Settings, policy: Policy, *, socket: bool, sandbox: bool) -> None:
    """One line that says how this process runs: the mode, the policy, the database, the
    regions."""
    regions = ["sandbox"] if sandbox else [t.region or t.endpoint for t in settings.dws_targets()]
    source = "none: the sandbox's own" if policy.is_open else str(settings.snapcopy_policy)
    log.info(
        "snapcopy %s starting",
        bot.__version__,
        extra={
            "mode": ("socket" if socket else "http") + (" sandbox" if sandbox else ""),
            "policy": source,
            "rules": len(policy.rules),
            "database": _database_shown(settings),
            "regions": regions,
        },
    )


def warn_at_start(
    settings: Settings, policy: Policy, *, groups_readable: bool, socket: bool, sandbox: bool
) -> None:
    """How this process runs, then what an operator should know though nothing stops it."""
    announce_start(settings, policy, socket=socket, sandbox=sandbox)
    for warning in misspelt_variables(variables_set(os.environ)):
        log.warning("settings: %s", warning)
    for warning in policy.warnings():
        log.warning("policy: %s", warning)
    if not groups_readable:
        groups = sorted(holder for holder in policy.ids() if holder.startswith("S"))
        log.warning(
            "Slack: the bot token lacks the %s scope, so snapcopy cannot read user groups%s; "
            "reinstall the app with it (manifest.yaml asks for it)",
            GROUPS_SCOPE,
            f" and the roles given to {', '.join(groups)} count for nobody" if groups else "",
        )
    if policy.is_open:
        log.warning(
            "sandbox: there is no policy file at %s, so anyone may request a copy and anyone "
            "else may approve it; copy snapcopy.example.toml there to choose who",
            settings.snapcopy_policy,
        )


def slack_client(
    settings: Settings, metrics: Metrics, *, sandbox: bool, open_policy: bool = False
) -> WebClient:
    """The one Web API client of the process: counted, marked in the sandbox, proxied as the
    environment says."""

    def observe(method: str, outcome: str, ok: bool) -> None:
        metrics.call(System.SLACK, method, outcome, ok)

    marks = {"open_policy": open_policy} if sandbox else {}
    client = (SandboxWebClient if sandbox else ObservedWebClient)(
        **marks,
        observer=observe,
        token=_secret(settings.slack_bot_token),
        base_url=_with_slash(settings.slack_api_url),
        timeout=10,
        # No rate-limit retries here: a listener never sleeps on Slack, and the outbox honours
        # Retry-After by putting the message back in its queue.
        retry_handlers=[ConnectionErrorRetryHandler(max_retry_count=1)],
    )
    # slack-sdk takes HTTPS_PROXY from the environment but ignores NO_PROXY; honour both.
    client.proxy = slack_proxy(settings.slack_api_url)
    return client


def _check_token(client: WebClient) -> TokenCheck:
    """What Slack says of the bot token (not ok: Slack could not be asked); raises
    TokenRefused (start-up stops with one sentence) when Slack refuses it."""
    token = check_token(client)
    if token.ok:
        log.info("Slack accepts the bot token", extra={"as": token.detail})
    else:
        log.warning(
            "Slack could not be asked whether the bot token is good; starting, and asking again",
            extra={"error": token.detail},
        )
    return token


def bolt_app(
    settings: Settings, client: WebClient, services: Services, *, socket: bool, sandbox: bool
) -> App:
    """The Bolt app with every listener registered, one `register` per kind."""
    logging.getLogger("slack_bolt.App").addFilter(_BOLT_TOKEN_FILTER)
    bolt = App(
        client=client,
        signing_secret=_secret(settings.slack_signing_secret),
        # The HTTP answer goes back when the listener returns, instead of after Bolt's 10 ms ack
        # polling; the work after the acknowledgement runs on AfterAck's pool.
        process_before_response=not socket,
        # Socket Mode requests are not signed: the app-level token authenticates the socket.
        request_verification_enabled=not socket,
        token_verification_enabled=False,
        ignoring_self_events_enabled=True,
    )
    bolt.use(_our_client(client, services, sandbox=sandbox))
    bolt.error(errors.handle)
    for kind in (commands, modals, actions, shortcuts, events, home, options):
        kind.register(bolt, services)
    return bolt


def _workers(
    settings: Settings,
    store: Store,
    metrics: Metrics,
    dws: RegionalDws,
    client: WebClient,
    roles: RoleResolver,
    *,
    sandbox: bool,
) -> tuple[Workers, ...]:
    """The workers of the two queues: DWS jobs and the Slack outbox, woken by the store."""
    holder = holder_name()
    backoff = Backoff(base=settings.snapcopy_retry_seconds, cap=300.0)
    copier = Copier(
        store,
        dws,
        on_available=metrics.copy_seconds.observe,
        poll_seconds=settings.snapcopy_poll_seconds,
        follow_seconds=settings.snapcopy_follow_minutes * 60,
        backoff=backoff,
    )
    outbox = SlackOutbox(
        client,
        store,
        roles,
        sandbox=sandbox,
        give_up_after=settings.snapcopy_slack_give_up_hours * 3600,
    )
    deleter = Deleter(store, dws, poll_seconds=settings.snapcopy_poll_seconds, backoff=backoff)
    jobs = by_kind({COPY: copier, FOLLOW: copier, DELETE: deleter, DELETE_FOLLOW: deleter})
    lease = settings.snapcopy_lease_seconds
    workers = (
        Workers(store, Queue.DWS, jobs, holder, lease_seconds=lease),
        Workers(store, Queue.SLACK, outbox, holder, lease_seconds=lease, hold_off=outbox.hold_off),
    )
    for each in workers:
        store.on_new_work(each.wake)
    return workers


def dws_clients(
    settings: Settings,
    stop: threading.Event,
    *,
    sandbox: bool,
    transport: httpx.BaseTransport | None,
    closers: list[Callable[[], None]],
    observer: Callable[[str, str, bool, str | None], None],
) -> tuple[RegionalDws, RegionalDws]:
    """Per region, two clients over one signing httpx.Client: one that retries briefly for the
    picker and the modal's checks, and one that tries once, for the jobs, whose retries are
    durable. One AK/SK signs for every region; each region has its own project."""
    targets, keys = (
        _sandbox_dws(closers) if sandbox else (settings.dws_targets(), _dws_keys(settings))
    )

    def sleep(seconds: float) -> None:
        # Waits between retries end at once on shutdown.
        if stop.wait(seconds):
            raise Stopping

    quick: dict[str, DwsClient] = {}
    jobs: dict[str, DwsClient] = {}
    for target in targets:
        http = build_http_client(
            target.endpoint,
            AkSkAuth(keys[0], keys[1], target.project_id, keys[2]),
            connect_timeout=settings.dws_connect_timeout,
            read_timeout=settings.dws_read_timeout,
            transport=transport,
        )
        closers.append(http.close)
        quick[target.region] = DwsClient(http, target.project_id, sleep=sleep, observer=observer)
        jobs[target.region] = DwsClient(
            http,
            target.project_id,
            retry=RetryPolicy(attempts=1),
            copy_timeout=settings.dws_copy_timeout,
            observer=observer,
        )
    regional = RegionalDws(quick)
    closers.append(regional.close)
    return regional, RegionalDws(jobs)


DwsKeys = tuple[str, SecretStr | str, SecretStr | None]  # AK, SK, security token


def _dws_keys(settings: Settings) -> DwsKeys:
    assert settings.huaweicloud_sdk_ak and settings.huaweicloud_sdk_sk  # load_all checked
    return (
        settings.huaweicloud_sdk_ak.get_secret_value(),
        settings.huaweicloud_sdk_sk,
        settings.huaweicloud_sdk_security_token,
    )


def _sandbox_dws(closers: list[Callable[[], None]]) -> tuple[list[DwsTarget], DwsKeys]:
    """A DWS stand-in in this process, seeded with demo snapshots, and keys it accepts."""
    # Imported here, not for a cycle: the stand-in is only loaded by those who ask for the
    # sandbox.
    from bot.dws.standin import DwsStandIn

    ak, sk = "SANDBOX" + secrets.token_hex(6).upper(), secrets.token_urlsafe(24)
    standin = DwsStandIn(ak, sk, SANDBOX_PROJECT_ID, copy_delay=3.0).start()
    standin.seed_demo()
    closers.append(standin.stop)
    return [DwsTarget("", SANDBOX_PROJECT_ID, standin.url)], (ak, sk, None)


def _our_client(client: WebClient, services: Services, *, sandbox: bool) -> Callable[..., None]:
    """Global middleware: every listener gets snapcopy's own Web API client instead of the one
    Bolt builds per request, so the sandbox marks every message, the proxy choice holds and
    every call is counted; in the sandbox, `respond()` marks its answers too."""

    def middleware(context: BoltContext, next: Callable[[], None]) -> None:
        context["client"] = client
        if sandbox and context.response_url:
            context["respond"] = SandboxRespond(
                response_url=context.response_url,
                proxy=client.proxy,
                ssl=client.ssl,
                open_policy=services.copies.policy.is_open,
            )
        next()

    return middleware


class _BoltReadsTheTokenAgain(logging.Filter):
    """Bolt takes SLACK_BOT_TOKEN from the environment even when given a client holding that
    very token, and warns at every start that it will not use it. Nothing is wrong: drop that
    one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "`token` will be unused" not in record.getMessage()


_BOLT_TOKEN_FILTER = _BoltReadsTheTokenAgain()


def slack_proxy(api_url: str) -> str | None:
    """The proxy for Slack's Web API: HTTPS_PROXY (or HTTP_PROXY), unless NO_PROXY covers the
    API's host, as httpx decides for DWS."""
    host = urlsplit(api_url).hostname or ""
    if host and urllib.request.proxy_bypass(host):
        return None
    return load_http_proxy_from_env()


def _secret(value: Any) -> str | None:
    return value.get_secret_value() if value is not None else None


def _with_slash(url: str) -> str:
    return url if url.endswith("/") else url + "/"


def _database_shown(settings: Settings) -> dict[str, str]:
    """The engine and where it is, for the start-up line: a file's full path, a URL without
    its password."""
    database = settings.database
    if isinstance(database, SqliteFile):
        return {"engine": database.engine, "path": str(database.path.resolve())}
    return {"engine": database.engine, "url": database.shown}
