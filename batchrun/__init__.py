"""batchrun: large batches of chat-completion calls, with limits, retries and checkpoints."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batchrun import errors
from batchrun.job import Job

if TYPE_CHECKING:
    import pandas as pd

    from batchrun.engine import RunOptions, RunSummary

__all__ = ["Job", "RunSummary", "arun", "errors", "read", "run"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # `RunSummary` is imported on first use: the write side (aiohttp, pyarrow) stays unloaded
    # for a script that only reads, validates or estimates.
    if name == "RunSummary":
        from batchrun.engine import RunSummary

        return RunSummary
    raise AttributeError(f"module 'batchrun' has no attribute {name!r}")


def _load(job_or_path: Job | str | Path, overrides: dict[str, Any]) -> tuple[Job, RunOptions]:
    from batchrun.engine import RunOptions

    job = job_or_path if isinstance(job_or_path, Job) else Job.from_toml(job_or_path)
    input_path = overrides.pop("input", None)
    output_path = overrides.pop("output", None)
    job = job.with_overrides(input_path=input_path, output_path=output_path)
    overrides.setdefault("progress", False)
    if isinstance(overrides.get("shard"), str):  # shard="I/N", as on the command line
        from batchrun.sources import Shard

        overrides["shard"] = Shard.parse(overrides["shard"], "shard")
    return job, RunOptions(**overrides)


async def arun(job_or_path: Job | str | Path, **overrides: Any) -> RunSummary:
    """Run (or resume) a job; overrides: input, output, limit, fresh, retry_errors, progress,
    shard ("I/N": one shard of the rows, in DIR/shards/I-of-N)."""
    from batchrun.engine import arun as _arun

    job, options = _load(job_or_path, overrides)
    return await _arun(job, options)


def run(job_or_path: Job | str | Path, **overrides: Any) -> RunSummary:
    """Run (or resume) a job and return its summary; the blocking form of `arun`."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(arun(job_or_path, **overrides))
    # Called from inside an event loop (a notebook cell): run on a loop of its own.
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, arun(job_or_path, **overrides)).result()


def read(root: str | Path) -> pd.DataFrame:
    """The results of a run (also while it runs) as a pandas DataFrame, one row per result."""
    from batchrun.results import read as _read

    return _read(root)
