"""The estimates of `batchrun.estimate` as plain-text tables for people."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from batchrun.estimate.extrapolate import Interval
    from batchrun.estimate.model import Estimate, SampledEstimate


def format_estimate(est: Estimate) -> str:
    """The offline estimate as a table for people."""
    cost = _range(est.cost_min, est.cost_max)
    if est.unpriced and est.cost_min is not None:
        cost += f" + unpriced ({', '.join(est.unpriced)})"
    batch = [v for v in est.variants if v.mode == "batch"]
    rows: list[tuple[str, ...]] = [
        (v.name, v.model, f"{v.requests:,}", f"{v.prompt_tokens:,}", _count(v.completion_max),
         _range(v.cost_min, v.cost_max)) for v in est.variants]
    rows.append(("total", "", f"{est.requests:,}", f"{est.prompt_tokens:,}",
                 _count(est.completion_max), cost))
    head: tuple[str, ...] = ("variant", "model", "requests", "prompt tokens (est.)",
                             "completion max", "cost (USD)")
    if batch:  # batch variants: their batch cost, and the online cost beside it
        head = (*head, "online cost (USD)")
        online = [_range(v.online_cost_min, v.online_cost_max) if v.mode == "batch" else ""
                  for v in est.variants]
        rows = [(*row, extra) for row, extra in zip(rows, [*online, ""], strict=True)]
    lines = [f"estimate of {est.name}: offline, nothing sent",
             f"{est.rows:,} rows x {len(est.variants)} variants x their samples = "
             f"{est.requests:,} requests", "",
             *_table(head, rows), "",
             f"prompt tokens (+-{est.prompt_band:.0%}): {est.tokenizer}",
             "completion tokens: 0 .. max_tokens a request",
             "cost: those bands at each variant's prices, no cache discount",
             *([f"batch variants ({', '.join(v.name for v in batch)}): the online price x "
                "price.batch; done within the provider's batch window, not paced by the "
                "limits below"] if batch else []),
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
