"""One shard of a run: which shard this process is, its folder, and its share of the limits.

A shard is a run of its own under `DIR/shards/I-of-N/` (journal, parts, lock, manifest), so
shards run, crash and resume independently. The environment may say which shard this process is:
`BATCHRUN_SHARD=I/N`, a Slurm array task or a Kubernetes indexed Job.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from pathlib import Path

from batchrun.errors import UsageError
from batchrun.job import Job
from batchrun.sources import Shard
from batchrun.store import layout, shard_counts


def shard_root(root: Path, shard: Shard) -> Path:
    """Where a shard of the run in `root` writes."""
    return root / layout.SHARDS_DIR / str(shard)


def shard_from_environment(env: Mapping[str, str], shards: int | None = None) -> Shard | None:
    """The shard the environment gives this process, or None when it gives none.

    `shards` is the command line's `--shards N`, which a Kubernetes indexed Job needs: the pod
    knows its index (JOB_COMPLETION_INDEX) but not how many completions there are.
    """
    if env.get("BATCHRUN_SHARD"):
        return _agreeing(Shard.parse(env["BATCHRUN_SHARD"], "BATCHRUN_SHARD"), shards,
                         "BATCHRUN_SHARD")
    if env.get("SLURM_ARRAY_TASK_ID") and env.get("SLURM_ARRAY_TASK_COUNT"):
        task, count = _integer(env, "SLURM_ARRAY_TASK_ID"), _integer(env, "SLURM_ARRAY_TASK_COUNT")
        first = _integer(env, "SLURM_ARRAY_TASK_MIN") if env.get("SLURM_ARRAY_TASK_MIN") else 0
        last = _integer(env, "SLURM_ARRAY_TASK_MAX") if env.get("SLURM_ARRAY_TASK_MAX") else None
        step = _integer(env, "SLURM_ARRAY_TASK_STEP") if env.get("SLURM_ARRAY_TASK_STEP") else 1
        # A step (0-9:2) or a list (1,3,5) leaves gaps that would map tasks onto wrong shards.
        contiguous = step == 1 and (last is None or last - first + 1 == count)
        if not contiguous or not 0 <= task - first < count:
            raise UsageError(
                f"Slurm array task {task} (min {first}, count {count}) is not a shard "
                f"0..{count - 1}; use a contiguous array such as --array=0-3 (a step such as "
                "0-9:2 or a list such as 1,3,5 is not supported)"
            )
        return _agreeing(Shard(task - first, count), shards, "the Slurm array")
    if env.get("JOB_COMPLETION_INDEX"):
        if shards is None:
            raise UsageError(
                "JOB_COMPLETION_INDEX is set (a Kubernetes indexed Job) but not how many shards "
                "there are: add --shards N with N the Job's completions"
            )
        return Shard(_integer(env, "JOB_COMPLETION_INDEX"), shards)
    if shards is not None:
        raise UsageError(
            "--shards N needs JOB_COMPLETION_INDEX (a Kubernetes indexed Job) to say which shard "
            "this is; elsewhere use --shard I/N"
        )
    return None


def _agreeing(shard: Shard, shards: int | None, source: str) -> Shard:
    if shards is not None and shards != shard.count:
        raise UsageError(f"--shards {shards} disagrees with {source}, which makes this shard "
                         f"{shard.index}/{shard.count}; drop --shards")
    return shard


def _integer(env: Mapping[str, str], name: str) -> int:
    try:
        return int(env[name])
    except ValueError:
        raise UsageError(f"{name}={env[name]!r} is not a whole number") from None


def check_layout(root: Path, shard: Shard | None) -> None:
    """Refuse to mix shard counts, or sharded and unsharded runs, in one output directory."""
    counts = shard_counts(root)
    if shard is None:
        if counts:
            raise UsageError(
                f"{root}: holds a run split in {_spell(counts)} shards "
                f"({root / layout.SHARDS_DIR}); run it the same way (--processes N or "
                "--shard I/N), or choose another output directory"
            )
        return
    if counts - {shard.count}:
        raise UsageError(
            f"{root}: holds a run split in {_spell(counts)} shards, not {shard.count}; a row's "
            "shard depends on N, so one directory takes one N: use that N again, or choose "
            "another output directory"
        )
    if layout.list_parts(root) or any(p.stat().st_size for p in layout.list_journals(root)):
        raise UsageError(
            f"{root}: holds results of a run that was not sharded; run it without --shard, or "
            "choose another output directory"
        )


def _spell(counts: set[int]) -> str:
    return " and ".join(str(n) for n in sorted(counts))


def shard_job(job: Job, shard: Shard, *, divide_limits: bool = True) -> Job:
    """The job as one shard runs it: its own folder, and its share of the limits and budget.

    Stated rates are split evenly, as the rows are, unless one limiter shared by every shard
    holds them (`divide_limits=False`); a limit learned from the provider's headers needs no
    split, since a key's `remaining` already counts every shard's use. Concurrency and the
    budget are always split: each shard holds its own connections and counts its own spend.
    """
    output = dataclasses.replace(job.output, path=str(shard_root(job.output_path(), shard)))
    n = shard.count
    budget = dataclasses.replace(job.budget, max_usd=_share(job.budget.max_usd, n))
    rates = n > 1 and divide_limits
    providers = tuple(
        dataclasses.replace(
            spec,
            requests_per_minute=_share(spec.requests_per_minute, n) if rates
            else spec.requests_per_minute,
            tokens_per_minute=_share(spec.tokens_per_minute, n) if rates
            else spec.tokens_per_minute,
            input_tokens_per_minute=_share(spec.input_tokens_per_minute, n) if rates
            else spec.input_tokens_per_minute,
            output_tokens_per_minute=_share(spec.output_tokens_per_minute, n) if rates
            else spec.output_tokens_per_minute,
            max_concurrency=max(1, math.ceil(spec.max_concurrency / n)),
        )
        for spec in job.providers
    )
    return dataclasses.replace(job, output=output, budget=budget, providers=providers)


def _share(value: float | None, n: int) -> float | None:
    return None if value is None else value / n
