"""Approve-to-reply latency (one flow at a time) and the flows-per-second ramp (more flows at
once, step by step, until the p99 acknowledgement passes the limit)."""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import httpx

from bench.flows import Flow, FlowDriver, FlowFailed
from bench.servers import cpu_seconds
from bench.standins import forget_copies
from bench.stats import Summary
from bot.dws.standin import DwsStandIn

ACK_LIMIT_SECONDS = 1.0


@dataclass(frozen=True)
class Step:
    concurrency: int
    flows: int
    failures: int
    seconds: float
    acks: Summary
    approve_to_reply: Summary
    flow: Summary
    # Share of one core used during the step: by snapcopy's worker (one process, one GIL, so
    # 100 % is its ceiling) and by this process (the stand-ins and the flows' clients).
    worker_cpu: float
    bench_cpu: float

    @property
    def per_second(self) -> float:
        return self.flows / self.seconds

    @property
    def sustained(self) -> bool:
        return self.failures == 0 and self.flows > 0 and self.acks.p99 <= ACK_LIMIT_SECONDS * 1000


class Ramp:
    def __init__(self, driver: FlowDriver, dws: DwsStandIn, worker_pid: int) -> None:
        self.driver = driver
        self.dws = dws
        self.worker_pid = worker_pid
        self._serial = itertools.count(1)
        self._names = itertools.count(1)
        self.requests_sent = 0

    def _name(self, prefix: str) -> str:
        return f"bench-{prefix}-{next(self._names)}"

    def approvals(self, count: int) -> Summary:
        """Approve-to-reply, one flow at a time on an otherwise idle bot."""
        forget_copies(self.dws, self.driver.database)
        flows = [
            self.driver.full_flow(self._name("reply"), next(self._serial)) for _ in range(count)
        ]
        self.driver.close_thread()
        self.requests_sent += 2 * count
        return Summary.of([flow.approve_to_reply for flow in flows])

    def run(self, concurrencies: Sequence[int], seconds: float) -> list[Step]:
        """One step per concurrency, until a step's p99 acknowledgement passes the limit."""
        steps = []
        for concurrency in concurrencies:
            # Each step starts from the same small catalogue.
            forget_copies(self.dws, self.driver.database)
            step = self.step(concurrency, seconds)
            steps.append(step)
            if not step.sustained:
                break
        return steps

    def step(self, concurrency: int, seconds: float) -> Step:
        flows: list[Flow] = []
        failures: list[str] = []
        deadline = time.monotonic() + seconds

        def worker() -> None:
            try:
                while time.monotonic() < deadline:
                    try:
                        flow = self.driver.full_flow(self._name("ramp"), next(self._serial))
                        flows.append(flow)
                    except (FlowFailed, TimeoutError, httpx.HTTPError) as error:
                        failures.append(str(error))
            finally:
                self.driver.close_thread()

        started = time.monotonic()
        cpu = (cpu_seconds(self.worker_pid), cpu_seconds(os.getpid()))
        workers = [threading.Thread(target=worker) for _ in range(concurrency)]
        for thread in workers:
            thread.start()
        for thread in workers:
            thread.join()
        elapsed = time.monotonic() - started
        worker_cpu = (cpu_seconds(self.worker_pid) - cpu[0]) / elapsed
        bench_cpu = (cpu_seconds(os.getpid()) - cpu[1]) / elapsed
        self.requests_sent += 2 * (len(flows) + len(failures))
        return Step(
            concurrency=concurrency,
            flows=len(flows),
            failures=len(failures),
            seconds=elapsed,
            acks=Summary.of([ack for flow in flows for ack in flow.acks]),
            approve_to_reply=Summary.of([flow.approve_to_reply for flow in flows]),
            flow=Summary.of([flow.total for flow in flows]),
            worker_cpu=worker_cpu,
            bench_cpu=bench_cpu,
        )


def best(steps: Sequence[Step]) -> Step | None:
    sustained = [step for step in steps if step.sustained]
    return max(sustained, key=lambda step: step.per_second) if sustained else None
