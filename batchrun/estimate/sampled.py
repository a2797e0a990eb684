"""`batchrun estimate --sample N`: N rows run for real into the job's output, then extrapolated.

The rows are chosen by seeded reservoir sampling over the streamed rows (the same rows for every
variant); their answers stay in the output, so a later run skips them and nothing is paid twice.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from batchrun.engine import RunOptions, arun
from batchrun.errors import UsageError
from batchrun.estimate.extrapolate import SampledVariant, extrapolate
from batchrun.estimate.model import SampledEstimate
from batchrun.estimate.offline import SAMPLE_SEED, as_job, latest_results, scan_input
from batchrun.job import Job
from batchrun.sources import requests_for_row


def estimate_sampled(job: Job | str | Path, n: int, *, seed: int = SAMPLE_SEED) -> SampledEstimate:
    """Run `n` random rows per variant for real and extrapolate; the blocking form."""
    return asyncio.run(aestimate_sampled(job, n, seed=seed))


async def aestimate_sampled(
    job: Job | str | Path, n: int, *, seed: int = SAMPLE_SEED, handle_signals: bool = False,
    on_start: Callable[[Job], None] | None = None,
) -> SampledEstimate:
    """Run `n` random rows per variant into the job's output, then extrapolate to every row.

    `on_start(job)` is called once the output directory is locked, just before sending.
    """
    if n < 1:
        raise UsageError(f"--sample must be at least 1, not {n}")
    job = as_job(job)
    offline, rows = await asyncio.to_thread(scan_input, job, n, seed)
    options = RunOptions(only_ids=frozenset(r.id for r in rows), progress=False,
                         handle_signals=handle_signals,
                         on_start=None if on_start is None else lambda: on_start(job))
    # A provider batch may take a day: batch variants' samples are sent online, the same
    # requests (a batch run later skips them), and their cost is scaled to the batch price.
    summary = await arun(_all_online(job), options)
    families = {p.name: p.api for p in job.providers}
    planned = [request for row in rows for request in requests_for_row(row, job.variants, families)]
    results = await asyncio.to_thread(_results, job.output_path(), {r.hash for r in planned})
    cells = {v.name: SampledVariant(v.samples, v.price is not None) for v in job.variants}
    factors = {v.name: v.price.batch for v in job.variants if v.batch and v.price is not None}
    for request in planned:
        record = results.get((request.row_id, request.hash))
        if record is not None and request.variant in factors and record.get("mode") != "batch":
            record = {**record, "cost_usd": _scaled(record["cost_usd"], factors[request.variant])}
        cells[request.variant].add(request, record)
    ids = [r.id for r in rows]
    variants = tuple(extrapolate(name, [c], ids, offline.rows) for name, c in cells.items())
    total = extrapolate("total", list(cells.values()), ids, offline.rows)
    priced = any(c.priced for c in cells.values())
    spent = math.fsum(r["cost_usd"] or 0.0 for r in results.values()) if priced else None
    return SampledEstimate(offline, tuple(ids), variants, total, spent, summary.exit_code)


def _all_online(job: Job) -> Job:
    variants = tuple(dataclasses.replace(v, mode="online") for v in job.variants)
    return dataclasses.replace(job, variants=variants)


def _scaled(cost: float | None, factor: float) -> float | None:
    return None if cost is None else cost * factor


def _results(root: Path, hashes: set[str]) -> dict[tuple[str, str], dict[str, Any]]:
    latest = latest_results(root)
    if latest is None or not hashes:
        return {}
    mask = pc.is_in(latest.column("request_hash"), value_set=pa.array(sorted(hashes)))
    columns = ["id", "request_hash", "status", "prompt_tokens", "completion_tokens", "cost_usd"]
    # Results of versions before batch mode have no mode column: they were all online.
    wanted = latest.filter(mask).select([*columns, *(["mode"] if "mode" in latest.column_names
                                                     else [])])
    return {(r["id"], r["request_hash"]): r for r in wanted.to_pylist()}


