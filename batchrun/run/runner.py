"""The async core: input rows -> requests -> per-provider queues -> workers -> sink.

Rows are pulled from the source only as the bounded queues drain, so memory is set by what is in
flight and buffered for the next checkpoint, never by the size of the input.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import signal
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from batchrun import sources
from batchrun.errors import OutputDirError, StorageError
from batchrun.job import Job
from batchrun.parse import AnswerChecker
from batchrun.run.budget import Budget
from batchrun.run.lanes import Lane, open_lanes
from batchrun.run.preflight import Checked, preflight
from batchrun.run.progress import Progress
from batchrun.run.retry import retry_policy
from batchrun.run.sink import Sink
from batchrun.run.summary import RunSummary
from batchrun.run.tally import Tally
from batchrun.run.worker import Settings, Stopped, process
from batchrun.sources import Request, requests_for_row
from batchrun.store import (
    OutputLock,
    Previous,
    done_key,
    prepare_output,
    previous_results,
    write_manifest,
)

# After the first Ctrl-C, requests in flight get this long to finish before they are dropped.
GRACE_SECONDS = 10.0

log = logging.getLogger("batchrun")
_OUT_OF_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


@dataclass(frozen=True, slots=True)
class RunOptions:
    """Command-line choices that are not part of the job."""

    limit: int | None = None
    fresh: bool = False
    retry_errors: bool = False
    progress: bool = True
    handle_signals: bool = False
    # Only these input ids (estimate --sample); None: every row.
    only_ids: frozenset[str] | None = None
    # Called once the output directory is this run's and before anything is sent, so that
    # "sending for real" is never said by a run that is then refused (estimate --sample).
    on_start: Callable[[], None] | None = None


async def arun(job: Job, options: RunOptions | None = None) -> RunSummary:
    """Run (or resume) a job and return its summary."""
    options = options or RunOptions()
    checked = await asyncio.to_thread(preflight, job)
    root = job.output_path()
    if root.exists() and not root.is_dir():
        raise OutputDirError(f"{root}: exists and is not a directory; choose another output path")
    root.mkdir(parents=True, exist_ok=True)
    lock = OutputLock(root)
    lock.acquire()  # before --fresh clears anything: a live run's results are never touched
    try:
        prepare_output(root, fresh=options.fresh)
        if options.on_start is not None:
            options.on_start()
        return await _run_locked(job, options, checked, root)
    except OSError as error:
        # The journal maps its own write errors; a full disk can also refuse a new segment,
        # the manifest or a checkpoint's folder, and deserves the same words there.
        if error.errno in _OUT_OF_SPACE:
            raise StorageError.from_os_error(root, error) from None
        raise
    finally:
        lock.release()


async def _run_locked(
    job: Job, options: RunOptions, checked: Checked, root: Path
) -> RunSummary:
    started = time.monotonic()
    scan = checked.scan
    rows = scan.rows if options.limit is None else min(scan.rows, options.limit)
    sink = Sink(root, flush_rows=job.output.flush_rows, flush_seconds=job.output.flush_seconds)
    await asyncio.to_thread(sink.open)
    try:
        previous = await asyncio.to_thread(previous_results, root, options.retry_errors)
        write_manifest(root, job, input_rows=scan.rows, limit=options.limit)
        counted_rows = rows if options.only_ids is None else min(rows, len(options.only_ids))
        total = counted_rows * job.requests_per_row
        tally = Tally()
        budget = Budget(job.budget.max_usd, previous.spent)
        settings = Settings(
            retry=retry_policy(job.retry),
            checker=AnswerChecker(job.parse.schema, job.parse.fields) if job.parse.json else None,
            backoff_initial_s=job.retry.backoff_initial_s,
        )
        run = _Run(job, options, sink, tally, budget, settings, previous, rows)
        async with open_lanes(job, checked.keys) as lanes:
            run.lanes = lanes
            progress = Progress(
                total=total, already_done=run.settled_before, tally=tally,
                enabled=options.progress, waiting=run.describe_waiting,
            )
            try:
                await run.execute(progress)
            finally:
                progress.close()
    finally:
        await sink.close()
    stopped = "interrupted" if run.interrupted else ("budget" if budget.exhausted else None)
    ok, error = run.previous_ok + tally.ok, run.previous_error + tally.error
    return RunSummary(
        name=job.name, output=root, total=total, ok=ok, error=error,
        skipped=run.settled_before(), pending=max(0, total - ok - error),
        tokens=tally.tokens(),
        cost_usd=tally.cost_usd if tally.priced_rows else None,
        elapsed_s=time.monotonic() - started, stopped=stopped,
    )


class _Run:
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
        self._flush_wanted = asyncio.Event()
        self._finished = False
        self._producer: asyncio.Task[None] | None = None

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
        self._producer = producer
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
        while remaining > 0 and not self.stopping:
            batch = await asyncio.to_thread(next, batches, None)
            if batch is None:
                return
            for row in batch[:remaining]:
                if self.options.only_ids is not None and row.id not in self.options.only_ids:
                    continue
                for request in requests_for_row(row, self.job.variants):
                    key = done_key(request.row_id, request.hash)
                    if key in self.previous.done_ok:
                        self.previous_ok += 1
                        continue
                    if key in self.previous.done_error:
                        self.previous_error += 1
                        continue
                    if self.stopping:
                        return
                    await self.queues[request.provider].put(request)
            remaining -= len(batch)

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
                finally:
                    self.in_progress[provider] -= 1
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
