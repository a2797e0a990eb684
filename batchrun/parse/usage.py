"""The usage rule: token counts as each format reports them -> `Usage`, None where unreported.

`prompt_tokens` counts every input token, cached ones included (Anthropic: input + cache
creation + cache read); `total_tokens` is taken as reported, else prompt + completion (which
`Usage` itself fills in).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from batchrun.parse.answer import Usage
from batchrun.parse.common import as_int

NO_USAGE = Usage()


def openai_usage(usage: object) -> Usage:
    """Usage from an OpenAI-style `usage` object; what is not reported stays None."""
    if not isinstance(usage, Mapping):
        return NO_USAGE
    prompt = as_int(usage.get("prompt_tokens"))
    if prompt is None:
        prompt = as_int(usage.get("input_tokens"))
    completion = as_int(usage.get("completion_tokens"))
    if completion is None:
        completion = as_int(usage.get("output_tokens"))
    details = usage.get("completion_tokens_details")
    reasoning = as_int(details.get("reasoning_tokens")) if isinstance(details, Mapping) else None
    if reasoning is None:
        reasoning = as_int(usage.get("reasoning_tokens"))
    details = usage.get("prompt_tokens_details")
    cached = as_int(details.get("cached_tokens")) if isinstance(details, Mapping) else None
    if cached is None:
        cached = as_int(usage.get("prompt_cache_hit_tokens"))  # DeepSeek
    if cached is None:
        cached = as_int(usage.get("cached_tokens"))  # gateways that report it at the top level
    return Usage(prompt, completion, reasoning, cached, as_int(usage.get("total_tokens")))


def anthropic_usage(usage: object) -> Usage:
    """Usage from an Anthropic `usage` object: prompt = input + cache creation + cache read."""
    if not isinstance(usage, Mapping):
        return NO_USAGE
    parts = [
        as_int(usage.get(key))
        for key in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    ]
    prompt = None if parts == [None, None, None] else sum(p for p in parts if p is not None)
    completion = as_int(usage.get("output_tokens"))
    details = usage.get("output_tokens_details")
    reasoning = as_int(details.get("thinking_tokens")) if isinstance(details, Mapping) else None
    return Usage(prompt, completion, reasoning, parts[2])


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
