"""`batchrun cancel DIR`: cancel a run's open provider batches and collect what they finished.

The job comes from the run's own snapshot (DIR/batchrun.json), so the command needs only the
directory (and the providers' key variables). Requests a cancelled batch never answered stay
pending, neither resubmitted nor recorded: the same `batchrun run` sends them again later.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from batchrun.engine.batch.driver import BatchDriver
from batchrun.engine.budget import Budget
from batchrun.engine.lanes import open_lanes
from batchrun.engine.options import RunOptions
from batchrun.engine.preflight import api_keys
from batchrun.engine.sink import Sink
from batchrun.engine.tally import Tally
from batchrun.errors import UsageError
from batchrun.job import Job
from batchrun.parse import AnswerChecker
from batchrun.store import MANIFEST, OutputLock, previous_results, read_manifest, shard_folders
from batchrun.store.batches import read_batches


@dataclass(frozen=True, slots=True)
class Cancelled:
    """What a cancel did, over every shard of the run."""

    cancelled: int  # batches asked to cancel (or found ended meanwhile)
    ok: int  # answers they had finished, now in the results
    error: int


def cancel_batches(directory: str | Path) -> Cancelled:
    """Cancel the open batches of the run in `directory` (every shard of it) and collect them."""
    root = Path(directory)
    if not root.is_dir():
        raise UsageError(f"{root}: no such output directory")
    folders = [folder for _, folder in shard_folders(root)] or [root]
    total = Cancelled(0, 0, 0)
    for folder in folders:
        done = asyncio.run(_cancel_one(folder))
        total = Cancelled(total.cancelled + done.cancelled, total.ok + done.ok,
                          total.error + done.error)
    return total


async def _cancel_one(root: Path) -> Cancelled:
    manifest = read_manifest(root)
    if manifest is None:
        raise UsageError(f"{root}: not a batchrun output directory (no {MANIFEST})")
    _, states = read_batches(root)
    open_now = [s for s in states.values() if s.live and s.state not in
                ("planned", "upload", "uploaded")]
    if not open_now:
        return Cancelled(0, 0, 0)
    job = Job.from_dict(manifest["job"], base_dir=Path(manifest.get("base_dir", root)),
                        source=str(root / MANIFEST))
    keys = api_keys(job)
    lock = OutputLock(root)
    lock.acquire()  # a live run's batches are its own: refused, naming its pid
    try:
        sink = Sink(root, flush_rows=job.output.flush_rows,
                    flush_seconds=job.output.flush_seconds)
        await asyncio.to_thread(sink.open)
        tally = Tally()
        try:
            previous = await asyncio.to_thread(previous_results, root, False)
            checker = AnswerChecker(job.parse.schema, job.parse.fields) if job.parse.json else None
            driver = BatchDriver(job, RunOptions(), sink, tally, Budget(None, 0.0), previous,
                                 0, checker, cancel=True)
            async with open_lanes(job, keys) as lanes:
                await driver.execute(lanes, keys)
        finally:
            await sink.close()
    finally:
        lock.release()
    return Cancelled(len(open_now), tally.ok, tally.error)
