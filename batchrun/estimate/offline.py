"""`batchrun estimate`: tokens, cost and time of a job before spending, offline or from a sample.

Offline nothing is sent and no key is read. The input is streamed through the runner's own
message building (`sources.iter_rows` -> `requests.requests_for_row`), so templates, system
prompts, samples and seeds count as they will be sent, in memory bounded by one input batch.
Prompt tokens come from the heuristic of `batchrun.tokens` (no tokenizer: none ships with
batchrun, and one that downloads its vocabulary would not be offline). The bands:

    prompt     estimate x (1 - PROMPT_BAND) .. estimate x (1 + PROMPT_BAND)
    completion 0 .. max_tokens a request; a request without max_tokens is "unbounded"
    cost       min: prompt low x input price; max: prompt high x input + max_tokens x output
               (no cache discount; a variant without a price is "unpriced", never $0); a batch
               variant's times its price.batch, its online cost shown beside it
    batch      batch variants take no part in the time at the limits: they take the
               provider's batch window at most
    time       per provider, its variants sharing its ceilings: the largest of requests / rpm
               and tokens / tpm (input and output tpm alike); no ceiling at all: "unlimited"
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import pyarrow as pa

from batchrun import sources, store
from batchrun.estimate.model import (
    PROMPT_BAND,
    Estimate,
    ProviderTime,
    VariantEstimate,
)
from batchrun.job import Job, Price, ProviderSpec
from batchrun.job.specs import PER_MILLION

SAMPLE_SEED = 0
_CEILINGS = {"requests_per_minute": "req/min", "tokens_per_minute": "tok/min",
             "input_tokens_per_minute": "input tok/min",
             "output_tokens_per_minute": "output tok/min"}


def estimate_offline(job: Job | str | Path) -> Estimate:
    """Requests, prompt tokens, completion bound, cost band and time; sends nothing."""
    return scan_input(as_job(job), 0, SAMPLE_SEED)[0]


def scan_input(job: Job, sample: int, seed: int) -> tuple[Estimate, list[sources.InputRow]]:
    """One streamed pass: per-variant sums, and a reservoir of `sample` rows."""
    latest = latest_results(job.output_path())
    settled = set() if latest is None else {
        store.done_key(i, h) for i, h in store.iter_keys(latest, ("id", "request_hash"))}
    sums = {v.name: [0, 0, 0, 0] for v in job.variants}  # requests, settled, prompt, completion
    unbounded: set[str] = set()
    rng = random.Random(seed)
    reservoir: list[sources.InputRow] = []
    rows = 0
    families = {p.name: p.api for p in job.providers}
    for batch in sources.iter_rows(job.input, job.base_dir, job.output.keep_columns):
        for row in batch:
            if len(reservoir) < sample:
                reservoir.append(row)
            elif sample and (slot := rng.randrange(rows + 1)) < sample:
                reservoir[slot] = row
            rows += 1
            for request in sources.requests_for_row(row, job.variants, families):
                s = sums[request.variant]
                s[0] += 1
                s[1] += store.done_key(row.id, request.hash) in settled
                s[2] += request.prompt_tokens_est
                if request.max_tokens is None:
                    unbounded.add(request.variant)
                else:
                    s[3] += request.max_tokens
    if rows == 0:
        raise sources.no_rows(sources.list_files(job.input, job.base_dir), job.base_dir)
    variants = tuple(_variant(v.name, v.provider, v.model, v.price, sums[v.name],
                              v.name in unbounded, v.mode) for v in job.variants)
    online = [v for v in variants if v.mode == "online"]
    times = tuple(_time(p, [v for v in online if v.provider == p.name])
                  for p in job.providers if any(v.provider == p.name for v in online))
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
    name: str, provider: str, model: str, price: Price | None, sums: list[int], unbounded: bool,
    mode: str,
) -> VariantEstimate:
    requests, settled, prompt, completion = sums
    low = high = None
    if price is not None:
        low = prompt * (1 - PROMPT_BAND) * price.input / PER_MILLION
        if not unbounded:
            high = prompt * (1 + PROMPT_BAND) * price.input + completion * price.output
            high /= PER_MILLION
    completion_max = None if unbounded else completion
    if mode != "batch" or price is None:
        return VariantEstimate(name, provider, model, requests, settled, prompt,
                               completion_max, low, high, mode)
    factor = price.batch
    return VariantEstimate(
        name, provider, model, requests, settled, prompt, completion_max,
        None if low is None else low * factor, None if high is None else high * factor, mode,
        online_cost_min=low, online_cost_max=high)


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




def as_job(job: Job | str | Path) -> Job:
    return job if isinstance(job, Job) else Job.from_toml(job)


def latest_results(root: Path) -> pa.Table | None:
    table = store.read_run(root) if root.is_dir() else None
    return None if table is None else store.latest_per_key(table)


