"""The moving parts of one run: the producer, the workers, the checkpoints and the signals.

Rows are pulled from the source only as the bounded per-provider queues drain, so memory is set
by what is in flight and buffered for the next checkpoint, never by the size of the input.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from contextlib import suppress
from typing import TYPE_CHECKING

from batchrun import sources
from batchrun.engine.account import AccountGuard
from batchrun.engine.worker import Settings, Stopped, process
from batchrun.errors import AccountRefused
from batchrun.sources import Request, requests_for_row
from batchrun.store import Previous, done_key, revive

if TYPE_CHECKING:
    from batchrun.engine.budget import Budget
    from batchrun.engine.lanes import Lane
    from batchrun.engine.options import RunOptions
    from batchrun.engine.progress import Progress
    from batchrun.engine.sink import Sink
    from batchrun.engine.tally import Tally
    from batchrun.job import Job

# After the first Ctrl-C, requests in flight get this long to finish before they are dropped.
GRACE_SECONDS = 10.0
REVIVE_BATCH = 10_000  # old answers looked up together: one pass over the parts per batch

log = logging.getLogger("batchrun")


class Run:
    """The moving parts of one run: producer, workers, checkpoints, signals."""

    def __init__(
        self, job: Job, options: RunOptions, sink: Sink, tally: Tally, budget: Budget,
        settings: Settings, previous: Previous, rows: int,
    ) -> None:
        self.job = job
        self.options = options
        self.sink = sink
        self.tally = tally
        self.budget = budget
        self.settings = settings
        self.previous = previous
        # Requests of this job already settled by earlier runs, counted as the input is read.
        self.previous_ok = 0
        self.previous_error = 0
        self.rows = rows
        self.lanes: dict[str, Lane] = {}
        # Requests taken by a worker and not yet settled, per provider: what a stop waits for.
        self.in_progress: dict[str, int] = {}
        self.queues: dict[str, asyncio.Queue[Request | None]] = {}
        self.stopping = False
        self.interrupted = False
        self.guard = AccountGuard({p.name: p.stop_after_account_errors for p in job.providers})
        self._to_revive: set[tuple[str, str]] = set()
        self._flush_wanted = asyncio.Event()
        self._finished = False
        self._producer: asyncio.Task[None] | None = None
        self._workers: list[asyncio.Task[None]] = []

    async def execute(self, progress: Progress) -> None:
        workers: list[asyncio.Task[None]] = []
        for name, lane in self.lanes.items():
            spec = self.job.provider(name)
            self.queues[name] = asyncio.Queue(maxsize=2 * spec.max_concurrency)
            workers += [
                asyncio.create_task(self._work(lane, self.queues[name]))
                for _ in range(spec.max_concurrency)
            ]
        producer = asyncio.create_task(self._produce())
        self._producer, self._workers = producer, workers
        flusher = asyncio.create_task(self._flush_loop(progress))
        loop = asyncio.get_running_loop()
        if self.options.handle_signals:
            loop.add_signal_handler(signal.SIGINT, self._on_interrupt, producer, workers)
            loop.add_signal_handler(signal.SIGTERM, self._on_interrupt, producer, workers)
        try:
            # return_exceptions: wait for every worker, even when the producer was cancelled.
            outcomes = await asyncio.gather(producer, *workers, return_exceptions=True)
            for outcome in outcomes:
                if isinstance(outcome, Exception):
                    raise outcome
        finally:
            if self.options.handle_signals:
                loop.remove_signal_handler(signal.SIGINT)
                loop.remove_signal_handler(signal.SIGTERM)
            self._finished = True
            self._flush_wanted.set()
            await flusher

    def interrupt(self) -> None:
        """Ctrl-C seen by a runner that handles the signals itself (beside batch variants)."""
        if self._producer is not None and not self._finished:
            self._on_interrupt(self._producer, self._workers)

    def _on_interrupt(
        self, producer: asyncio.Task[None], workers: list[asyncio.Task[None]]
    ) -> None:
        if self.interrupted:
            for task in workers:  # a second Ctrl-C: stop at once, still resumable
                task.cancel()
            return
        self.interrupted = True
        producer.cancel()
        self._stop_sending()
        asyncio.get_running_loop().call_later(
            GRACE_SECONDS, lambda: [t.cancel() for t in workers]
        )
        open_now = {name: n for name, n in self.in_progress.items() if n}
        if open_now:
            # A hung provider would otherwise make this wait look like a frozen program.
            count = sum(open_now.values())
            log.warning(
                "interrupted: sending nothing more; waiting up to %gs for %d request%s in "
                "progress (%s) to finish; press Ctrl-C again to stop at once (unfinished "
                "requests are sent again when the same command is run again)",
                GRACE_SECONDS, count, "" if count == 1 else "s",
                ", ".join(f"{n} on {name}" for name, n in sorted(open_now.items())),
            )
        else:
            log.warning("interrupted: sending nothing more; saving the results so far")

    async def _produce(self) -> None:
        try:
            await self._feed()
        finally:
            if not self.stopping:  # a stop has already queued the end markers
                for name, queue in self.queues.items():
                    for _ in range(self.job.provider(name).max_concurrency):
                        await queue.put(None)

    async def _feed(self) -> None:
        spec = self.job.input
        batches = sources.iter_rows(spec, self.job.base_dir, self.job.output.keep_columns)
        remaining = self.rows
        families = {p.name: p.api for p in self.job.providers}  # image tokens differ by api
        shard = self.options.shard
        while remaining > 0 and not self.stopping:
            batch = await asyncio.to_thread(next, batches, None)
            if batch is None:
                return
            for row in batch[:remaining]:
                if shard is not None and not shard.owns(row.id):
                    continue  # another shard's row
                if self.options.only_ids is not None and row.id not in self.options.only_ids:
                    continue
                for request in requests_for_row(row, self.job.variants, families):
                    if self.guard.stopped(request.provider):
                        continue  # the account was refused: left pending for a rerun
                    key = done_key(request.row_id, request.hash)
                    if key in self.previous.done_ok:
                        self.previous_ok += 1
                        if key in self.previous.superseded:  # asked for again: A -> B -> A
                            self._to_revive.add((request.row_id, request.hash))
                            if len(self._to_revive) >= REVIVE_BATCH:
                                await self._revive()
                        continue
                    if key in self.previous.done_error:
                        self.previous_error += 1
                        continue
                    if self.stopping:
                        return
                    await self.queues[request.provider].put(request)
            remaining -= len(batch)
        await self._revive()

    async def _revive(self) -> None:
        """Write the old answers the job asks for again, so they are the latest once more."""
        wanted, self._to_revive = self._to_revive, set()
        if wanted:
            lines = await asyncio.to_thread(revive, self.sink.root, wanted)
            await self.sink.append_lines(lines)

    async def _work(self, lane: Lane, queue: asyncio.Queue[Request | None]) -> None:
        try:
            while True:
                request = await queue.get()
                if request is None or self.stopping:
                    return
                worst = request.worst_cost
                if not self.budget.reserve(worst):
                    self._stop_sending()
                    return
                provider = request.provider
                self.in_progress[provider] = self.in_progress.get(provider, 0) + 1
                try:
                    record = await process(request, lane, self.settings, self.tally,
                                           self._should_stop)
                except Stopped:
                    self.budget.settle(worst, 0.0)
                    return
                except AccountRefused as refusal:
                    self.budget.settle(worst, 0.0)
                    if self.guard.refusal(provider, refusal):
                        self._stop_provider(provider, refusal)
                    continue  # not recorded: the request stays pending
                finally:
                    self.in_progress[provider] -= 1
                self.guard.answered(provider)
                self.budget.settle(worst, self.budget.spent_on(record, worst))
                await self.sink.append(record)
                self.tally.add(record)
                if self.sink.pending_rows >= self.sink.flush_rows:
                    self._flush_wanted.set()
        except Exception:
            # A failure outside the request error tree (disk full, a bug): stop everything and
            # let it surface, rather than leave the producer waiting on a queue nobody reads.
            self._stop_sending()
            if self._producer is not None:
                self._producer.cancel()
            raise

    def _should_stop(self) -> bool:
        return self.stopping

    def settled_before(self) -> int:
        """Requests of this job that earlier runs settled (so far as the input was read)."""
        return self.previous_ok + self.previous_error

    def _stop_sending(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        for queue in self.queues.values():
            _drain(queue)
            for _ in range(queue.maxsize):
                queue.put_nowait(None)

    def _stop_provider(self, provider: str, refusal: AccountRefused) -> None:
        """Send nothing more to a provider that refused the account; its rows stay pending."""
        log.error("%s refused the account %d times in a row: sending nothing more to it "
                  "(%s); its unsent rows stay pending", provider,
                  self.guard.stop_after[provider], refusal.message)
        queue = self.queues.get(provider)
        if queue is None:
            return
        _drain(queue)
        for _ in range(self.job.provider(provider).max_concurrency):
            queue.put_nowait(None)

    async def _flush_loop(self, progress: Progress) -> None:
        # Ended by `_finished`, not by cancel: in Python 3.11 a cancel racing with a finishing
        # wait_for can be swallowed, which would leave this loop running forever.
        while not self._finished:
            with suppress(TimeoutError):
                async with asyncio.timeout(0.5):
                    await self._flush_wanted.wait()
            self._flush_wanted.clear()
            progress.refresh()
            if self.sink.due():
                await self.sink.flush()

    def describe_waiting(self) -> str:
        """Per provider: achieved rates against current limits and what is waited on."""
        return "; ".join(f"{name}: {lane.limiter.describe()}" for name, lane in self.lanes.items())


def _drain(queue: asyncio.Queue[Request | None]) -> None:
    while not queue.empty():
        queue.get_nowait()
