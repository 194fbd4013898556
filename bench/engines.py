"""snapcopy on SQLite and on PostgreSQL, side by side in one run, on loopback only:

    python -m bench.engines            # 1,000 requests per figure, 20 s of flows
    python -m bench.engines --quick    # a smoke run

Two `snapcopy serve` processes against the same Slack and DWS stand-ins, one on an SQLite file,
one on a PostgreSQL database (the tests' embedded server, on a Unix socket). Acknowledgements
are sent to both in alternating chunks, so a slow moment of a shared machine hits both; then
complete flows (modal, request message, Approve, the new snapshot's reply) run at 8 at once on
each in turn. Goals (#19): PostgreSQL's ack p99 at 10 at once within 1.5x SQLite's, and flows
per second no lower.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.acks import AckBench, Kind
from bench.flows import FlowDriver
from bench.load import Batch, LoadProcess
from bench.ramp import Ramp, Step
from bench.run import BOT_ARGV, kinds
from bench.servers import Served, launch
from bench.standins import WatchedSlack, start_dws, start_slack, wait_until_idle
from bench.stats import Summary
from tests.harness import POLICY_TOML, bot_environment, write_policy
from tests.postgres import TestPostgres

ENGINES = ("sqlite", "postgresql")
CONCURRENCIES = (1, 10, 50)
FLOWS_AT_ONCE = 8


@dataclass(frozen=True)
class Plan:
    requests: int
    flow_seconds: float


FULL = Plan(requests=1000, flow_seconds=20.0)
QUICK = Plan(requests=60, flow_seconds=3.0)


@dataclass
class Engine:
    name: str
    served: Served
    driver: FlowDriver
    acks: AckBench | None = None
    kinds: list[Kind] | None = None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.engines", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    plan = QUICK if parser.parse_args(argv).quick else FULL
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="snapcopy-engines-") as workdir:
        rows, failures = _run(plan, Path(workdir))
    for line in _table(rows):
        print(line)
    print(f"\nfailures: {failures} (benchmark took {time.perf_counter() - started:.0f} s)")
    return 1 if failures else 0


def _run(plan: Plan, work: Path) -> tuple[list[tuple[str, float, float]], int]:
    slack = start_slack()
    dws, source = start_dws()
    load = LoadProcess()
    postgres = TestPostgres(work / "postgres")
    engines: list[Engine] = []
    try:
        for name, database in (
            ("sqlite", str(work / "snapcopy.db")),
            ("postgresql", postgres.url(postgres.create_database())),
        ):
            served = launch(name, BOT_ARGV, bot_env(work, slack, dws.url, database), cwd=work)
            engines.append(Engine(name, served, FlowDriver(served.url, database, slack, source.id)))
        return _measure(plan, load, slack, dws, engines)
    finally:
        for engine in engines:
            engine.served.stop()
        load.close()
        dws.stop()
        slack.stop()
        postgres.server.cleanup()


def bot_env(work: Path, slack: WatchedSlack, dws_url: str, database: str) -> dict[str, str | None]:
    """`snapcopy serve`'s environment in a benchmark: the stand-ins, `database`, the test
    policy, and copies followed every second (the stand-in makes them in about one)."""
    policy = write_policy(work / "snapcopy.toml", POLICY_TOML)
    env = bot_environment(slack_api_url=slack.api_url, dws_url=dws_url, db=database, policy=policy)
    return {**env, "SNAPCOPY_POLL_SECONDS": "1"}


def _measure(
    plan: Plan, load: LoadProcess, slack: WatchedSlack, dws: object, engines: list[Engine]
) -> tuple[list[tuple[str, float, float]], int]:
    sqlite, postgresql = engines
    sqlite.acks = AckBench(load, slack, sqlite.served, postgresql.served)
    postgresql.acks = AckBench(load, slack, postgresql.served, sqlite.served)
    for engine in engines:
        engine.kinds = kinds(slack, engine.driver, prefix=f"bench-{engine.name}")
        for kind in engine.kinds:
            assert engine.acks is not None
            engine.acks.send_to_bot(kind, 100, 10)  # warm up: imports, caches, prepared plans
    rows: list[tuple[str, float, float]] = []
    failures = 0
    assert sqlite.kinds is not None and postgresql.kinds is not None
    for lite, pg in zip(sqlite.kinds, postgresql.kinds, strict=True):
        for concurrency in CONCURRENCIES:
            batches = _alternating(plan.requests, concurrency, (sqlite, lite), (postgresql, pg))
            summaries = [Summary.of(batch.latencies) for batch in batches]
            failures += sum(batch.failures for batch in batches)
            label = f"ack p99, {lite.key}, {concurrency} at once (ms)"
            rows.append((label, summaries[0].p99, summaries[1].p99))
            _progress(label, summaries)
    for engine_rows in _flows(plan, dws, engines):
        rows.append(engine_rows[0])
        failures += int(engine_rows[1])
    return rows, failures


def _alternating(
    n: int, concurrency: int, *pairs: tuple[Engine, Kind], chunks: int = 4
) -> list[Batch]:
    batches = [Batch() for _ in pairs]
    for _ in range(chunks):
        for batch, (engine, kind) in zip(batches, pairs, strict=True):
            assert engine.acks is not None
            chunk, _ = engine.acks.send_to_bot(kind, max(1, n // chunks), concurrency)
            batch.add(chunk)
    return batches


def _flows(
    plan: Plan, dws: object, engines: list[Engine], chunks: int = 4
) -> list[tuple[tuple[str, float, float], int]]:
    """Flows at 8 at once on each engine, in alternating chunks: a slow moment of the shared
    machine then hits both engines instead of one whole run."""
    ramps = [Ramp(e.driver, dws, e.served.worker_pid()) for e in engines]  # type: ignore[arg-type]
    steps: list[list[Step]] = [[] for _ in engines]
    for _ in range(chunks):
        for ramp, done in zip(ramps, steps, strict=True):
            # A chunk starts by dropping the copies from the shared DWS stand-in: the other
            # bot must not be following any of them then.
            for engine in engines:
                wait_until_idle(engine.driver.database)
            done.append(ramp.run((FLOWS_AT_ONCE,), plan.flow_seconds / chunks)[0])
    (lite_rate, lite_ack, lite_failed), (pg_rate, pg_ack, pg_failed) = map(_overall, steps)
    print(f"flows at {FLOWS_AT_ONCE} at once: {lite_rate:.1f}/s vs {pg_rate:.1f}/s")
    return [
        (
            (f"flows per second, {FLOWS_AT_ONCE} at once", lite_rate, pg_rate),
            lite_failed + pg_failed,
        ),
        ((f"flows' ack p99, {FLOWS_AT_ONCE} at once (ms, worst chunk)", lite_ack, pg_ack), 0),
    ]


def _overall(chunks: list[Step]) -> tuple[float, float, int]:
    """Flows per second over all chunks, the highest chunk's ack p99, and the failures."""
    flows = sum(step.flows for step in chunks)
    seconds = sum(step.seconds for step in chunks)
    return flows / seconds, max(step.acks.p99 for step in chunks), sum(s.failures for s in chunks)


def _progress(label: str, summaries: list[Summary]) -> None:
    lite, pg = summaries
    print(f"{label}: SQLite {lite.p99:.1f}, PostgreSQL {pg.p99:.1f}", file=sys.stderr, flush=True)


def _table(rows: list[tuple[str, float, float]]) -> list[str]:
    width = max(len(label) for label, _, _ in rows)
    out = [f"{'figure':<{width}}  {'SQLite':>8}  {'PostgreSQL':>10}  {'PG/SQLite':>9}"]
    for label, lite, pg in rows:
        ratio = pg / lite if lite else float("nan")
        out.append(f"{label:<{width}}  {lite:>8.1f}  {pg:>10.1f}  {ratio:>8.2f}x")
    out.append(
        "goals: PostgreSQL's ack p99 at 10 at once within 1.5x SQLite's; flows per second "
        "no lower (ratio >= 1.0)"
    )
    return out


if __name__ == "__main__":
    sys.exit(main())
