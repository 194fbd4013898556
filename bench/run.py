"""The snapcopy benchmark, in one command, on loopback only:

    python -m bench.run            # full run (a few minutes on 2 cores), writes BENCHMARKS.md
    python -m bench.run --quick    # smoke run of a few seconds, prints only

It starts the Slack and DWS stand-ins in this process, `python -m bot serve` and the bare Bolt
app (bench/bare_app.py) as real processes, a load process, and measures: acknowledgement
latency against the bare app, approve-to-reply latency, complete flows per second, start-up
time, resident memory, and the audit queries on a large database. Every loop is bounded and
everything it starts is stopped at the end.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

# `python bench/run.py` puts bench/ first on the path; the code imports from the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import auditdb, door, payloads
from bench.acks import AckBench, AckResult, Kind
from bench.door import DoorResult
from bench.flows import Flow, FlowDriver
from bench.load import LoadProcess
from bench.ramp import Ramp, Step
from bench.report import Table, keep_sections, machine, summary_table, text
from bench.servers import Served, launch
from bench.soak import Soak, soak
from bench.standins import WatchedSlack, start_dws, start_slack
from bench.stats import Summary
from bench.tables import ack_table, audit_rows, document, ramp_table, summary_rows
from bot.dws.standin import DwsStandIn
from tests.harness import (
    APPROVER,
    BOT_TOKEN,
    OUTSIDER,
    POLICY_TOML,
    REQUESTER,
    SIGNING_SECRET,
    bot_environment,
    write_policy,
)
from tests.slackreq import SlackRequest

REPO_ROOT = Path(__file__).resolve().parent.parent
BOT_ARGV: tuple[str, ...] = ("-m", "bot", "serve")
BARE_ARGV = ("-m", "bench.bare_app")


@dataclass(frozen=True)
class Plan:
    requests: int  # per acknowledgement batch
    concurrencies: tuple[int, ...]
    memory_after: int  # requests snapcopy has answered when its memory is read
    approvals: int
    ramp: tuple[int, ...]
    step_seconds: float
    starts: int  # timed start-ups, after one untimed start that compiles the bytecode
    audit_requests: int
    audit_events: int
    audit_runs: int
    query_runs: int
    soak_flows: int  # complete flows between the two readings of memory and open files
    door_rounds: int  # signed commands and health checks timed while 50 clients trickle


FULL = Plan(
    requests=1000,
    concurrencies=(1, 10, 50),
    memory_after=10_000,
    approvals=100,
    ramp=(1, 2, 4, 8, 16, 32, 64),
    step_seconds=6.0,
    starts=3,
    audit_requests=100_000,
    audit_events=1_000_000,
    audit_runs=11,
    query_runs=100,
    soak_flows=3000,
    door_rounds=40,
)
QUICK = Plan(
    requests=40,
    concurrencies=(1, 10, 50),
    memory_after=400,
    approvals=5,
    ramp=(1, 4),
    step_seconds=1.0,
    starts=1,
    audit_requests=5_000,
    audit_events=50_000,
    audit_runs=3,
    query_runs=20,
    soak_flows=100,
    door_rounds=5,
)


@dataclass
class Results:
    plan: Plan
    starts: list[float] = field(default_factory=list)
    bare_start: float = 0.0
    rss_idle: tuple[float, float] = (0.0, 0.0)
    rss_loaded: tuple[float, float] = (0.0, 0.0)
    rss_after: int = 0
    acks: list[AckResult] = field(default_factory=list)
    approvals: Summary | None = None
    steps: list[Step] = field(default_factory=list)
    audit: dict[str, auditdb.Timing] = field(default_factory=dict)
    soak: Soak | None = None
    door: list[DoorResult] = field(default_factory=list)
    wall: float = 0.0


class Bench:
    def __init__(self, plan: Plan, workdir: Path) -> None:
        self.plan = plan
        self.workdir = workdir
        self.results = Results(plan)
        # Bytecode is cached as in an installed deployment (some shells turn caching off), in
        # a private directory so the checkout is left untouched.
        self.python_env: dict[str, str | None] = {
            "PYTHONDONTWRITEBYTECODE": None,
            "PYTHONPYCACHEPREFIX": str(workdir / "pycache"),
        }

    def run(self) -> Results:
        started = time.perf_counter()
        slack = start_slack()
        dws, source = start_dws()
        load = LoadProcess()
        try:
            self._servers(slack, dws, source.id, load)
        finally:
            load.close()
            dws.stop()
            slack.stop()
        self._audit()
        self.results.wall = time.perf_counter() - started
        return self.results

    # --- the servers ---------------------------------------------------------------------------

    def _bot_env(self, slack: WatchedSlack, dws: DwsStandIn) -> dict[str, str | None]:
        policy = write_policy(self.workdir / "snapcopy.toml", POLICY_TOML)
        return {
            **self.python_env,
            **bot_environment(
                slack_api_url=slack.api_url,
                dws_url=dws.url,
                db=self.workdir / "snapcopy.db",
                policy=policy,
            ),
            # Copies are followed to AVAILABLE within a second, so the bot goes idle between
            # steps instead of polling each copy for 15 s.
            "SNAPCOPY_POLL_SECONDS": "1",
        }

    def _start(
        self, name: str, argv: Sequence[str], env: dict[str, str | None]
    ) -> tuple[Served, list[float]]:
        """One untimed start (bytecode, database), then the timed ones; the last one stays up."""
        launch(name, argv, env, cwd=self.workdir).stop()
        times = []
        for _ in range(self.plan.starts - 1):
            served = launch(name, argv, env, cwd=self.workdir)
            times.append(served.started_in)
            served.stop()
        served = launch(name, argv, env, cwd=self.workdir)
        return served, [*times, served.started_in]

    def _servers(
        self, slack: WatchedSlack, dws: DwsStandIn, source_id: str, load: LoadProcess
    ) -> None:
        bot, self.results.starts = self._start("snapcopy", BOT_ARGV, self._bot_env(slack, dws))
        bare_env = {
            **self.python_env,
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": slack.api_url,
        }
        try:
            bare, times = self._start("bare", BARE_ARGV, bare_env)
            self.results.bare_start = statistics.median(times)
            try:
                self.results.rss_idle = bot.rss_mb()
                driver = FlowDriver(bot.url, str(self.workdir / "snapcopy.db"), slack, source_id)
                self._measure(slack, dws, load, bot, bare, driver)
            finally:
                bare.stop()
        finally:
            bot.stop()
        # The door, as snapcopy was served before its front end: gunicorn's threads.
        old = launch("gunicorn", (*BARE_ARGV, "--server", "gunicorn"), bare_env, cwd=self.workdir)
        try:
            self.results.door.append(door.measure(old, slack, self.plan.door_rounds))
        finally:
            old.stop()
        for result in self.results.door:
            _progress(f"door, {result.server}: help", result.help.p99)

    # --- the measurements ----------------------------------------------------------------------

    def _measure(
        self,
        slack: WatchedSlack,
        dws: DwsStandIn,
        load: LoadProcess,
        bot: Served,
        bare: Served,
        driver: FlowDriver,
    ) -> None:
        self._acks(AckBench(load, slack, bot, bare), self._kinds(slack, driver))
        self.results.rss_loaded = bot.rss_mb()
        worker = bot.worker_pid()
        self._flows(Ramp(driver, dws, worker))
        self.results.door.append(door.measure(bot, slack, self.plan.door_rounds))
        self.results.soak = soak(
            driver, dws, worker, str(self.workdir / "snapcopy.db"), count=self.plan.soak_flows
        )
        flat = self.results.soak
        _progress_line(
            f"{flat.flows} flows: RSS {flat.before.rss_mb:.1f} -> {flat.after.rss_mb:.1f} MB, "
            f"open files {flat.before.open_files} -> {flat.after.open_files}, database files "
            f"{flat.before.database_files} -> {flat.after.database_files}"
        )

    def _acks(self, acks: AckBench, kinds: list[Kind]) -> None:
        acks.sent_to_bot += 3  # the requests that made the pending and the handled request
        acks.warm_up(kinds)
        for kind in kinds:
            for concurrency in self.plan.concurrencies:
                result = acks.measure(kind, self.plan.requests, concurrency)
                self.results.acks.append(result)
                _progress(f"{kind.key}, {concurrency} at once", result.bot.p99, result.bare.p99)
        # Memory is read after a known number of requests, whatever the plan's batches add up to.
        acks.top_up(kinds[0], self.plan.memory_after)
        self.results.rss_after = acks.sent_to_bot

    def _flows(self, ramp: Ramp) -> None:
        self.results.approvals = ramp.approvals(self.plan.approvals)
        _progress("approve-to-reply", self.results.approvals.p99)
        self.results.steps = ramp.run(self.plan.ramp, self.plan.step_seconds)
        for step in self.results.steps:
            _progress(f"{step.concurrency} flows at once", step.acks.p99)

    def _kinds(self, slack: WatchedSlack, driver: FlowDriver) -> list[Kind]:
        return kinds(slack, driver)

    def _audit(self) -> None:
        plan = self.plan
        path = self.workdir / "audit.db"
        auditdb.build(path, plan.audit_requests, plan.audit_events)
        env = {**self.python_env, "SNAPCOPY_DB": str(path)}
        commands = {
            "audit": ["-m", "bot", "audit", "--format", "json", "--limit", "50"],
            "version": ["-m", "bot", "--version"],
            "python": ["-c", "pass"],
        }
        for key, args in commands.items():
            self.results.audit[key] = auditdb.time_command(args, env, self.workdir, plan.audit_runs)
        self.results.audit |= auditdb.time_list_queries(path, plan.query_runs)


def kinds(slack: WatchedSlack, driver: FlowDriver, prefix: str = "bench") -> list[Kind]:
    """The kinds of request measured; the clicks need a pending and a handled request (named
    after `prefix`: the DWS stand-in refuses a name twice)."""
    pending = Flow(f"{prefix}-pending")
    driver.request_copy(pending)
    handled = driver.full_flow(f"{prefix}-handled", 0)
    driver.close_thread()
    serial = itertools.count(1)

    def click(user: str, flow: Flow) -> Callable[[int], SlackRequest]:
        return lambda n: payloads.approve_click(
            slack, user, flow.button, flow.message_ts, next(serial)
        )

    return [
        Kind(
            "help",
            "`/snapcopy help` (answered in the ack)",
            None,
            lambda n: payloads.command(slack, REQUESTER, "help", n),
        ),
        Kind(
            "no-role",
            "`/snapcopy` by a user with no role (refused after the ack)",
            "response_url",
            lambda n: payloads.command(slack, OUTSIDER, "", n),
        ),
        Kind(
            "refused",
            "Approve click, no approver role (refused)",
            "chat.postEphemeral",
            click(OUTSIDER, pending),
        ),
        Kind(
            "handled",
            "Approve click on a handled request",
            "chat.postEphemeral",
            click(APPROVER, handled),
        ),
    ]


def _progress(what: str, p99_ms: float, bare_p99_ms: float | None = None) -> None:
    bare = f" (bare {bare_p99_ms:.1f} ms)" if bare_p99_ms is not None else ""
    _progress_line(f"{what}: p99 {p99_ms:.1f} ms{bare}")


def _progress_line(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --- output ---------------------------------------------------------------------------------------


def tables(results: Results) -> list[Table]:
    return [
        summary_table(summary_rows(results)),
        ack_table(results.acks),
        ramp_table(results.steps),
        Table("Audit log", ("figure", "median", "max", "runs"), audit_rows(results)),
    ]


def write_markdown(path: Path, results: Results, command: str) -> None:
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    new = document(results, tables(results), machine(), command)
    path.write_text(keep_sections(old, new), encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="serving processes of snapcopy (`snapcopy serve --workers N`; default 1)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        help="markdown report (default: BENCHMARKS.md for a full run, none for --quick)",
    )
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    global BOT_ARGV
    if args.workers > 1:
        BOT_ARGV = (*BOT_ARGV, "--workers", str(args.workers))
    output = args.output or (None if args.quick else REPO_ROOT / "BENCHMARKS.md")
    with tempfile.TemporaryDirectory(prefix="snapcopy-bench-") as workdir:
        results = Bench(plan, Path(workdir)).run()
    for table in tables(results):
        print("\n" + text(table))
    print(f"\n(benchmark took {results.wall:.0f} s)")
    if output is not None:
        command = "python -m bench.run" + (" --quick" if args.quick else "")
        write_markdown(output, results, command)
        print(f"written to {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
