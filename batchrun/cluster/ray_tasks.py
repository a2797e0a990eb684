"""`batchrun run --ray [ADDRESS]`: the shards as Ray tasks, each provider's limits shared by all.

`run_on_ray` connects to a Ray cluster (or starts a local one), creates one lease actor per
provider with stated limits (`batchrun.cluster.leases`) and runs N shard tasks. Each task is an
ordinary shard run (`arun` with `RunOptions.shard`) in its own folder `DIR/shards/I-of-N/`, whose
limiters take their leases from the actors, so the cluster as a whole stays under each stated
limit. A task whose worker dies is retried by Ray and resumes its shard from its journal (the
dead worker's lock on the folder went with its process).

Ray is imported here only, when `--ray` is used: `import batchrun` never loads it. The input
is checked once, here; the workers must see the job's input and output paths (one machine, or
a shared filesystem) and have batchrun installed. The providers' key variables go with the
tasks.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import logging
import time
from collections.abc import Mapping
from typing import Any

from batchrun import sources
from batchrun.cluster.combine import combine
from batchrun.cluster.leases import LeaseGranter, ray_granter
from batchrun.engine import RunOptions, RunSummary, arun
from batchrun.engine.preflight import api_keys, check_columns
from batchrun.engine.shards import check_layout
from batchrun.errors import UsageError
from batchrun.job import Job
from batchrun.limits.shared import LeaseBlocks, StatedLimits
from batchrun.sources import Shard
from batchrun.store import clear_run

log = logging.getLogger("batchrun")

TASK_RETRIES = 3  # a shard whose worker dies runs again (resuming) this many times
LOG_EVERY_S = 10.0
_STOP_WAIT_S = 10.0  # after Ctrl-C, how long shards get to save what they have


def run_on_ray(
    job: Job, options: RunOptions, shards: int | None, address: str | None
) -> RunSummary:
    """Run `job` as `shards` Ray tasks (None: one per CPU of the cluster) and sum them up.

    `address` is a Ray cluster's ("ray://host:10001", "host:6379", "auto"); None: Ray's own
    default (RAY_ADDRESS, else a new local cluster). A Ray session already open in this process
    is used as it is and left open.
    """
    ray = _import_ray()
    ours = not ray.is_initialized()
    if ours:
        ray.init(address=address, logging_level=logging.WARNING)
    try:
        count = shards if shards is not None else max(1, int(ray.cluster_resources()["CPU"]))
        if count < 1:
            raise UsageError(f"--shards {count}: want at least 1")
        return _run(ray, job, options, count)
    finally:
        if ours:
            ray.shutdown()


def _run(ray: Any, job: Job, options: RunOptions, count: int) -> RunSummary:
    root = job.output_path()
    if not options.fresh:  # --fresh clears whatever N the directory held
        check_layout(root, Shard(0, count))
    # The input and the keys are checked here, once: a bad one is one message, not N, and
    # the shards start without reading the input again.
    scan = sources.scan(job.input, job.base_dir, job.output.keep_columns, limit=options.limit,
                        count_shards=count)
    check_columns(job)
    keys = api_keys(job)
    if options.fresh:
        clear_run(root)  # here, once: a retried task must not clear what its first try saved
    started = time.monotonic()
    actors = _lease_actors(ray, job)
    # The driver's callback cannot run in a worker; progress is the driver's to show.
    shard_options = dataclasses.replace(options, fresh=False, progress=False,
                                        handle_signals=False, progress_events=False,
                                        on_start=None)
    # A remote cluster's workers have not got this shell's key variables: they go with the
    # tasks (a local cluster's workers have them anyway).
    env = {spec.api_key_env: keys[spec.name] for spec in job.providers
           if spec.api_key_env and keys.get(spec.name)}
    task = ray.remote(max_retries=TASK_RETRIES)(_run_shard).options(
        runtime_env={"env_vars": env} if env else None)
    pending = {}
    for i in range(count):
        shard = Shard(i, count)
        known = dataclasses.replace(shard_options, known_input=(scan.rows, scan.per_shard[i]))
        pending[task.remote(job, known, shard, actors)] = shard
    try:
        summaries = _gather(ray, pending, actors, options.progress)
    finally:
        for _, actor in actors.values():
            ray.kill(actor)
    summary = combine(summaries, output=root)
    return dataclasses.replace(summary, elapsed_s=time.monotonic() - started)


def _run_shard(
    job: Job, options: RunOptions, shard: Shard, leases: Mapping[str, tuple[StatedLimits, Any]]
) -> RunSummary:
    """The Ray task: one shard, its limiters leasing from the providers' actors."""
    shared = {name: LeaseBlocks(limits, ray_granter(actor))
              for name, (limits, actor) in leases.items()}
    return asyncio.run(arun(job, dataclasses.replace(options, shard=shard, shared_limits=shared)))


def _lease_actors(ray: Any, job: Job) -> dict[str, tuple[StatedLimits, Any]]:
    """One lease actor per provider in use that states a limit."""
    granter = ray.remote(LeaseGranter).options(
        num_cpus=0,  # it waits on calls: the shards get every CPU
        max_restarts=-1, max_task_retries=-1,  # a new one starts its schedule afresh from now
    )
    actors = {}
    for name in dict.fromkeys(variant.provider for variant in job.variants):
        spec = job.provider(name)
        limits = StatedLimits(spec.requests_per_minute, spec.tokens_per_minute,
                              spec.input_tokens_per_minute, spec.output_tokens_per_minute)
        if limits.limited:
            actors[name] = (limits, granter.remote(limits))
    return actors


def _gather(
    ray: Any, pending: dict[Any, Shard], actors: Mapping[str, tuple[StatedLimits, Any]],
    progress: bool,
) -> list[RunSummary]:
    """Wait for every shard, saying which finished and, now and then, what was leased."""
    summaries: list[RunSummary] = []
    count = len(pending)
    last_log = time.monotonic()
    leased = {name: 0.0 for name in actors}
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            for ref in done:
                shard = pending.pop(ref)
                summary = _result(ray, ref, shard)
                summaries.append(summary)
                if progress:
                    log.info("shard %s done: %d ok, %d error, %d pending (%d of %d shards)",
                             shard, summary.ok, summary.error, summary.pending,
                             len(summaries), count)
            if progress and pending and time.monotonic() - last_log >= LOG_EVERY_S:
                now = time.monotonic()
                log.info("%d of %d shards done; %s", len(summaries), count,
                         _leased(ray, actors, leased, now - last_log))
                last_log = now
    except BaseException:
        # Ctrl-C, or a shard that failed: the others stop too. A cancelled shard is
        # interrupted where it is, its journal safe: the same command resumes it.
        for ref in pending:
            ray.cancel(ref)
        ray.wait(list(pending), num_returns=len(pending), timeout=_STOP_WAIT_S)
        raise
    return summaries


def _result(ray: Any, ref: Any, shard: Shard) -> RunSummary:
    exceptions = importlib.import_module("ray.exceptions")
    try:
        summary: RunSummary = ray.get(ref)
    except exceptions.RayTaskError as error:
        # The shard's own error (a bad job, a full disk): the same words and exit code as
        # a run in one process.
        if isinstance(error.cause, Exception):
            raise error.cause from None
        raise
    except exceptions.WorkerCrashedError:
        raise RuntimeError(
            f"shard {shard}: its Ray worker died {TASK_RETRIES + 1} times; what it saved is "
            "safe: run the same command again to resume") from None
    return summary


def _leased(
    ray: Any, actors: Mapping[str, tuple[StatedLimits, Any]], before: dict[str, float],
    elapsed: float,
) -> str:
    """Requests leased per provider, and how fast lately: the cluster's pace."""
    counts = ray.get([actor.granted.remote() for _, actor in actors.values()])
    parts = []
    for name, (requests, _) in zip(actors, counts, strict=True):
        pace = (requests - before[name]) / elapsed * 60
        parts.append(f"{name}: {requests:,.0f} requests leased, {pace:,.0f}/min lately")
        before[name] = requests
    return "; ".join(parts) or "no shared limits"


def _import_ray() -> Any:
    # By name, and typed Any: the module is optional, and its decorators' types say little
    # about the remote calls made here.
    try:
        return importlib.import_module("ray")
    except ImportError:
        raise UsageError(
            "--ray needs Ray, which is not installed: pip install 'batchrun[ray]'") from None
