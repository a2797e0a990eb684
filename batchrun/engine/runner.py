"""The async core: input rows -> requests -> per-provider queues -> workers -> sink.

`arun` checks the job and its input, takes the output directory, sets up the sink, the lanes and
the progress display, runs the pipeline (`batchrun.engine.pipeline`) and sums it up.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import logging
import shutil
import signal
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from batchrun.engine.batch import BatchDriver
from batchrun.engine.budget import Budget
from batchrun.engine.lanes import Lane, open_lanes
from batchrun.engine.options import RunOptions
from batchrun.engine.pipeline import Run
from batchrun.engine.preflight import Checked, preflight
from batchrun.engine.progress import Progress
from batchrun.engine.retry import retry_policy
from batchrun.engine.shards import check_layout, shard_job
from batchrun.engine.sink import Sink
from batchrun.engine.summary import RunSummary
from batchrun.engine.tally import Tally
from batchrun.engine.worker import Settings
from batchrun.errors import JobError, OutputDirError, StorageError, UsageError
from batchrun.job import Job
from batchrun.parse import AnswerChecker
from batchrun.store import (
    OutputLock,
    Previous,
    compact,
    prepare_output,
    previous_results,
    write_manifest,
)
from batchrun.store.batches import batches_folder, read_batches

_OUT_OF_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
log = logging.getLogger("batchrun")


async def arun(job: Job, options: RunOptions | None = None) -> RunSummary:
    """Run (or resume) a job, or one shard of it, and return its summary."""
    options = options or RunOptions()
    _check_windows(job)
    if options.detach:
        _check_detachable(job)
    shard = options.shard
    if shard is not None or not options.fresh:  # --fresh of a whole run clears its shards too
        check_layout(job.output_path(), shard)
    if shard is not None:
        job = shard_job(job, shard, divide_limits=options.shared_limits is None)
    checked = await asyncio.to_thread(preflight, job, shard, options.limit, options.known_input)
    root = job.output_path()
    if root.exists() and not root.is_dir():
        raise OutputDirError(f"{root}: exists and is not a directory; choose another output path")
    root.mkdir(parents=True, exist_ok=True)
    lock = OutputLock(root)
    lock.acquire()  # before --fresh clears anything: a live run's results are never touched
    try:
        if options.fresh:
            _forget_batches(root)
        prepare_output(root, fresh=options.fresh)
        if options.on_start is not None:
            options.on_start()
        summary = await _run_locked(job, options, checked, root)
        if summary.stopped is None:
            # A finished run leaves a few large parts, not one per checkpoint.
            await asyncio.to_thread(compact, root)
        return summary
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
    shard = options.shard
    sink = Sink(root, flush_rows=job.output.flush_rows, flush_seconds=job.output.flush_seconds)
    await asyncio.to_thread(sink.open)
    try:
        previous = await asyncio.to_thread(previous_results, root, options.retry_errors)
        if shard is None:
            write_manifest(root, job, input_rows=scan.rows, limit=options.limit)
        else:  # a shard expects its own rows: --limit is already applied to them
            write_manifest(root, job, input_rows=scan.selected, limit=options.limit,
                           shard=str(shard))
        counted_rows = scan.selected
        if options.only_ids is not None:
            counted_rows = min(counted_rows, len(options.only_ids))
        total = counted_rows * job.requests_per_row
        tally = Tally()
        budget = Budget(job.budget.max_usd, previous.spent)
        settings = Settings(
            retry=retry_policy(job.retry),
            checker=AnswerChecker(job.parse.schema, job.parse.fields) if job.parse.json else None,
            backoff_initial_s=job.retry.backoff_initial_s,
        )
        if any(v.batch for v in job.variants):
            return await _run_with_batches(
                job, options, checked, sink, tally, budget, settings, previous, rows, total,
                started)
        run = Run(job, options, sink, tally, budget, settings, previous, rows)
        async with open_lanes(job, checked.keys, options.shared_limits) as lanes:
            run.lanes = lanes
            progress = Progress(
                total=total, already_done=run.settled_before, tally=tally,
                enabled=options.progress, waiting=run.describe_waiting,
                events=options.progress_events,
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
        refused=tuple(run.guard.stops.values()), refused_requests=run.guard.refused,
    )


async def _run_with_batches(
    job: Job, options: RunOptions, checked: Checked, sink: Sink, tally: Tally, budget: Budget,
    settings: Settings, previous: Previous, rows: int, total: int, started: float,
) -> RunSummary:
    """Online variants through the pipeline as ever, batch variants through their batches."""
    online = tuple(v for v in job.variants if not v.batch)
    online_job = dataclasses.replace(job, variants=online)
    inner = dataclasses.replace(options, handle_signals=False)
    run = Run(online_job, inner, sink, tally, budget, settings, previous, rows) if online else None
    driver = BatchDriver(job, options, sink, tally, budget, previous, rows, settings.checker)
    fallbacks: list[Run] = []

    def interrupt() -> None:
        for each in (run, *fallbacks):
            if each is not None:
                each.interrupt()
        driver.interrupt()

    def settled() -> int:
        before = run.settled_before() if run is not None else 0
        return before + driver.previous_ok + driver.previous_error

    async with open_lanes(job, checked.keys) as lanes:
        driver.run_online = _online_pass(job, inner, sink, tally, budget, settings, rows, lanes,
                                         fallbacks)
        progress = Progress(
            total=total, already_done=settled, tally=tally,
            enabled=options.progress and run is not None, events=options.progress_events,
            waiting=run.describe_waiting if run is not None else (lambda: ""),
        )
        restore = _on_signals(interrupt) if options.handle_signals else (lambda: None)
        try:
            if run is not None:
                used = {v.provider for v in online}
                run.lanes = {name: lane for name, lane in lanes.items() if name in used}
                await _together(run.execute(progress), driver.execute(lanes, checked.keys))
            else:
                await driver.execute(lanes, checked.keys)
        finally:
            restore()
            progress.close()
    interrupted = driver.interrupted or (run is not None and run.interrupted)
    stopped = "interrupted" if interrupted else ("budget" if budget.exhausted else None)
    previous_ok = driver.previous_ok + (run.previous_ok if run is not None else 0)
    previous_error = driver.previous_error + (run.previous_error if run is not None else 0)
    ok, error = previous_ok + tally.ok, previous_error + tally.error
    stops = (*(run.guard.stops.values() if run is not None else ()), *driver.stops)
    pending = max(0, total - ok - error)
    refused = run.guard.refused if run is not None else 0
    return RunSummary(
        name=job.name, output=sink.root, total=total, ok=ok, error=error,
        skipped=previous_ok + previous_error, pending=pending,
        tokens=tally.tokens(), cost_usd=tally.cost_usd if tally.priced_rows else None,
        elapsed_s=time.monotonic() - started, stopped=stopped, refused=tuple(stops),
        refused_requests=refused,
        # Rows in batches still at the provider (--detach, ...) are pending for a reason.
        unsettled=max(0, pending - driver.left_in_batches - refused),
    )


async def _together(*steps: Coroutine[Any, Any, None]) -> None:
    """Run the steps side by side; the first to fail cancels the others, then is raised."""
    tasks = [asyncio.ensure_future(step) for step in steps]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:  # also on our own cancellation: nothing is left running past the lanes
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in tasks:
        error = None if task.cancelled() else task.exception()
        if error is not None:
            raise error


def _online_pass(
    job: Job, options: RunOptions, sink: Sink, tally: Tally, budget: Budget, settings: Settings,
    rows: int, lanes: dict[str, Lane], fallbacks: list[Run],
) -> Callable[[frozenset[str]], Any]:
    """What `[batch] unfinished = "online"` calls: those rows' batch variants, sent online."""
    variants = tuple(dataclasses.replace(v, mode="online") for v in job.variants if v.batch)
    fallback_job = dataclasses.replace(job, variants=variants)
    used = {v.provider for v in variants}

    async def send(row_ids: frozenset[str]) -> None:
        previous = await asyncio.to_thread(previous_results, sink.root, options.retry_errors)
        only = dataclasses.replace(options, only_ids=row_ids, progress=False)
        run = Run(fallback_job, only, sink, tally, budget, settings, previous, rows)
        run.lanes = {name: lane for name, lane in lanes.items() if name in used}
        fallbacks.append(run)
        await run.execute(Progress(total=0, already_done=lambda: 0, tally=tally, enabled=False))

    return send


def _on_signals(handler: Callable[[], None]) -> Callable[[], None]:
    """SIGINT and SIGTERM call `handler` until the returned function is called."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, handler)

    def restore() -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)

    return restore


# OpenAI's own Batch API takes this completion_window only; any other is refused at each
# create. Compatible providers may take longer ones (Groq: up to "7d"), so only OpenAI's host
# is held to it.
OPENAI_WINDOW = "24h"
OPENAI_HOST = "api.openai.com"


def _check_windows(job: Job) -> None:
    """[batch] window against the batch variants' APIs, before anything is sent."""
    window = job.batch.window
    for variant in job.variants:
        spec = job.provider(variant.provider)
        official = urlsplit(spec.base_url).hostname == OPENAI_HOST
        if variant.batch and spec.api in ("openai", "responses") and official \
                and window != OPENAI_WINDOW:
            raise JobError(
                f'{job.source}: [batch]: "window" = "{window}" is not taken by the Batch API '
                f'of {OPENAI_HOST} (variant "{variant.name}"): set window = "{OPENAI_WINDOW}"')


def _check_detachable(job: Job) -> None:
    """--detach leaves batches at the provider: the in-process mock would end with this run."""
    for variant in job.variants:
        if variant.batch and job.provider(variant.provider).base_url == "mock":
            raise UsageError(
                f'{job.source}: --detach with base_url = "mock": that mock lives inside this '
                "process, so its batches would end with it; start `batchrun mock` in another "
                f'terminal and set base_url = "http://127.0.0.1:8765/v1" for provider '
                f'"{variant.provider}"')


def _forget_batches(root: Path) -> None:
    """--fresh: the batch journal goes too, after a word about batches still at the provider."""
    folder = batches_folder(root)
    if not folder.is_dir():
        return
    _, states = read_batches(root)
    running = [s for s in states.values() if s.open_remote]
    if running:
        log.warning("--fresh: %d batch%s of the earlier run may still be running at the provider "
                    "and are forgotten (`batchrun cancel` before --fresh cancels them)",
                    len(running), "" if len(running) == 1 else "es")
    shutil.rmtree(folder, ignore_errors=True)
