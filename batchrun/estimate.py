"""`batchrun estimate`: tokens, cost and time of a job before spending, offline or from a sample.

Offline nothing is sent and no key is read. The input is streamed through the runner's own
message building (`sources.iter_rows` -> `requests.requests_for_row`), so templates, system
prompts, samples and seeds count as they will be sent, in memory bounded by one input batch.
Prompt tokens come from the heuristic of `batchrun.tokens` (no tokenizer: none ships with
batchrun, and one that downloads its vocabulary would not be offline). The bands:

    prompt     estimate x (1 - PROMPT_BAND) .. estimate x (1 + PROMPT_BAND)
    completion 0 .. max_tokens a request; a request without max_tokens is "unbounded"
    cost       min: prompt low x input price; max: prompt high x input + max_tokens x output
               (no cache discount; a variant without a price is "unpriced", never $0)
    time       per provider, its variants sharing its ceilings: the largest of requests / rpm
               and tokens / tpm (input and output tpm alike); no ceiling at all: "unlimited"

`--sample N` picks N input rows by seeded reservoir sampling over the streamed rows (the same
rows for every variant), runs them for real into the job's own output, so a later run skips
them, and extrapolates (`batchrun.extrapolate`). The tables are `batchrun.estimate_format`'s.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from batchrun import sources, store
from batchrun.errors import UsageError
from batchrun.estimate_format import format_estimate, format_sampled
from batchrun.extrapolate import Extrapolated, Interval, SampledVariant, extrapolate, t95
from batchrun.job import Job, Price, ProviderSpec
from batchrun.requests import requests_for_row
from batchrun.usage import PER_MILLION

__all__ = [
    "PROMPT_BAND",
    "SAMPLE_SEED",
    "TOKENIZER",
    "Estimate",
    "Extrapolated",
    "Interval",
    "ProviderTime",
    "SampledEstimate",
    "VariantEstimate",
    "aestimate_sampled",
    "estimate_command",
    "estimate_offline",
    "estimate_sampled",
    "format_estimate",
    "format_sampled",
    "t95",
]

PROMPT_BAND = 0.25
SAMPLE_SEED = 0
TOKENIZER = "heuristic: ~4 ASCII characters a token, CJK and other text 1 a character, +4 a message"
_CEILINGS = {"requests_per_minute": "req/min", "tokens_per_minute": "tok/min",
             "input_tokens_per_minute": "input tok/min",
             "output_tokens_per_minute": "output tok/min"}


@dataclass(frozen=True, slots=True)
class VariantEstimate:
    """Offline figures of one variant over every row and sample; costs None when unpriced."""

    name: str
    provider: str
    model: str
    requests: int
    settled: int  # already in the output (ok or error): a run skips them
    prompt_tokens: int  # heuristic estimate
    completion_max: int | None  # sum of max_tokens; None: some request has none (unbounded)
    cost_min: float | None
    cost_max: float | None  # None also when the completion is unbounded


@dataclass(frozen=True, slots=True)
class ProviderTime:
    """How long one provider's requests take at its configured ceilings."""

    name: str
    variants: tuple[str, ...]
    ceilings: tuple[tuple[str, float], ...]  # ("req/min", 600.0), ...; empty: unlimited
    seconds_min: float | None  # None: unlimited
    seconds_max: float | None  # None: unlimited, or unbounded completion under a token ceiling


@dataclass(frozen=True, slots=True)
class Estimate:
    """The offline estimate of a whole job; cost totals cover the priced variants only."""

    name: str
    rows: int
    variants: tuple[VariantEstimate, ...]
    providers: tuple[ProviderTime, ...]
    unpriced: tuple[str, ...]
    requests: int
    prompt_tokens: int
    completion_max: int | None
    cost_min: float | None  # None: no variant is priced
    cost_max: float | None  # None: none priced, or a priced one is unbounded
    tokenizer: str = TOKENIZER
    prompt_band: float = PROMPT_BAND



@dataclass(frozen=True, slots=True)
class SampledEstimate:
    """The offline estimate, and the extrapolation from the rows run for real."""

    offline: Estimate
    ids: tuple[str, ...]
    variants: tuple[Extrapolated, ...]
    total: Extrapolated
    sample_cost_usd: float | None  # what the sampled requests cost (paid once, kept)
    exit_code: int  # of the sampled run, as `batchrun run` would exit


def estimate_offline(job: Job | str | Path) -> Estimate:
    """Requests, prompt tokens, completion bound, cost band and time; sends nothing."""
    return _scan(_job(job), 0, SAMPLE_SEED)[0]


def estimate_sampled(job: Job | str | Path, n: int, *, seed: int = SAMPLE_SEED) -> SampledEstimate:
    """Run `n` random rows per variant for real and extrapolate; the blocking form."""
    return asyncio.run(aestimate_sampled(job, n, seed=seed))


async def aestimate_sampled(
    job: Job | str | Path, n: int, *, seed: int = SAMPLE_SEED, handle_signals: bool = False
) -> SampledEstimate:
    """Run `n` random rows per variant into the job's output, then extrapolate to every row."""
    from batchrun.runner import RunOptions, arun

    if n < 1:
        raise UsageError(f"--sample must be at least 1, not {n}")
    job = _job(job)
    offline, rows = await asyncio.to_thread(_scan, job, n, seed)
    options = RunOptions(only_ids=frozenset(r.id for r in rows), progress=False,
                         handle_signals=handle_signals)
    summary = await arun(job, options)
    planned = [request for row in rows for request in requests_for_row(row, job.variants)]
    results = await asyncio.to_thread(_results, job.output_path(), {r.hash for r in planned})
    cells = {v.name: SampledVariant(v.samples, v.price is not None) for v in job.variants}
    for request in planned:
        cells[request.variant].add(request, results.get((request.row_id, request.hash)))
    ids = [r.id for r in rows]
    variants = tuple(extrapolate(name, [c], ids, offline.rows) for name, c in cells.items())
    total = extrapolate("total", list(cells.values()), ids, offline.rows)
    priced = any(c.priced for c in cells.values())
    spent = math.fsum(r["cost_usd"] or 0.0 for r in results.values()) if priced else None
    return SampledEstimate(offline, tuple(ids), variants, total, spent, summary.exit_code)


def estimate_command(job_path: str | Path, *, sample: int | None = None) -> int:
    """`batchrun estimate`: print the estimate and return the exit code."""
    job = Job.from_toml(job_path)
    if sample is None:
        print(format_estimate(estimate_offline(job)))
        return 0
    per_row = sum(v.samples for v in job.variants)
    print(f"batchrun: sending {sample} rows x {per_row} requests for real ...", file=sys.stderr)
    result = asyncio.run(aestimate_sampled(job, sample, handle_signals=True))
    print(format_sampled(result))
    return result.exit_code


def _job(job: Job | str | Path) -> Job:
    return job if isinstance(job, Job) else Job.from_toml(job)


def _key(row_id: str, request_hash: str) -> int:
    # The id too: two rows with the same prompt send the same body yet are two results.
    digest = hashlib.blake2b(f"{row_id}\0{request_hash}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def _latest(root: Path) -> pa.Table | None:
    table = store.read_all(root) if root.is_dir() else None
    return None if table is None else store.latest_per_key(table)


def _scan(job: Job, sample: int, seed: int) -> tuple[Estimate, list[sources.InputRow]]:
    """One streamed pass: per-variant sums, and a reservoir of `sample` rows."""
    latest = _latest(job.output_path())
    settled = set() if latest is None else {
        _key(i, h) for i, h in store.iter_keys(latest, ("id", "request_hash"))}
    sums = {v.name: [0, 0, 0, 0] for v in job.variants}  # requests, settled, prompt, completion
    unbounded: set[str] = set()
    rng = random.Random(seed)
    reservoir: list[sources.InputRow] = []
    rows = 0
    for batch in sources.iter_rows(job.input, job.base_dir, job.output.keep_columns):
        for row in batch:
            if len(reservoir) < sample:
                reservoir.append(row)
            elif sample and (slot := rng.randrange(rows + 1)) < sample:
                reservoir[slot] = row
            rows += 1
            for request in requests_for_row(row, job.variants):
                s = sums[request.variant]
                s[0] += 1
                s[1] += _key(row.id, request.hash) in settled
                s[2] += request.prompt_tokens_est
                if request.max_tokens is None:
                    unbounded.add(request.variant)
                else:
                    s[3] += request.max_tokens
    variants = tuple(_variant(v.name, v.provider, v.model, v.price, sums[v.name],
                              v.name in unbounded) for v in job.variants)
    times = tuple(_time(p, [v for v in variants if v.provider == p.name])
                  for p in job.providers if any(v.provider == p.name for v in variants))
    priced = [v for v in variants if v.cost_min is not None]
    bounded = not unbounded
    return Estimate(
        job.name, rows, variants, times,
        unpriced=tuple(v.name for v in job.variants if v.price is None),
        requests=sum(v.requests for v in variants),
        prompt_tokens=sum(v.prompt_tokens for v in variants),
        completion_max=sum(v.completion_max or 0 for v in variants) if bounded else None,
        cost_min=math.fsum(v.cost_min or 0.0 for v in priced) if priced else None,
        cost_max=math.fsum(v.cost_max or 0.0 for v in priced)
        if priced and all(v.cost_max is not None for v in priced) else None,
    ), reservoir


def _variant(
    name: str, provider: str, model: str, price: Price | None, sums: list[int], unbounded: bool
) -> VariantEstimate:
    requests, settled, prompt, completion = sums
    low = high = None
    if price is not None:
        low = prompt * (1 - PROMPT_BAND) * price.input / PER_MILLION
        if not unbounded:
            high = prompt * (1 + PROMPT_BAND) * price.input + completion * price.output
            high /= PER_MILLION
    return VariantEstimate(name, provider, model, requests, settled, prompt,
                           None if unbounded else completion, low, high)


def _time(spec: ProviderSpec, variants: list[VariantEstimate]) -> ProviderTime:
    requests = sum(v.requests for v in variants)
    prompt = sum(v.prompt_tokens for v in variants)
    completion = None if any(v.completion_max is None for v in variants) else sum(
        v.completion_max or 0 for v in variants)
    low_in, high_in = prompt * (1 - PROMPT_BAND), prompt * (1 + PROMPT_BAND)
    needs: dict[str, tuple[float, float | None]] = {  # (low, high); high None: unbounded
        "requests_per_minute": (requests, requests),
        "tokens_per_minute": (low_in, None if completion is None else high_in + completion),
        "input_tokens_per_minute": (low_in, high_in),
        "output_tokens_per_minute": (0.0, completion),
    }
    ceilings = [(key, value) for key in _CEILINGS if (value := getattr(spec, key)) is not None]
    names = tuple(v.name for v in variants)
    if not ceilings:
        return ProviderTime(spec.name, names, (), None, None)
    highs = [needs[key][1] for key, _ in ceilings]
    return ProviderTime(
        spec.name, names, tuple((_CEILINGS[key], value) for key, value in ceilings),
        max(60.0 * needs[key][0] / value for key, value in ceilings),
        None if None in highs else max(60.0 * (h or 0.0) / v for h, (_, v) in zip(
            highs, ceilings, strict=True)),
    )


def _results(root: Path, hashes: set[str]) -> dict[tuple[str, str], dict[str, Any]]:
    latest = _latest(root)
    if latest is None or not hashes:
        return {}
    mask = pc.is_in(latest.column("request_hash"), value_set=pa.array(sorted(hashes)))
    wanted = latest.filter(mask).select(["id", "request_hash", "status", "prompt_tokens",
                                         "completion_tokens", "cost_usd"])
    return {(r["id"], r["request_hash"]): r for r in wanted.to_pylist()}


