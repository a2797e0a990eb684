"""The async core: input rows -> requests -> per-provider queues -> workers -> sink.

`arun` checks the job and its input, takes the output directory, sets up the sink, the lanes and
the progress display, runs the pipeline (`batchrun.engine.pipeline`) and sums it up.
"""

from __future__ import annotations

import asyncio
import errno
import time
from pathlib import Path

from batchrun.engine.budget import Budget
from batchrun.engine.lanes import open_lanes
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
from batchrun.errors import OutputDirError, StorageError
from batchrun.job import Job
from batchrun.parse import AnswerChecker
from batchrun.store import (
    OutputLock,
    compact,
    prepare_output,
    previous_results,
    write_manifest,
)

_OUT_OF_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


async def arun(job: Job, options: RunOptions | None = None) -> RunSummary:
    """Run (or resume) a job, or one shard of it, and return its summary."""
    options = options or RunOptions()
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
            write_manifest(root, job, input_rows=scan.selected, shard=str(shard))
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
        run = Run(job, options, sink, tally, budget, settings, previous, rows)
        async with open_lanes(job, checked.keys) as lanes:
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
