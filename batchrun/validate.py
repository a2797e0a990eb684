"""`batchrun validate`: the job file, the input's columns and the keys, sending nothing."""

from __future__ import annotations

import os
from pathlib import Path

from batchrun import sources
from batchrun.errors import UsageError
from batchrun.job import Job
from batchrun.manifest import expected_requests


def validate(path: str | Path) -> str:
    """Check everything a run checks before sending; returns a one-paragraph verdict."""
    job = Job.from_toml(path)
    scan = sources.scan(job.input, job.base_dir, job.output.keep_columns)
    used = {v.provider for v in job.variants}
    missing = [
        f"${spec.api_key_env} (provider {spec.name!r})"
        for spec in job.providers
        if spec.name in used and spec.api_key_env and spec.base_url != "mock"
        and not os.environ.get(spec.api_key_env)
    ]
    if missing:
        raise UsageError(
            f"{job.source}: not set: {', '.join(missing)}; export the key variables and run again"
        )
    requests = expected_requests(job, scan.rows)
    return (
        f"{job.source}: ok — {scan.rows} rows in {len(scan.files)} file(s), "
        f"{len(job.variants)} variant(s), {requests} requests; columns: {', '.join(scan.columns)}"
    )
