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
them, and extrapolates. Rows are the sampling unit (a row's samples share one prompt): a total
is rows x mean(per-row sum) +- t(0.975, n-1) x s / sqrt(n), finite-population corrected, so a
sample of every row gives the exact figure.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import random
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from batchrun import sources, store
from batchrun.errors import UsageError
from batchrun.job import Job, Price, ProviderSpec
from batchrun.requests import Request, requests_for_row
from batchrun.usage import PER_MILLION

PROMPT_BAND = 0.25
SAMPLE_SEED = 0
TOKENIZER = "heuristic: ~4 ASCII characters a token, CJK and other text 1 a character, +4 a message"
# Two-sided 95% Student t quantiles for 1..30 degrees of freedom; a series beyond.
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
        2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
        2.060, 2.056, 2.052, 2.048, 2.045, 2.042)
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
class Interval:
    """An extrapolated total and its 95% interval; low/high None when one row cannot give one."""

    value: float
    low: float | None
    high: float | None


@dataclass(frozen=True, slots=True)
class Extrapolated:
    """What the sampled requests of one variant (or of all, "total") say about every row."""

    name: str
    answered: int
    errors: int
    prompt_tokens: Interval | None  # None: no row answered in full
    completion_tokens: Interval | None
    cost_usd: Interval | None  # None also when unpriced
    prompt_ratio: float | None  # reported / estimated prompt tokens, over the sampled answers


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
    cells = {v.name: _Cells(v.samples, v.price is not None) for v in job.variants}
    for request in planned:
        cells[request.variant].add(request, results.get((request.row_id, request.hash)))
    ids = [r.id for r in rows]
    variants = tuple(_extrapolate(name, [c], ids, offline.rows) for name, c in cells.items())
    total = _extrapolate("total", list(cells.values()), ids, offline.rows)
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


@dataclass(slots=True)
class _Cells:
    """Per-row sums of the sampled results of one variant (rows are the sampling unit)."""

    samples: int
    priced: bool
    rows: dict[str, list[float]] = field(default_factory=dict)  # id -> [prompt, compl, cost, n]
    estimated: int = 0
    reported: int = 0
    errors: int = 0

    def add(self, request: Request, record: dict[str, Any] | None) -> None:
        sums = self.rows.setdefault(request.row_id, [0.0, 0.0, 0.0, 0])
        if record is None:  # not sent: the budget or an interrupt stopped the sample
            return
        sums[0] += record["prompt_tokens"] or 0
        sums[1] += record["completion_tokens"] or 0
        sums[2] += record["cost_usd"] or 0.0
        sums[3] += 1
        if record["status"] != "ok":
            self.errors += 1
        elif record["prompt_tokens"] is not None:
            self.estimated += request.prompt_tokens_est
            self.reported += record["prompt_tokens"]

    def complete(self, row_id: str) -> bool:
        return row_id in self.rows and self.rows[row_id][3] == self.samples


def _extrapolate(name: str, parts: list[_Cells], ids: list[str], population: int) -> Extrapolated:
    """One variant's figures (one part), or the total's (every part), over the rows every part
    answered in full."""
    full = [i for i in ids if all(part.complete(i) for part in parts)]

    def total(column: int, only_priced: bool = False) -> Interval | None:
        chosen = [p for p in parts if p.priced or not only_priced]
        if not chosen or not full:
            return None
        return _total([sum(p.rows[i][column] for p in chosen) for i in full], population)

    estimated = sum(p.estimated for p in parts)
    return Extrapolated(
        name, answered=int(sum(v[3] for p in parts for v in p.rows.values())),
        errors=sum(p.errors for p in parts), prompt_tokens=total(0), completion_tokens=total(1),
        cost_usd=total(2, only_priced=True),
        prompt_ratio=sum(p.reported for p in parts) / estimated if estimated else None,
    )


def _total(per_row: list[float], population: int) -> Interval:
    """population x mean(per_row), with its 95% interval (finite-population corrected)."""
    n = len(per_row)
    total = population * math.fsum(per_row) / n
    if n >= population:
        return Interval(total, total, total)
    if n < 2:
        return Interval(total, None, None)
    fpc = math.sqrt((population - n) / (population - 1))
    half = t95(n - 1) * statistics.stdev(per_row) / math.sqrt(n) * population * fpc
    return Interval(total, max(0.0, total - half), total + half)


def t95(df: int) -> float:
    """The 0.975 quantile of Student's t with `df` degrees of freedom."""
    if df <= len(_T95):
        return _T95[df - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def format_estimate(est: Estimate) -> str:
    """The offline estimate as a table for people."""
    cost = _range(est.cost_min, est.cost_max)
    if est.unpriced and est.cost_min is not None:
        cost += f" + unpriced ({', '.join(est.unpriced)})"
    rows = [(v.name, v.model, f"{v.requests:,}", f"{v.prompt_tokens:,}", _count(v.completion_max),
             _range(v.cost_min, v.cost_max)) for v in est.variants]
    rows.append(("total", "", f"{est.requests:,}", f"{est.prompt_tokens:,}",
                 _count(est.completion_max), cost))
    lines = [f"estimate of {est.name}: offline, nothing sent",
             f"{est.rows:,} rows x {len(est.variants)} variants x their samples = "
             f"{est.requests:,} requests", "",
             *_table(("variant", "model", "requests", "prompt tokens (est.)", "completion max",
                      "cost (USD)"), rows), "",
             f"prompt tokens (+-{est.prompt_band:.0%}): {est.tokenizer}",
             "completion tokens: 0 .. max_tokens a request",
             "cost: those bands at each variant's prices, no cache discount",
             "time at the configured limits:"]
    for p in est.providers:
        who = f"  {p.name} ({', '.join(p.variants)})"
        if not p.ceilings:
            lines.append(f"{who}: unlimited: no ceilings set (paced by the provider's headers)")
            continue
        limits = ", ".join(f"{value:,.0f} {label}" for label, value in p.ceilings)
        upper = "unbounded" if p.seconds_max is None else _duration(p.seconds_max)
        lines.append(f"{who} at {limits}: {_duration(p.seconds_min or 0.0)} .. {upper}")
    settled = sum(v.settled for v in est.variants)
    if settled:
        lines.append(f"already in the output: {settled:,} of {est.requests:,} requests "
                     "(a run skips them; the figures above are for the whole job)")
    return "\n".join(lines)


def format_sampled(result: SampledEstimate) -> str:
    """The sampled estimate as a table for people, followed by the offline one."""
    total = result.total
    spent = "" if result.sample_cost_usd is None else f", cost {_usd(result.sample_cost_usd)}"
    rows = [(e.name, _interval(e.prompt_tokens), _interval(e.completion_tokens),
             _interval(e.cost_usd, money=True) if e.prompt_tokens else "no complete row",
             "-" if e.prompt_ratio is None else f"{e.prompt_ratio:.2f}")
            for e in (*result.variants, total)]
    lines = [f"sampled {len(result.ids):,} of {result.offline.rows:,} rows: {total.answered:,} "
             f"answers, {total.errors:,} errors{spent} (kept in the output: not paid again)",
             "extrapolated to every row (95% interval):", "",
             *_table(("variant", "prompt tokens", "completion tokens", "cost (USD)",
                      "prompt actual/est."), rows), ""]
    if total.errors:
        lines += [f"warning: {total.errors} sampled requests ended in error; see batchrun report",
                  ""]
    return "\n".join(lines) + "\n" + format_estimate(result.offline)


def _table(head: tuple[str, ...], body: Sequence[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in (head, *body)) for i in range(len(head))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            for row in (head, *body)]


def _count(value: int | None) -> str:
    return "unbounded" if value is None else f"{value:,}"


def _range(low: float | None, high: float | None) -> str:
    if low is None:
        return "unpriced"
    return f">= {_usd(low)} (unbounded)" if high is None else f"{_usd(low)} - {_usd(high)}"


def _interval(interval: Interval | None, *, money: bool = False) -> str:
    if interval is None:
        return "unpriced" if money else "no complete row"
    show = _usd if money else (lambda x: f"{x:,.0f}")
    if interval.low is None or interval.high is None:
        return f"{show(interval.value)} (one row: no interval)"
    return f"{show(interval.value)} ({show(interval.low)} - {show(interval.high)})"


def _usd(value: float) -> str:
    """Dollars: cents from $1 up, three significant digits below."""
    if value >= 1 or value == 0:
        return f"${value:,.2f}"
    return f"${value:.{max(2, 2 - math.floor(math.log10(value)))}f}"


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days or hours:
        return f"{days}d{hours:02d}h" if days else f"{hours}h{minutes:02d}m"
    return (f"{minutes}m{secs:02d}s" if minutes else f"{secs}s") if seconds >= 1 else "<1s"
