"""The sweeper: what no click and no worker does by itself, done every few seconds.

- requests past their deadline expire, and due reminders go out (once each, across processes);
- copies whose keep-until is near are warned about, and those past it are asked to be deleted;
- requests short of approvals are escalated, and overdue reviews of emergency copies too;
- request messages Slack refused are offered to their channel again;
- leases held by dead processes of this host are given back, so their work goes on now;
- signed requests whose replay window has passed are forgotten (bot/replays.py).

At start, `recover()` also gives a DWS job to every approved or copying request that none
works on (work left by a crash of an older version, or following that ran out of time).
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta

from bot.clock import iso, now_iso
from bot.domain import CopyRequest, State
from bot.errors import StoreUnavailable
from bot.incident import Incident
from bot.lifecycle import CopyService
from bot.notifier import News, Say, announce, tell
from bot.policy import Approval, Policy, Rule
from bot.retention import Retention
from bot.store import Store
from bot.work.workers import release_dead_holders

log = logging.getLogger(__name__)

SWEEP_SECONDS = 30.0
# A request whose message Slack refused is tried in its channel again this often,
REANNOUNCE_SECONDS = 300.0
# for this long; older requests are left alone, their people were told by DM.
REPOST_WITHIN_SECONDS = 24 * 3600.0


class Sweeper:
    def __init__(
        self,
        copies: CopyService,
        retention: Retention,
        incident: Incident,
        store: Store,
        policy: Policy,
    ) -> None:
        self.copies = copies
        self.retention = retention
        self.incident = incident
        self.store = store
        self.policy = policy
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._recovered = False

    def recover(self) -> None:
        """At start: what a crash left (leases of dead processes, requests nobody works on,
        messages never posted) is picked up again."""
        released = release_dead_holders(self.store)
        resumed = self.resume_unowned()
        reposted = self.announce_unposted(older_than_seconds=0)
        self._recovered = True
        if released or resumed or reposted:
            log.info(
                "picked up unfinished work",
                extra={"leases": released, "resumed": resumed, "reposted": reposted},
            )

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="snapcopy-sweeper", daemon=True)
        self._thread.start()

    def stop(self, timeout: float) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval()):
            try:
                self.sweep()
            except StoreUnavailable as error:
                log.warning(
                    "background sweep skipped: the database cannot be used",
                    extra={"reason": error.reason, "error": error.detail},
                )
            except Exception:
                log.exception("background sweep failed")

    def sweep(self) -> None:
        if not self._recovered:
            self.recover()  # the database could not be used at start
        self.expire_due()
        self.remind_due()
        self.retention.warn_due()
        self.retention.delete_due()
        self.incident.escalate_due()
        self.incident.overdue_reviews()
        self.announce_unposted(older_than_seconds=REANNOUNCE_SECONDS)
        release_dead_holders(self.store)
        self.store.forget_replays(now_iso())

    def interval(self) -> float:
        """Short policies (tests, drills) get a sweep well inside their shortest wait."""
        tables: list[Approval | Rule] = [self.policy.approval, *self.policy.rules]
        waits: list[float] = [
            minutes * 60
            for table in tables
            for minutes in (
                table.expires_after_minutes,
                table.remind_after_minutes,
                table.escalate_after_minutes,
            )
            if minutes is not None
        ]
        lifecycles = [self.policy.lifecycle, *map(self.policy.lifecycle_of, self.policy.rules)]
        waits += [
            days * 86400
            for lifecycle in lifecycles
            for days in (lifecycle.keep_days, lifecycle.warn_before_days)
            if days is not None
        ]
        if self.policy.break_glass is not None:
            waits.append(self.policy.break_glass.review_within_hours * 3600)
        return max(0.2, min(SWEEP_SECONDS, *(wait / 4 for wait in waits)))

    def expire_due(self) -> list[CopyRequest]:
        """Expire every pending request past its deadline."""
        return [
            expired
            for request in self.store.due("expires_at", now_iso(), State.PENDING_APPROVAL)
            if (expired := self.copies.expire(request)) is not None
        ]

    def remind_due(self) -> list[int]:
        """Ping the approvers of requests still waiting at their reminder time, once each."""
        return [
            request.id
            for request in self.store.due("remind_at", now_iso(), State.PENDING_APPROVAL)
            if self.store.take_mark(
                request.id, "remind_at", State.PENDING_APPROVAL, "reminded", tell(News.REMINDER)
            )
        ]

    def announce_unposted(
        self, older_than_seconds: float, *, within_seconds: float = REPOST_WITHIN_SECONDS
    ) -> list[int]:
        """Try the channel again for requests whose message never made it there (the bot was
        not in it, Slack refused), once their last try is `older_than_seconds` old, in whatever
        state they are now: one decided or finished meanwhile is shown as it is."""
        now = datetime.now(UTC)
        cutoff = iso(now - timedelta(seconds=older_than_seconds))
        oldest = iso(now - timedelta(seconds=within_seconds))
        again = []
        for request in self.store.unposted(since=oldest):
            if request.updated_at > cutoff:
                continue
            tries = [row for row in self.store.work_rows(request.id) if row["kind"] == Say.ANNOUNCE]
            if any(row["done_at"] is None for row in tries):
                continue  # still being tried
            if tries and max(row["done_at"] for row in tries) > cutoff:
                continue
            self.store.add_work(request.id, [announce()])
            again.append(request.id)
        return again

    def resume_unowned(self) -> list[int]:
        """Give every approved or copying request that no DWS job works on a job again."""
        unowned = self.store.without_dws_job([State.APPROVED, State.COPYING])
        for request in unowned:
            self.copies.resume(request)
        return [request.id for request in unowned]
