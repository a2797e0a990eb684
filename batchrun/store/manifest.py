"""DIR/batchrun.json: the job a directory belongs to and how many results it should hold."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from batchrun.store import layout

if TYPE_CHECKING:
    from batchrun.job import Job

FORMAT_VERSION = 1


def write_manifest(
    root: Path, job: Job, *, input_rows: int, limit: int | None = None, shard: str | None = None
) -> None:
    """Record the job snapshot (env var names only, never keys) atomically.

    `limit` is the run's `--limit`: the results expected are those of its first `limit` rows.
    """
    rows = input_rows if limit is None else min(input_rows, limit)
    data = {
        "format": FORMAT_VERSION,
        "name": job.name,
        "input_rows": input_rows,
        "limit": limit,
        "expected": rows * job.requests_per_row,
        "shard": shard,  # "I-of-N" for one shard of a run, whose input_rows are its own
        # Where the job's relative paths start, so readers can find the input again.
        "base_dir": str(job.base_dir),
        "job": job.to_dict(),
    }
    path = root / layout.MANIFEST
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2))
    os.replace(tmp, path)


def read_manifest(root: Path) -> dict[str, Any] | None:
    """The manifest, or None when the directory has none."""
    path = root / layout.MANIFEST
    if not path.is_file():
        return None
    data = orjson.loads(path.read_bytes())
    return data if isinstance(data, dict) else None
