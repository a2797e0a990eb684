"""Prices and cost: what a row cost, and the worst a request could cost before it is sent."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from batchrun.answer import Usage

if TYPE_CHECKING:
    from batchrun.job import Price

PER_MILLION = 1_000_000.0


def row_cost(usage: Usage, price: Price | None) -> float | None:
    """USD for one answer; None without a price or without reported usage.

    Cached tokens are part of prompt_tokens and billed at `cached_input` (or `input` when the
    variant gives no cached price); reasoning tokens are inside completion_tokens already.
    """
    if price is None or usage.prompt_tokens is None or usage.completion_tokens is None:
        return None
    cached = usage.cached_tokens or 0
    cached_price = price.cached_input if price.cached_input is not None else price.input
    return (
        (usage.prompt_tokens - cached) * price.input
        + cached * cached_price
        + usage.completion_tokens * price.output
    ) / PER_MILLION


def worst_case_cost(prompt_tokens: int, max_tokens: int, price: Price | None) -> float:
    """The most one request can cost: every prompt token uncached, max_tokens generated."""
    if price is None:
        return 0.0
    return (prompt_tokens * price.input + max_tokens * price.output) / PER_MILLION


def sum_usage(usages: Sequence[Usage]) -> Usage:
    """Usage of several answers to one request (each answer rejected by [parse] was paid for)."""
    if len(usages) == 1:
        return usages[0]

    def total(name: str) -> int | None:
        values = [getattr(u, name) for u in usages if getattr(u, name) is not None]
        return sum(values) if values else None

    return Usage(
        prompt_tokens=total("prompt_tokens"),
        completion_tokens=total("completion_tokens"),
        reasoning_tokens=total("reasoning_tokens"),
        cached_tokens=total("cached_tokens"),
        total_tokens=total("total_tokens"),
    )
