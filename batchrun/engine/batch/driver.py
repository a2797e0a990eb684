"""The batch variants of a run: plan, submit, wait, collect, commit; round after round.

Each round plans what is pending into batch files (`plan`), takes every batch one step further
at the provider (`remote`), waits while the provider works, and commits each batch that ended:
its records go through the run's `Sink` (so they land in the same journal and parts as online
answers, and count as settled for every later run), the sink is checkpointed, and only then is
the batch journaled `committed`. Unfinished requests that `[batch] unfinished` resubmits are
planned again in the next round; those it sends online go through the online pipeline once no
batch is left open. Ctrl-C, `--detach` and a crash all leave the provider's batches running:
the same command later picks them up where the journal says they are.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack, suppress
from typing import TYPE_CHECKING

from batchrun.engine.account import Stop
from batchrun.engine.batch.collect import Collector
from batchrun.engine.batch.plan import Pending, Planner
from batchrun.engine.batch.remote import Remote, kill_point
from batchrun.engine.batch.status import describe, detached_line, interrupted_line
from batchrun.engine.retry import retry_policy
from batchrun.errors import AccountRefused
from batchrun.providers.batches.session import batch_api
from batchrun.store import revive
from batchrun.store.batches import BatchJournal, BatchState

if TYPE_CHECKING:
    from batchrun.engine.budget import Budget
    from batchrun.engine.lanes import Lane
    from batchrun.engine.options import RunOptions
    from batchrun.engine.sink import Sink
    from batchrun.engine.tally import Tally
    from batchrun.job import Job
    from batchrun.parse import AnswerChecker
    from batchrun.providers.batches.base import BatchAPI
    from batchrun.store import Previous

log = logging.getLogger("batchrun")
# Sends the rows' unfinished requests through the online pipeline (set up by the runner).
OnlinePass = Callable[[frozenset[str]], Awaitable[None]]

IDLE_BACKOFF = 1.5  # the poll interval grows by this while nothing changes ...
IDLE_MAX_FACTOR = 8.0  # ... up to this many times poll_seconds
LOG_EVERY_S = 30.0


class BatchDriver:
    """Runs the batch variants of one job (or of one shard of it)."""

    def __init__(
        self, job: Job, options: RunOptions, sink: Sink, tally: Tally, budget: Budget,
        previous: Previous, rows: int, checker: AnswerChecker | None, *, cancel: bool = False,
    ) -> None:
        self.job = job
        self.options = options
        self.sink = sink
        self.tally = tally
        self.budget = budget
        self.rows = rows
        self.checker = checker
        self.cancel_mode = cancel
        self.variants = tuple(v for v in job.variants if v.batch)
        self.pending = Pending(previous)
        self.previous_ok = 0
        self.previous_error = 0
        self.interrupted = False
        self.stops: list[Stop] = []
        self.run_online: OnlinePass | None = None  # set by the runner: the online fallback
        self._wake = asyncio.Event()
        self._remotes: dict[str, Remote] = {}
        self._refused: set[str] = set()
        self._orphaned: set[str] = set()  # batches of providers the job no longer has
        self.left_in_batches = 0  # requests still in live batches when the run ended
        self._last_log = 0.0
        self._last_line = ""

    def interrupt(self) -> None:
        """Ctrl-C: stop waiting; the provider's batches go on, the rerun collects them."""
        self.interrupted = True
        self._wake.set()

    async def execute(self, lanes: dict[str, Lane], keys: dict[str, str | None]) -> None:
        """Every round until nothing is open (or a stop, --detach or Ctrl-C)."""
        journal = await asyncio.to_thread(BatchJournal, self.sink.root)
        self.journal = journal
        try:
            async with AsyncExitStack() as stack:
                for name in self._providers(journal):
                    spec = self.job.provider(name)
                    lane = lanes[name]
                    api = await stack.enter_async_context(
                        batch_api(lane.client.spec, spec.api, keys.get(name)))
                    self._remotes[name] = self._remote(api, journal)
                await self._rounds(journal)
        finally:
            self.left_in_batches = sum(s.requests for s in journal.states.values() if s.live)
            journal.close()

    def _providers(self, journal: BatchJournal) -> list[str]:
        names = {v.provider for v in self.variants}
        names |= {s.provider for s in journal.states.values() if s.live}
        return sorted(name for name in names if any(p.name == name for p in self.job.providers))

    def _remote(self, api: BatchAPI, journal: BatchJournal) -> Remote:
        shard = self.options.shard
        metadata = {"batchrun_run": journal.run_id, "batchrun_job": self.job.name[:64]}
        if shard is not None:
            metadata["batchrun_shard"] = str(shard)
        retry = self.job.retry
        attempt_s = api.http.spec.timeout_seconds + retry.backoff_max_s + retry.retry_after_max_s
        return Remote(api, journal, retry_policy(retry), window=self.job.batch.window,
                      metadata=metadata, create_span_s=retry.max_attempts * attempt_s)

    async def _rounds(self, journal: BatchJournal) -> None:
        states = journal.states
        await asyncio.to_thread(self.pending.load, journal)
        for state in states.values():
            if state.state not in ("planned", "upload", "uploaded", "committed"):
                self.budget.hold(state.worst_usd)  # submitted by an earlier run
        first = plan = True
        while not self.interrupted:
            if plan and not self.cancel_mode and self.variants and not self.budget.exhausted:
                await self._plan(first)
                first = plan = False
            if self.cancel_mode:
                await self._cancel_open()
            else:
                await self._submit_planned()
            if self.options.detach and not self.cancel_mode:
                await self._poll_once()
                await self._commit_ended()
                self._detached()
                return
            if not any(self._moving(s) for s in states.values()):
                break
            await self._wait()
            # Requests to resubmit are planned again from the input, into new batches.
            plan = await self._commit_ended() or plan
        if self.interrupted:
            self._say_still_running()
            return
        if self.pending.online and self.run_online is not None and not self.cancel_mode:
            await self._online()

    def _active(self, provider: str) -> Remote | None:
        """The remote of a provider this run still talks to (None: gone or refused)."""
        return None if provider in self._refused else self._remotes.get(provider)

    def _moving(self, state: BatchState) -> bool:
        """Whether this run takes the batch further (else a next run, or nobody, will)."""
        if not state.live or state.state in self._stalled() or state.provider in self._refused:
            return False  # a refused provider's batches stay with it for a later run
        if state.provider not in self._remotes:
            if state.key not in self._orphaned:
                self._orphaned.add(state.key)
                log.warning("batch %s (%s) belongs to provider %r, which the job no longer "
                            "has: it is left as it is; put the provider back to collect it",
                            state.key, state.batch_id or "not submitted", state.provider)
            return False
        return True

    def _stalled(self) -> tuple[str, ...]:
        """States left for a next run: not submitted past the budget, a refused account or in
        a cancel."""
        if self.cancel_mode or self.budget.exhausted or self._refused:
            return ("planned", "upload", "uploaded")
        return ()

    async def _plan(self, first: bool) -> None:
        planner = Planner(self.job, self.variants, {n: r.api for n, r in self._remotes.items()},
                          self.journal, self.pending, rows=self.rows, shard=self.options.shard,
                          only_ids=self.options.only_ids, stopping=lambda: self.interrupted)
        outcome = await asyncio.to_thread(planner.run)
        if first:
            self.previous_ok, self.previous_error = outcome.previous_ok, outcome.previous_error
            if outcome.revive:
                await self.sink.append_lines(
                    await asyncio.to_thread(revive, self.sink.root, outcome.revive))
        if outcome.planned:
            count = sum(self.journal.states[k].requests for k in outcome.planned)
            log.info("planned %d batch%s of %d requests", len(outcome.planned),
                     "" if len(outcome.planned) == 1 else "es", count)

    async def _submit_planned(self) -> None:
        known = {s.batch_id for s in self.journal.states.values() if s.batch_id}
        for state in list(self.journal.states.values()):
            remote = self._active(state.provider)
            if self.interrupted or remote is None:
                continue
            try:
                if state.state in ("planned", "upload", "uploaded"):
                    if not self.budget.reserve(state.worst_usd):
                        log.warning("[budget] max_usd: batch %s (worst case $%.4f) is not "
                                    "submitted", state.key, state.worst_usd)
                        continue
                    try:
                        await remote.submit(state)
                    except AccountRefused:  # refused before any batch existed: not spending
                        self.budget.settle(state.worst_usd, 0.0)
                        raise
                elif state.state == "create":
                    await remote.look_up(state, known)
            except AccountRefused as refusal:
                self._refuse(state, refusal)
            if state.batch_id:
                known.add(state.batch_id)

    def _refuse(self, state: BatchState, refusal: AccountRefused) -> None:
        """Stop talking to a provider that refused the account, once.

        Its batches already at the provider stay there (and keep their budget hold: they may
        be spending); the next run, with the account fixed, collects them.
        """
        if state.provider in self._refused:
            return
        log.error("%s refused the account: %s; its batches are neither submitted nor waited "
                  "for, their rows stay pending", state.provider, refusal.message)
        self._refused.add(state.provider)
        self.stops.append(Stop(state.provider, refusal.error_type, refusal.message, True))

    async def _wait(self) -> None:
        """Poll until a batch has ended (or Ctrl-C), backing off while nothing changes."""
        interval = self.job.batch.poll_seconds
        while not self.interrupted:
            if await self._poll_once():
                interval = self.job.batch.poll_seconds
            else:
                interval = min(interval * IDLE_BACKOFF,
                               self.job.batch.poll_seconds * IDLE_MAX_FACTOR)
            self._show()
            states = self.journal.states.values()
            if any(s.state in ("ended", "downloaded", "commit") and self._active(s.provider)
                   for s in states):
                return
            if not any(s.open_remote and self._active(s.provider) for s in states):
                return
            self._wake.clear()
            with suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._wake.wait()

    async def _poll_once(self) -> bool:
        changed = False
        known = {s.batch_id for s in self.journal.states.values() if s.batch_id}
        for state in list(self.journal.states.values()):
            remote = self._active(state.provider)
            if remote is None or self.interrupted:
                continue
            try:
                if state.state == "created":
                    changed = await remote.poll(state) or changed
                elif state.state == "create":
                    changed = await remote.look_up(state, known,
                                                   create=not self.cancel_mode) or changed
            except AccountRefused as refusal:
                self._refuse(state, refusal)
        return changed

    async def _commit_ended(self) -> bool:
        """Download and commit every ended batch; whether any resubmitted requests."""
        resubmitted = False
        for state in list(self.journal.states.values()):
            remote = self._active(state.provider)
            if remote is None:
                continue
            try:
                if state.state == "ended":
                    await remote.download(state)
            except AccountRefused as refusal:
                self._refuse(state, refusal)
                continue
            if state.state in ("downloaded", "commit"):
                resubmitted = await self._commit(remote, state) or resubmitted
        return resubmitted

    async def _commit(self, remote: Remote, state: BatchState) -> bool:
        await remote.record(state.key, "commit")
        folder = self.journal.folder
        collector = Collector(
            self.job, state, remote.api, [folder / name for name in state.files],
            folder / f"{state.key}.requests.jsonl", self.pending, self.checker,
            leave_unfinished=self.cancel_mode)
        chunks = collector.chunks()
        first = True
        while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
            await self.sink.append_lines([record.to_line() for record in chunk])
            for record in chunk:
                self.tally.add(record)
            if first:
                first = False
                kill_point("commit-half")
        await self.sink.flush()  # the answers durable before the batch says committed
        outcome = collector.outcome
        await remote.record(state.key, "committed", ok=outcome.ok, error=outcome.error,
                            resubmit=outcome.resubmit, online=outcome.online,
                            cost_usd=round(outcome.cost_usd, 9) if outcome.priced else None)
        self.budget.settle(state.worst_usd, outcome.cost_usd)
        await asyncio.to_thread(self.pending.release, self.journal.folder, state,
                                outcome.resubmit, outcome.online)
        unfinished = len(outcome.resubmit) + len(outcome.online)
        log.info("batch %s (%s) committed: %d ok, %d error%s", state.batch_id or state.key,
                 state.status, outcome.ok, outcome.error,
                 f", {unfinished} unfinished to be sent again" if unfinished else "")
        return bool(outcome.resubmit)

    async def _cancel_open(self) -> None:
        for state in list(self.journal.states.values()):
            remote = self._active(state.provider)
            if remote is None or state.state != "created" or state.cancel_requested:
                continue
            try:
                await remote.poll(state)  # one that ended meanwhile is collected, not cancelled
                if state.state != "created":
                    continue
                await remote.cancel(state)
                log.info("%s: cancelling batch %s", state.provider, state.batch_id)
                await remote.poll(state)
            except AccountRefused as refusal:
                self._refuse(state, refusal)

    async def _online(self) -> None:
        """The requests `[batch] unfinished = "online"` handed over, through the online path."""
        assert self.run_online is not None
        await self.sink.flush()
        rows = await asyncio.to_thread(self._rows_sent_online)
        if rows:
            log.info("sending the unfinished requests of %d rows through the online path",
                     len(rows))
            await self.run_online(frozenset(rows))

    def _rows_sent_online(self) -> set[str]:
        rows: set[str] = set()
        for state in self.journal.states.values():
            rows.update(row for _, row in state.online)
        return rows

    def _show(self) -> None:
        if not self.options.progress:
            return
        line = describe(self.journal.states.values(), time.time())
        now = time.monotonic()
        if line and (line != self._last_line or now - self._last_log >= LOG_EVERY_S):
            self._last_line, self._last_log = line, now
            log.info("%s", line)

    def _detached(self) -> None:
        line = detached_line(self.journal.states.values(), self.job.source, self.sink.root)
        if line:
            log.info("%s", line)

    def _say_still_running(self) -> None:
        line = interrupted_line(self.journal.states.values(), self.sink.root)
        if line:
            log.warning("%s", line)
