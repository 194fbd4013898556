"""Approve clicks by members of an approver user group, in bursts, with a cold cache and a slow
Slack, on loopback only:

    python -m bench.roles                    # 5 bursts of 20 clicks per scenario; BENCHMARKS.md
    python -m bench.roles --quick            # 2 bursts of 10, prints only
    python -m bench.roles --before 3241d87   # the same bursts against that commit's bot, too

The Slack stand-in answers `usergroups.users.list` in 0.5 s (a click may wait 1 s). Each burst:
one request per click is made, snapcopy (`python -m bot serve`) is restarted so that it knows no
group (but in the last scenario), and every click is sent at once, each by another member of the
group on its own request. Reported per scenario: lookups of the group per burst (the goal is
one), acknowledgement latency of the clicks, how many counted and how many were told that Slack
could not be asked.

- "restarted, the policy names the group": snapcopy looks the policy's groups up from start-up
  on, so that lookup is in flight when the clicks come;
- "restarted, only the requests name the group" (the policy changed while they waited): nothing
  looks the group up before the clicks, which look it up themselves;
- "not restarted": the requests are made by the bot that takes the clicks, a second later, as
  people click (it looked the group up when the requests were made).
"""

from __future__ import annotations

import argparse
import itertools
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path

# `python bench/roles.py` puts bench/ first on the path; the code imports from the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import payloads
from bench.flows import Flow, FlowDriver
from bench.load import LoadProcess
from bench.report import Table, markdown, text, with_section
from bench.servers import Served, launch
from bench.standins import WatchedSlack, forget_copies, start_dws, start_slack, wait_until_idle
from bench.stats import Summary
from bot.dws.standin import DwsStandIn
from tests.harness import POLICY_TOML, bot_environment, write_policy

REPO_ROOT = Path(__file__).resolve().parent.parent
BOT_ARGV = ("-m", "bot", "serve")
GROUP = "S0BENCHDBAS"
LOOKUP = "usergroups.users.list"
LOOKUP_SECONDS = 0.5
SECTION = "bench.roles"

NAMED = POLICY_TOML.replace('approver = ["U0APPROVE"]', f'approver = ["{GROUP}"]')
NOT_NAMED = POLICY_TOML  # the approver role is a user ID again; the requests still name GROUP


@dataclass(frozen=True)
class Plan:
    bursts: int
    clicks: int


FULL = Plan(bursts=5, clicks=20)
QUICK = Plan(bursts=2, clicks=10)


@dataclass(frozen=True)
class Scenario:
    label: str
    policy: str  # the policy of the bot that takes the clicks
    restart: bool = True  # False: the requests are made by the bot that takes the clicks


SCENARIOS = (
    Scenario("restarted, the policy names the group", NAMED),
    Scenario("restarted, only the requests name the group", NOT_NAMED),
    Scenario("not restarted: clicks a second after the requests", NAMED, restart=False),
)
# People read a request before they click it.
CLICK_AFTER_SECONDS = 1.0


@dataclass
class Outcome:
    label: str
    lookups: list[int] = field(default_factory=list)  # of GROUP, per burst
    latencies: list[float] = field(default_factory=list)  # seconds, every click
    counted: int = 0
    refused: int = 0  # told why the click did nothing
    could_not_ask: int = 0  # of them, told that Slack could not be asked
    failed: int = 0  # non-200 answers and transport errors
    clicks: int = 0


class RolesBench:
    def __init__(self, plan: Plan, workdir: Path, bot_root: Path | None, tag: str) -> None:
        self.plan = plan
        self.workdir = workdir
        self.tag = tag
        self.members = [f"U0BENCHDBA{n:03d}" for n in range(plan.clicks)]
        self.python_env: dict[str, str | None] = {
            "PYTHONDONTWRITEBYTECODE": None,
            "PYTHONPYCACHEPREFIX": str(workdir / "pycache"),
        }
        if bot_root is not None:  # another checkout's bot, for a before/after comparison
            self.python_env["PYTHONPATH"] = str(bot_root)
        self._serial = itertools.count(1)

    def run(self, slack: WatchedSlack, dws: DwsStandIn, source_id: str) -> list[Outcome]:
        slack.usergroups[GROUP] = list(self.members)
        slack.delays[LOOKUP] = LOOKUP_SECONDS
        load = LoadProcess()
        try:
            return [
                self._scenario(scenario, f"{self.tag}s{number}", slack, dws, source_id, load)
                for number, scenario in enumerate(SCENARIOS)
            ]
        finally:
            load.close()

    def _scenario(
        self,
        scenario: Scenario,
        tag: str,
        slack: WatchedSlack,
        dws: DwsStandIn,
        source_id: str,
        load: LoadProcess,
    ) -> Outcome:
        outcome = Outcome(scenario.label)
        for burst in range(self.plan.bursts):
            prefix = f"{tag}b{burst}"
            requests = [] if not scenario.restart else self._requests(slack, dws, source_id, prefix)
            before = _lookups(slack)
            bot = launch(
                "snapcopy", BOT_ARGV, self._env(slack, dws, scenario.policy), cwd=self.workdir
            )
            try:
                if not scenario.restart:
                    requests = self._made_by(bot, slack, source_id, prefix)
                    time.sleep(CLICK_AFTER_SECONDS)
                self._burst(slack, bot, requests, load, outcome)
                # Every lookup of the group since the start: nothing else asks about it.
                outcome.lookups.append(_lookups(slack) - before)
                wait_until_idle(str(self._db))
            finally:
                bot.stop()
            forget_copies(dws, str(self._db))
            _progress(f"{scenario.label}, burst {burst + 1}: {outcome.lookups[-1]} lookup(s)")
        return outcome

    @property
    def _db(self) -> Path:
        return self.workdir / "snapcopy.db"

    def _env(self, slack: WatchedSlack, dws: DwsStandIn, policy: str) -> dict[str, str | None]:
        path = write_policy(self.workdir / "snapcopy.toml", policy)
        env = bot_environment(
            slack_api_url=slack.api_url, dws_url=dws.url, db=self._db, policy=path
        )
        return {**self.python_env, **env, "SNAPCOPY_POLL_SECONDS": "1"}

    def _requests(
        self, slack: WatchedSlack, dws: DwsStandIn, source_id: str, prefix: str
    ) -> list[Flow]:
        """One request per click, made by a bot of its own under the policy naming the group."""
        bot = launch("snapcopy", BOT_ARGV, self._env(slack, dws, NAMED), cwd=self.workdir)
        try:
            return self._made_by(bot, slack, source_id, prefix)
        finally:
            bot.stop()

    def _made_by(self, bot: Served, slack: WatchedSlack, source_id: str, prefix: str) -> list[Flow]:
        driver = FlowDriver(bot.url, str(self._db), slack, source_id)
        try:
            flows = [Flow(f"roles-{prefix}-{n}") for n in range(self.plan.clicks)]
            for flow in flows:
                driver.request_copy(flow)
            return flows
        finally:
            driver.close_thread()

    def _burst(
        self,
        slack: WatchedSlack,
        bot: Served,
        requests: list[Flow],
        load: LoadProcess,
        out: Outcome,
    ) -> None:
        refusals = slack.count("chat.postEphemeral")
        clicks = [
            payloads.raw(
                bot.port,
                payloads.approve_click(
                    slack, member, flow.button, flow.message_ts, next(self._serial)
                ),
            )
            for member, flow in zip(self.members, requests, strict=True)
        ]
        batch = load.run(bot.port, clicks, len(clicks))
        out.clicks += len(clicks)
        out.latencies += batch.latencies
        out.failed += batch.failures
        out.counted += _approved(self._db, [flow.request_id for flow in requests])
        # A refusal is told after the acknowledgement: give those a moment to arrive.
        time.sleep(LOOKUP_SECONDS)
        told = [c.get("text") or "" for c in slack.calls("chat.postEphemeral")[refusals:]]
        out.refused += len(told)
        out.could_not_ask += sum("could not ask Slack" in said for said in told)


def _lookups(slack: WatchedSlack) -> int:
    return sum(call.get("usergroup") == GROUP for call in slack.calls(LOOKUP))


def _approved(db: Path, requests: list[int]) -> int:
    marks = ",".join("?" * len(requests))
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        query = f"SELECT count(DISTINCT request_id) FROM approvals WHERE request_id IN ({marks})"
        (count,) = conn.execute(query, requests).fetchone()
    return int(count)


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _checkout(ref: str, into: Path) -> Path:
    """The repository at `ref`, unpacked (git archive: no worktree is created)."""
    archive = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "archive", "--format=tar", ref],
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


# --- output ---------------------------------------------------------------------------------------


def table(outcomes: Sequence[tuple[str, Outcome]], plan: Plan) -> Table:
    rows = []
    for bot, outcome in outcomes:
        acks = Summary.of(outcome.latencies)
        rows.append(
            (
                f"{bot}: {outcome.label}",
                ", ".join(str(n) for n in outcome.lookups),
                f"{acks.p50:.1f} / {acks.p99:.1f} / {acks.max:.1f}",
                f"{outcome.counted} of {outcome.clicks}",
                f"{outcome.refused} ({outcome.could_not_ask})",
                str(outcome.failed),
            )
        )
    return Table(
        f"Group approvers, {plan.bursts} bursts of {plan.clicks} clicks at once, lookups "
        f"answered in {LOOKUP_SECONDS} s",
        (
            "bot: scenario",
            "lookups of the group, per burst",
            "click ack p50 / p99 / max (ms)",
            "approvals counted",
            'refused (told "could not ask Slack")',
            "failed",
        ),
        rows,
    )


def section(body: Table, command: str, seconds: float) -> str:
    written = (
        f"Written by `{command}` (bench/roles.py), {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
        f"{seconds:.0f} s, on the machine above. The goal: one lookup of the group per burst, "
        "and every click counted within its budget."
    )
    how = (
        "Each burst: one request per click is made, snapcopy is restarted (it knows no group), "
        "and every click is sent at once by another member of the approver group, each on a "
        "request of its own, from the load process of bench/run.py. Lookups are the Slack "
        "stand-in's `usergroups.users.list` calls for the group from the bot's start to the end "
        "of the burst. When the policy names the group, snapcopy looks it up from start-up on, "
        "and the clicks wait for that lookup (about 0.5 s, inside the 1 s budget); when only the "
        "requests name it (the policy changed while they waited), the clicks look it up "
        "themselves. Without the restart, the bot that made the requests looked the group up "
        "then, and the clicks, a second later, find it known. `--before` runs the same bursts "
        "against the bot of an older commit."
    )
    return "\n".join(
        [
            "## Roles through a user group under a slow Slack",
            "",
            textwrap.fill(written, 100),
            "",
            markdown(body),
            "",
            textwrap.fill(how, 100),
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.roles", description="Group approvers' clicks under a slow Slack."
    )
    parser.add_argument("--quick", action="store_true", help="2 bursts of 10 clicks, prints only")
    parser.add_argument("--before", metavar="REF", help="also run the bot of this git commit")
    parser.add_argument(
        "--output", type=Path, help="markdown to update (default: BENCHMARKS.md unless --quick)"
    )
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    output = args.output or (None if args.quick else REPO_ROOT / "BENCHMARKS.md")
    started = time.perf_counter()
    outcomes: list[tuple[str, Outcome]] = []
    slack = start_slack()
    dws, source = start_dws()
    try:
        with tempfile.TemporaryDirectory(prefix="snapcopy-bench-roles-") as workdir:
            root = Path(workdir)
            bots: list[tuple[str, Path | None]] = [("this bot", None)]
            if args.before:
                bots.append((f"before ({args.before})", _checkout(args.before, root / "before")))
            for number, (name, bot_root) in enumerate(bots):
                # A database and bytecode of its own: an older bot may not read a newer schema.
                home = root / f"bot{number}"
                home.mkdir()
                runs = RolesBench(plan, home, bot_root, tag=f"b{number}").run(slack, dws, source.id)
                outcomes += [(name, outcome) for outcome in runs]
    finally:
        dws.stop()
        slack.stop()
    result = table(outcomes, plan)
    print("\n" + text(result))
    seconds = time.perf_counter() - started
    if output is not None:
        command = "python -m bench.roles" + (f" --before {args.before}" if args.before else "")
        old = output.read_text(encoding="utf-8") if output.exists() else ""
        output.write_text(with_section(old, SECTION, section(result, command, seconds)), "utf-8")
        print(f"written to {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
