"""`batchrun estimate`: the offline estimate, or a sampled one, printed for people."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from batchrun.estimate.format import format_estimate, format_sampled
from batchrun.estimate.offline import estimate_offline
from batchrun.estimate.sampled import aestimate_sampled
from batchrun.job import Job


def estimate_command(job_path: str | Path, *, sample: int | None = None) -> int:
    """`batchrun estimate`: print the estimate and return the exit code."""
    job = Job.from_toml(job_path)
    if sample is None:
        print(format_estimate(estimate_offline(job)))
        return 0

    def announce(job: Job) -> None:
        # Said only once the output directory is ours: a live run there refuses us first.
        print(f"batchrun: sending {sample} rows x {job.requests_per_row} requests for real ...",
              file=sys.stderr)

    result = asyncio.run(aestimate_sampled(job, sample, handle_signals=True, on_start=announce))
    print(format_sampled(result))
    return result.exit_code
