"""Acknowledgement latency: the same signed requests to snapcopy and to the bare Bolt app, at
each concurrency, in alternating chunks (bare, then snapcopy) so drift hits both alike.

After each snapcopy batch the benchmark waits until the bot has finished the work it does after
acknowledging (one Web API call per request), so a batch's backlog never slows the next one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bench import payloads
from bench.load import Batch, LoadProcess
from bench.servers import Served
from bench.standins import WatchedSlack
from bench.stats import Summary
from tests.slackreq import SlackRequest

DRAIN_TIMEOUT = 180.0
WARM_UP = 100
ROUNDS = 2


@dataclass(frozen=True)
class Kind:
    key: str
    label: str
    # The Web API call snapcopy makes once per request of this kind after acknowledging; None
    # when the answer travels in the acknowledgement itself.
    lazy_call: str | None
    build: Callable[[int], SlackRequest]


@dataclass(frozen=True)
class AckResult:
    kind: Kind
    concurrency: int
    bot: Summary
    bare: Summary
    failures: tuple[int, int]  # snapcopy, bare: non-200 answers and transport errors
    drained_in: float  # seconds from the last acknowledgement to the last lazy call

    @property
    def ratio_p99(self) -> float:
        return self.bot.p99 / self.bare.p99


class AckBench:
    def __init__(
        self,
        load: LoadProcess,
        slack: WatchedSlack,
        bot: Served,
        bare: Served,
        *,
        bare_calls: bool = False,
    ) -> None:
        """`bare_calls`: the bare app makes the same Web API call after acknowledging (the
        typical app opens its modal), so its batches too wait for theirs: none of them is then
        counted as snapcopy's."""
        self.load = load
        self.slack = slack
        self.bot = bot
        self.bare = bare
        self.bare_calls = bare_calls
        self.sent_to_bot = 0
        self._serial = 0

    def _requests(self, served: Served, kind: Kind, n: int) -> list[bytes]:
        # Built and signed right before the batch: fresh timestamps, no signing in the timing.
        built = []
        for _ in range(n):
            self._serial += 1
            built.append(payloads.raw(served.port, kind.build(self._serial)))
        return built

    def send(self, served: Served, kind: Kind, n: int, concurrency: int) -> Batch:
        # The Web API call to wait for after the bare app's batch, if it makes one.
        call = kind.lazy_call if served is self.bare and self.bare_calls else None
        before = self.slack.count(call) if call else 0
        batch = self.load.run(served.port, self._requests(served, kind, n), concurrency)
        if served is self.bot:
            self.sent_to_bot += n
        if call:
            self.slack.wait_count((call,), before + batch.statuses[200], DRAIN_TIMEOUT)
        return batch

    def send_to_bot(self, kind: Kind, n: int, concurrency: int) -> tuple[Batch, float]:
        """A batch to snapcopy, then wait until its after-ack work is done."""
        if kind.lazy_call is None:
            return self.send(self.bot, kind, n, concurrency), 0.0
        before = self.slack.count(kind.lazy_call)
        batch = self.send(self.bot, kind, n, concurrency)
        drained = self.slack.wait_count(
            (kind.lazy_call,), before + batch.statuses[200], DRAIN_TIMEOUT
        )
        return batch, drained

    def warm_up(self, kinds: list[Kind]) -> None:
        """First requests pay for imports and caches; neither server is measured on them."""
        for kind in kinds:
            self.send(self.bare, kind, WARM_UP, 10)
            self.send_to_bot(kind, WARM_UP, 10)

    def measure(self, kind: Kind, n: int, concurrency: int, rounds: int = ROUNDS) -> AckResult:
        """`n` requests to each server, in `rounds` alternating chunks: on a shared machine a
        slow moment then hits both servers instead of one whole batch of one of them."""
        bare, bot = Batch(), Batch()
        drained = 0.0
        for size in _chunks(n, rounds):
            bare.add(self.send(self.bare, kind, size, concurrency))
            chunk, waited = self.send_to_bot(kind, size, concurrency)
            bot.add(chunk)
            drained = max(drained, waited)
        return AckResult(
            kind=kind,
            concurrency=concurrency,
            bot=Summary.of(bot.latencies),
            bare=Summary.of(bare.latencies),
            failures=(bot.failures, bare.failures),
            drained_in=drained,
        )

    def top_up(self, kind: Kind, total: int, concurrency: int = 10, chunk: int = 1000) -> None:
        """Send `kind` until snapcopy has had `total` requests in all."""
        while self.sent_to_bot < total:
            self.send_to_bot(kind, min(chunk, total - self.sent_to_bot), concurrency)


def _chunks(n: int, parts: int) -> list[int]:
    parts = max(1, min(parts, n))
    return [n // parts + (1 if i < n % parts else 0) for i in range(parts)]
