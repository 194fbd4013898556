"""Issue #22's goals, measured in one run, on loopback only:

    python -m bench.ack_goals               # a few minutes; writes its section of BENCHMARKS.md
    python -m bench.ack_goals --workers 2   # snapcopy served by two processes
    python -m bench.ack_goals --quick       # a smoke run of a few seconds, prints only

Three servers answer the same signed requests, in alternating chunks: snapcopy (`python -m bot
serve`), the bare Bolt app served like snapcopy (bench/bare_app.py), and the Bolt app most teams
run: gunicorn's threads, Bolt's defaults, and a command listener that acknowledges and then
opens a modal (`--server gunicorn --typical`). `/snapcopy <snapshot id>` is compared with the
typical app, the Approve clicks with the bare one; then complete flows run at 8 at once.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import textwrap
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench import payloads
from bench.acks import AckBench, AckResult, Kind
from bench.engines import FLOWS_AT_ONCE, FULL, QUICK, Plan, bot_env
from bench.flows import FlowDriver
from bench.load import LoadProcess
from bench.ramp import Ramp, Step
from bench.report import with_section
from bench.run import BARE_ARGV, BOT_ARGV, kinds
from bench.servers import Served, launch
from bench.standins import WatchedSlack, start_dws, start_slack
from tests.harness import BOT_TOKEN, REQUESTER, SIGNING_SECRET

SECTION = "bench.ack_goals"
# Issue #22's yardsticks: flows per second measured before it (this many, on its machine).
FLOWS_BEFORE = 35.0


@dataclass(frozen=True)
class Goal:
    figure: str
    value: str
    goal: str
    met: bool


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ack_goals", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    parser.add_argument("--workers", type=int, default=1, help="snapcopy's serving processes")
    parser.add_argument("--output", type=Path, help="default: BENCHMARKS.md (not with --quick)")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    output = args.output or (None if args.quick else Path("BENCHMARKS.md"))
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="snapcopy-ack-goals-") as workdir:
        goals, failures = _run(plan, Path(workdir), args.workers)
    seconds = time.perf_counter() - started
    lines = _table(goals)
    print("\n".join(lines))
    print(f"\nfailures: {failures} (benchmark took {seconds:.0f} s)")
    if output is not None:
        old = output.read_text("utf-8") if output.exists() else "# Benchmarks\n"
        body = _section(lines, args.workers, failures, seconds)
        output.write_text(with_section(old, SECTION, body), "utf-8")
    return 1 if failures else 0


def _run(plan: Plan, work: Path, workers: int) -> tuple[list[Goal], int]:
    slack = start_slack()
    dws, source = start_dws()
    load = LoadProcess()
    started: list[Served] = []
    try:
        argv = (*BOT_ARGV, "--workers", str(workers)) if workers > 1 else BOT_ARGV
        database = str(work / "snapcopy.db")
        bot = _launch(started, "snapcopy", argv, bot_env(work, slack, dws.url, database), work)
        bare_env: dict[str, str | None] = {
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": slack.api_url,
        }
        bare = _launch(started, "bare", BARE_ARGV, bare_env, work)
        typical_argv = (*BARE_ARGV, "--server", "gunicorn", "--typical")
        typical = _launch(started, "typical", typical_argv, bare_env, work)
        driver = FlowDriver(bot.url, database, slack, source.id)
        return _measure(plan, load, slack, dws, bot, bare, typical, driver, source.id)
    finally:
        for served in started:
            served.stop()
        load.close()
        dws.stop()
        slack.stop()


def _launch(
    started: list[Served], name: str, argv: Sequence[str], env: dict[str, str | None], work: Path
) -> Served:
    served = launch(name, argv, env, cwd=work)
    started.append(served)
    return served


def _measure(
    plan: Plan,
    load: LoadProcess,
    slack: WatchedSlack,
    dws: object,
    bot: Served,
    bare: Served,
    typical: Served,
    driver: FlowDriver,
    source_id: str,
) -> tuple[list[Goal], int]:
    opening = Kind(
        "open",
        "`/snapcopy <snapshot id>` (the modal opened after the ack)",
        "views.open",
        lambda n: payloads.command(slack, REQUESTER, source_id, n),
    )
    clicks = {kind.key: kind for kind in kinds(slack, driver, prefix="goals")}
    against_typical = AckBench(load, slack, bot, typical, bare_calls=True)
    against_bare = AckBench(load, slack, bot, bare)
    against_typical.warm_up([opening])
    against_bare.warm_up([clicks["refused"], clicks["handled"]])

    opened = {c: against_typical.measure(opening, plan.requests, c) for c in (1, 10, 50)}
    refused = against_bare.measure(clicks["refused"], plan.requests, 10)
    handled = against_bare.measure(clicks["handled"], plan.requests, 10)
    for result in [*opened.values(), refused, handled]:
        _progress(result)
    flows = Ramp(driver, dws, bot.worker_pid()).run((FLOWS_AT_ONCE,), plan.flow_seconds)[0]  # type: ignore[arg-type]
    print(f"flows at {FLOWS_AT_ONCE} at once: {flows.per_second:.1f}/s", file=sys.stderr)

    results = [*opened.values(), refused, handled]
    failures = sum(sum(r.failures) for r in results) + flows.failures
    goals = [
        _ratio(opened[10], "the typical Bolt app on gunicorn", 1.0),
        _ratio(opened[50], "the typical Bolt app on gunicorn", 1.0),
        Goal(
            "`/snapcopy <snapshot id>` ack p50, 1 at once",
            f"{opened[1].bot.p50:.1f} ms (typical app {opened[1].bare.p50:.1f} ms)",
            "<= 2 ms",
            opened[1].bot.p50 <= 2.0,
        ),
        _ratio(refused, "the bare app", 3.0),
        _ratio(handled, "the bare app", 3.0),
        Goal(
            f"complete flows per second, {FLOWS_AT_ONCE} at once",
            f"{flows.per_second:.1f}/s",
            f">= {1.5 * FLOWS_BEFORE:.1f}/s (1.5x {FLOWS_BEFORE:.0f})",
            flows.per_second >= 1.5 * FLOWS_BEFORE,
        ),
        _flows_ack(flows),
        Goal("failed or lost, every run above", str(failures), "0", failures == 0),
    ]
    return goals, failures


def _ratio(result: AckResult, against: str, limit: float) -> Goal:
    label = result.kind.label.split(" (")[0]
    return Goal(
        f"{label} ack p99, {result.concurrency} at once",
        f"{result.bot.p99:.1f} ms against {result.bare.p99:.1f} ms (x{result.ratio_p99:.2f})",
        f"<= {limit:.1f}x {against}",
        result.ratio_p99 <= limit,
    )


def _flows_ack(flows: Step) -> Goal:
    return Goal(
        f"the flows' ack p99, {FLOWS_AT_ONCE} at once",
        f"{flows.acks.p99:.1f} ms (snapcopy's process at {flows.worker_cpu:.0%} of a core)",
        "< 100 ms",
        flows.acks.p99 < 100.0,
    )


def _progress(result: AckResult) -> None:
    print(
        f"{result.kind.key}, {result.concurrency} at once: p99 {result.bot.p99:.1f} ms "
        f"(compared with {result.bare.p99:.1f} ms)",
        file=sys.stderr,
        flush=True,
    )


def _table(goals: Sequence[Goal]) -> list[str]:
    out = ["| figure | snapcopy | goal | met |", "|---|---|---|---|"]
    out += [
        f"| {g.figure} | {g.value} | {g.goal} | {'yes' if g.met else '**no**'} |" for g in goals
    ]
    return out


def _section(lines: list[str], workers: int, failures: int, seconds: float) -> str:
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    served = "one process" if workers == 1 else f"{workers} processes (`--workers {workers}`)"
    intro = (
        f"Written by `python -m bench.ack_goals` (bench/ack_goals.py), {when}, {seconds:.0f} s,"
        f" on {os.cpu_count()} cores; snapcopy served by {served}. The typical Bolt app is"
        " gunicorn's threads with Bolt's defaults, its command listener acknowledging and then"
        " calling `views.open`; the bare app is served like snapcopy and only acknowledges. Each"
        " figure alternates chunks of requests between snapcopy and the app it is compared"
        " with. "
        + ("Nothing failed or was lost." if failures == 0 else f"{failures} failed or were lost.")
    )
    return "\n".join(["## Issue #22's goals", "", textwrap.fill(intro, 96), "", *lines])


if __name__ == "__main__":
    sys.exit(main())
