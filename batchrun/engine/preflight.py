"""What is checked before anything is sent: the input, the columns and the keys.

`batchrun validate` runs exactly these checks and stops; `batchrun run` runs them before it
touches its output directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from batchrun import sources
from batchrun.errors import UsageError
from batchrun.job import Job
from batchrun.store import RESULT_COLUMNS


@dataclass(frozen=True, slots=True)
class Checked:
    """What the checks found: the input's size and columns, and each provider's key."""

    scan: sources.InputScan
    keys: dict[str, str | None]


def preflight(
    job: Job,
    shard: sources.Shard | None = None,
    limit: int | None = None,
    known_input: tuple[int, int] | None = None,
) -> Checked:
    """Check the whole input, the column names and the key variables; send nothing.

    `known_input`: (rows, rows of this shard) from the parent process's scan, which checked
    the input for every shard at once.
    """
    if known_input is not None:
        rows, selected = known_input
        scan = sources.InputScan(sources.list_files(job.input, job.base_dir), rows,
                                 sources.input_columns(job.input, job.base_dir), selected)
    else:
        scan = sources.scan(job.input, job.base_dir, job.output.keep_columns, shard=shard,
                            limit=limit)
    check_columns(job)
    return Checked(scan, api_keys(job))


def validate(path: str | Path) -> str:
    """`batchrun validate`: the checks of a run, then a one-paragraph verdict."""
    job = Job.from_toml(path)
    scan = preflight(job).scan
    requests = scan.rows * job.requests_per_row
    return (
        f"{job.source}: ok — {scan.rows} rows in {len(scan.files)} file(s), "
        f"{len(job.variants)} variant(s), {requests} requests; columns: {', '.join(scan.columns)}"
    )


def check_columns(job: Job) -> None:
    """Refuse keep_columns / parse.fields that would overwrite result columns."""
    wanted = (*job.output.keep_columns, *job.parse.fields)
    clashes = [c for c in wanted if c in RESULT_COLUMNS]
    if clashes:
        raise UsageError(
            f"{job.source}: {', '.join(clashes)} would overwrite result columns of the same name; "
            "rename them in the input (or in [parse] fields) or drop them from keep_columns"
        )


def api_keys(job: Job) -> dict[str, str | None]:
    """The key of every provider in use, from its environment variable (exit 2 if unset)."""
    keys: dict[str, str | None] = {}
    missing: list[str] = []
    used = {v.provider for v in job.variants}
    for spec in job.providers:
        if spec.name not in used:
            continue
        value = os.environ.get(spec.api_key_env) if spec.api_key_env else None
        if spec.api_key_env and not value and spec.base_url != "mock":
            missing.append(f"${spec.api_key_env} (provider {spec.name!r})")
        keys[spec.name] = value or None
    if missing:
        names = " ".join(f"{m.split()[0][1:]}=..." for m in missing)
        raise UsageError(
            f"{job.source}: not set: {', '.join(missing)}; export {names} and run again"
        )
    return keys
