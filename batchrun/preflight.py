"""Checks made before a run touches its output directory: columns and keys."""

from __future__ import annotations

import os

from batchrun import store
from batchrun.errors import UsageError
from batchrun.job import Job


def check_columns(job: Job) -> None:
    """Refuse keep_columns / parse.fields that would overwrite result columns."""
    wanted = (*job.output.keep_columns, *job.parse.fields)
    clashes = [c for c in wanted if c in store.RESULT_COLUMNS]
    if clashes:
        raise UsageError(
            f"{job.source}: {', '.join(clashes)} would overwrite result columns of the same name; "
            "rename them in the input (or in [parse] fields) or drop them from keep_columns"
        )


def api_keys(job: Job) -> dict[str, str | None]:
    """The key of every provider in use, from its environment variable (exit 2 if unset)."""
    keys: dict[str, str | None] = {}
    used = {v.provider for v in job.variants}
    for spec in job.providers:
        if spec.name not in used:
            continue
        if spec.api_key_env is None:
            keys[spec.name] = None
            continue
        value = os.environ.get(spec.api_key_env)
        if not value and spec.base_url != "mock":
            raise UsageError(
                f"{job.source}: provider {spec.name!r} reads its key from ${spec.api_key_env}, "
                f"which is not set; export {spec.api_key_env}=... and run again"
            )
        keys[spec.name] = value or None
    return keys
