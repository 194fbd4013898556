"""What the results say, as rows against the targets of issue #7 and as detail tables."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from bench.acks import AckResult
from bench.ramp import ACK_LIMIT_SECONDS, Step, best
from bench.report import Row, Table, markdown

if TYPE_CHECKING:
    from bench.run import Results

# Targets, on a 2-core machine.
ACK_RATIO = 1.3
ACK_P99_MS = 100.0
ACK_MAX_MS = 3000.0
REPLY_P99_MS = 150.0
START_SECONDS = 2.0
RSS_MB = 150.0
QUERY_MS = 200.0
# The audit tool imports the standard library alone (bot/audit.py).
AUDIT_COMMAND_MS = 120.0


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.1f} ms"


def summary_rows(results: Results) -> list[Row]:
    rows = _ack_rows(results.acks)
    rows += [_reply_row(results), _flows_row(results.steps), _start_row(results)]
    rows += [_memory_row(results), *_soak_rows(results), *_door_rows(results)]
    rows += _query_rows(results)
    return rows


DOOR_LIMIT_MS = 1000.0


def _door_rows(results: Results) -> list[Row]:
    rows = []
    for result in results.door:
        ours = result.server == "snapcopy"
        rows.append(
            Row(
                "signed `/snapcopy help` and `/healthz` while 50 clients trickle bodies: "
                + ("snapcopy" if ours else "the same app on gunicorn (how snapcopy was served)"),
                f"help p99 {_ms(result.help.p99)}, healthz p99 {_ms(result.health.p99)}, "
                f"{result.timeouts} of {2 * result.help.n} past 5 s",
                f"< {DOOR_LIMIT_MS:.0f} ms" if ours else "reported",
                (result.help.max < DOOR_LIMIT_MS and result.health.max < DOOR_LIMIT_MS)
                if ours
                else None,
            )
        )
    return rows


# Flat means: what thousands of flows leave behind is noise, not growth.
SOAK_RSS_GROWTH_MB = 15.0
SOAK_FD_GROWTH = 5


def _soak_rows(results: Results) -> list[Row]:
    flat = results.soak
    if flat is None:
        return [Row("memory and open files over many flows", "not measured", "flat", False)]
    before, after = flat.before, flat.after
    return [
        Row(
            f"resident memory of the worker before and after {flat.flows:,} complete flows "
            f"({flat.failures} failed, {flat.flows / flat.seconds:.0f}/s)",
            f"{before.rss_mb:.1f} MB -> {after.rss_mb:.1f} MB",
            f"grows < {SOAK_RSS_GROWTH_MB:.0f} MB",
            after.rss_mb - before.rss_mb < SOAK_RSS_GROWTH_MB and flat.failures == 0,
        ),
        Row(
            f"open files of the worker before and after {flat.flows:,} flows (of them SQLite)",
            f"{before.open_files} ({before.database_files}) -> "
            f"{after.open_files} ({after.database_files})",
            f"grows <= {SOAK_FD_GROWTH}",
            after.open_files - before.open_files <= SOAK_FD_GROWTH,
        ),
    ]


def _ack_rows(acks: Sequence[AckResult]) -> list[Row]:
    rows = []
    for result in acks:
        if result.concurrency == 10:
            ratio = result.ratio_p99
            rows.append(
                Row(
                    f"ack p99, 10 at once: {result.kind.label}",
                    f"{_ms(result.bot.p99)} (bare {_ms(result.bare.p99)}, x{ratio:.2f})",
                    f"<= {ACK_RATIO} x bare and < {ACK_P99_MS:.0f} ms",
                    ratio <= ACK_RATIO and result.bot.p99 < ACK_P99_MS and not any(result.failures),
                )
            )
        if result.concurrency == 50:
            rows.append(
                Row(
                    f"slowest ack, 50 at once: {result.kind.label}",
                    f"{_ms(result.bot.max)} (p99 {_ms(result.bot.p99)})",
                    f"< {ACK_MAX_MS:.0f} ms",
                    result.bot.max < ACK_MAX_MS and not any(result.failures),
                )
            )
    return rows


def _reply_row(results: Results) -> Row:
    summary = results.approvals
    if summary is None:
        return Row("approve-to-reply", "not measured", f"p99 < {REPLY_P99_MS:.0f} ms", False)
    return Row(
        f"approve-to-reply ({summary.n} flows one at a time, DWS answers at once)",
        f"p50 {_ms(summary.p50)}, p99 {_ms(summary.p99)}",
        f"p99 < {REPLY_P99_MS:.0f} ms + DWS time",
        summary.p99 < REPLY_P99_MS,
    )


def _flows_row(steps: Sequence[Step]) -> Row:
    top = best(steps)
    if top is None:
        return Row("complete flows per second", "no step sustained", "reported")
    last = steps[-1]
    if last.sustained:
        why = f"ramp cap: {last.concurrency} at once still had ack p99 {_ms(last.acks.p99)}"
    else:
        why = f"{last.concurrency} at once: ack p99 {_ms(last.acks.p99)}"
    return Row(
        "complete flows per second (modal, approve, copy, reply)",
        f"max {top.per_second:.1f}/s, with {top.concurrency} at once (ack p99 "
        f"{_ms(top.acks.p99)}, worker CPU {top.worker_cpu:.0%}); {why}",
        f"reported (ramp until ack p99 > {ACK_LIMIT_SECONDS:.0f} s)",
    )


def _start_row(results: Results) -> Row:
    starts = sorted(results.starts)
    median = starts[len(starts) // 2]
    return Row(
        f"start-up to first healthy /healthz ({len(starts)} starts)",
        f"median {median:.2f} s, max {starts[-1]:.2f} s (bare app {results.bare_start:.2f} s)",
        f"< {START_SECONDS:.0f} s",
        starts[-1] < START_SECONDS,
    )


def _memory_row(results: Results) -> Row:
    master, worker = results.rss_loaded
    idle_master, idle_worker = results.rss_idle
    return Row(
        f"resident memory after {results.rss_after:,} requests",
        (f"worker {worker:.1f} MB + master {master:.1f} MB = " if master else "")
        + f"{worker + master:.1f} MB "
        f"(at start {idle_worker + idle_master:.1f} MB)",
        f"< {RSS_MB:.0f} MB",
        worker + master < RSS_MB,
    )


def _query_rows(results: Results) -> list[Row]:
    plan, audit = results.plan, results.audit
    size = f"{plan.audit_requests:,} requests / {plan.audit_events:,} events"
    command, listing = audit["audit"], audit["list_text"]
    return [
        Row(
            f"`snapcopy audit --format json --limit 50`, whole command ({size})",
            f"median {_ms(command.median)}, max {_ms(command.max)}",
            f"< {AUDIT_COMMAND_MS:.0f} ms",
            command.median < AUDIT_COMMAND_MS,
        ),
        Row(
            f"`/snapcopy list` query for an approver ({size})",
            f"median {_ms(listing.median)}, max {_ms(listing.max)}",
            f"< {QUERY_MS:.0f} ms",
            listing.median < QUERY_MS,
        ),
    ]


def ack_table(acks: Sequence[AckResult]) -> Table:
    rows = []
    for result in acks:
        bot, bare = result.bot, result.bare
        rows.append(
            (
                result.kind.label,
                str(result.concurrency),
                str(bot.n),
                f"{bot.p50:.1f} / {bot.p95:.1f} / {bot.p99:.1f} / {bot.max:.1f}",
                f"{bare.p50:.1f} / {bare.p95:.1f} / {bare.p99:.1f} / {bare.max:.1f}",
                f"x{result.ratio_p99:.2f}",
                "{} / {}".format(*result.failures),
                f"{result.drained_in:.2f} s" if result.kind.lazy_call else "-",
            )
        )
    return Table(
        "Acknowledgement latency (ms)",
        (
            "request",
            "at once",
            "n",
            "snapcopy p50 / p95 / p99 / max",
            "bare Bolt p50 / p95 / p99 / max",
            "p99 ratio",
            "failed (snapcopy / bare)",
            "after-ack work done",
        ),
        rows,
    )


def ramp_table(steps: Sequence[Step]) -> Table:
    rows = [
        (
            str(step.concurrency),
            str(step.flows),
            str(step.failures),
            f"{step.per_second:.1f}",
            f"{step.acks.p50:.1f} / {step.acks.p99:.1f}",
            f"{step.approve_to_reply.p50:.1f} / {step.approve_to_reply.p99:.1f}",
            f"{step.flow.p50:.1f} / {step.flow.p99:.1f}",
            f"{step.worker_cpu:.0%}",
            f"{step.bench_cpu:.0%}",
        )
        for step in steps
    ]
    return Table(
        "Complete flows, ramped (ms)",
        (
            "flows at once",
            "flows",
            "failed",
            "flows/s",
            "ack p50 / p99",
            "approve-to-reply p50 / p99",
            "whole flow p50 / p99",
            "snapcopy worker CPU",
            "benchmark process CPU",
        ),
        rows,
    )


def audit_rows(results: Results) -> list[tuple[str, str, str, str]]:
    labels = {
        "audit": "`python -m bot audit --format json --limit 50` (whole command)",
        "version": "`python -m bot --version` (interpreter and imports only)",
        "python": "`python -c pass` (interpreter only)",
        "mine": "store.find(requested_by=..., limit=10)",
        "waiting": "store.find(states=[pending_approval], limit=50)",
        "list_text": "answers.list_text (the whole `/snapcopy list` answer)",
    }
    return [
        (label, _ms(timing.median), _ms(timing.max), str(timing.runs))
        for key, label in labels.items()
        if (timing := results.audit.get(key)) is not None
    ]


METHOD = """\
## How it is measured

- Everything runs on 127.0.0.1. The Slack Web API stand-in (tests/slack_standin.py) and the DWS
  stand-in (bot/dws/standin.py, `copy_delay=0`: copies are AVAILABLE at once) run in the
  benchmark process. snapcopy runs as `python -m bot serve --host 127.0.0.1 --port N` with its
  settings in environment variables, exactly as in production: one process, uvicorn in front
  (bot/front.py) buffering whole requests for 8 app threads. The bare Bolt app
  (bench/bare_app.py) has the same command and action ids, listeners that only call `ack()`,
  `process_before_response=True`, and is served by the same front end. Both run at the same
  time; each batch of N requests is sent in 2 chunks that alternate between them.
- Acknowledgement latency is measured by a separate load process (so the stand-ins' threads do
  not share its interpreter): closed loop, N keep-alive connections, requests built and signed
  with Slack's v0 HMAC-SHA256 right before each batch (never during it), time from writing the
  request to reading the last byte of the answer. Percentiles are nearest-rank. After each
  snapcopy batch the benchmark waits until the bot has made the Web API call that every request
  of that kind causes after the acknowledgement ("after-ack work done": seconds after the last
  acknowledgement), so no batch inherits the previous one's backlog.
- The bare app does nothing, before or after acknowledging. snapcopy decides a click before it
  acknowledges it (the request is read, and an approval committed, so that no crash can lose
  it), and for the requests that need it then does its work (an audited refusal and a Web API
  call) in the same process, under the same interpreter lock as its acknowledgements; with 10 or
  50 requests at once the process is saturated, so that work shows in the acknowledgement
  figures. `/snapcopy help` is answered inside the acknowledgement and has no work after it.
- Approve clicks: a user without the approver role clicking Approve on a pending request (refused
  after the acknowledgement, audited, told by an ephemeral message), and the approver clicking
  Approve on a request that is already copied (told it is handled).
- Approve-to-reply: from sending the approver's click to the Slack stand-in receiving the thread
  reply that carries the new snapshot id (`Call.at`, the stand-in's `time.monotonic()` in the
  same process), one flow at a time. The DWS stand-in's own time is inside this figure.
- Flows per second: threads of the benchmark process each run complete flows back to back
  (submit the copy modal, wait for the request message, click Approve, wait for the reply with
  the new snapshot id) for a fixed time per step; the step's acknowledgement p99 covers both the
  modal submission and the click. The DWS stand-in forgets the copies between steps so every step
  starts from the same catalogue.
- Start-up: from spawning the process to the first `200` from `GET /healthz`, polled every 5 ms,
  after one untimed start that compiles the bytecode and creates the database (bytecode is cached
  in a private directory, as in an installed deployment).
- Memory: VmRSS from /proc/<pid>/status of the snapcopy process (MB = 10^6 bytes). Memory and
  open files over many flows: read before and after 3,000 complete flows (8 at a time, in
  batches of 500 after each of which the bot is let go idle), once it owes no work; open files
  are the entries of /proc/<pid>/fd, and those that are the database (with its WAL and
  shared-memory files).
- The door (bench/door.py): 50 clients each send a request's headers and then one body byte every
  quarter second; meanwhile signed `/snapcopy help` commands and `GET /healthz` are sent one at a
  time with a 5 s limit. Against snapcopy, and against the bare app served by gunicorn (1 worker,
  gthread, 8 threads), which is how snapcopy was served before its front end.
- Audit: a database created by `bot.store.Store` and filled with bulk inserts; commands are timed
  whole (interpreter start included) after one untimed run, the `/snapcopy list` query in process.
"""


def document(
    results: Results, tables: Sequence[Table], facts: Sequence[tuple[str, str]], command: str
) -> str:
    machine = Table("Machine", ("", ""), list(facts))
    parts = [
        "# Benchmarks",
        "",
        "Written by `python -m bench.run` (bench/run.py); run it again to refresh the figures.",
        "",
        f"Command: `{command}` from the repository root, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
        f"{results.wall:.0f} s.",
        "",
        markdown(machine),
        "",
        *[markdown(table) + "\n" for table in tables],
        METHOD,
    ]
    return "\n".join(parts)
