"""The OpenAI-format shapes of the mock provider: where each provider family puts things.

Each shape copies one provider family's quirks (see the provider documents):

    openai      the reference: usage details, system_fingerprint, refusal/annotations fields
    liandanxia  SGLang-backed: <think> inside content while reasoning_content is null,
                usage.reasoning_tokens 0 at the top, prompt_tokens_details null, matched_stop,
                metadata.weight_version
    relay       the plain OpenAI shape, without "model"
    jiekou      reasoning_content field; max_tokens required (checked by the server)
    deepseek    reasoning_content, usage.prompt_cache_hit_tokens / prompt_cache_miss_tokens
    openrouter  `reasoning` field, native_finish_reason, ": OPENROUTER PROCESSING" comments
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from batchrun.mock.answer import MockAnswer

SHAPES = ("openai", "liandanxia", "relay", "jiekou", "deepseek", "openrouter")
PIECE = 12  # characters per streamed delta


def _usage_openai(a: MockAnswer) -> dict[str, Any]:
    # OpenAI caches prompts from 1,024 tokens on, in steps of 128.
    cached = a.prompt_tokens // 128 * 128 if a.prompt_tokens >= 1024 else 0
    return {
        "prompt_tokens": a.prompt_tokens,
        "completion_tokens": a.completion_tokens,
        "total_tokens": a.total_tokens,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": a.reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _usage_sglang(a: MockAnswer) -> dict[str, Any]:
    return {
        "prompt_tokens": a.prompt_tokens,
        "total_tokens": a.total_tokens,
        "completion_tokens": a.completion_tokens,
        "prompt_tokens_details": None,
        "reasoning_tokens": 0,
    }


def _usage_plain(a: MockAnswer) -> dict[str, Any]:
    return {
        "prompt_tokens": a.prompt_tokens,
        "completion_tokens": a.completion_tokens,
        "total_tokens": a.total_tokens,
    }


def _usage_deepseek(a: MockAnswer) -> dict[str, Any]:
    hit = a.prompt_tokens // 64 * 64  # DeepSeek's disk cache works in 64-token units
    usage = _usage_plain(a)
    usage["prompt_tokens_details"] = {"cached_tokens": hit}
    usage["prompt_cache_hit_tokens"] = hit
    usage["prompt_cache_miss_tokens"] = a.prompt_tokens - hit
    if a.reasoning is not None:
        usage["completion_tokens_details"] = {"reasoning_tokens": a.reasoning_tokens}
    return usage


def _usage_openrouter(a: MockAnswer) -> dict[str, Any]:
    usage = _usage_plain(a)
    usage["prompt_tokens_details"] = {"cached_tokens": 0}
    usage["completion_tokens_details"] = {"reasoning_tokens": a.reasoning_tokens}
    return usage


@dataclass(frozen=True, slots=True)
class Shape:
    """How one provider family lays out a chat completion."""

    name: str
    id_prefix: str
    usage: Callable[[MockAnswer], dict[str, Any]]
    model: bool = True
    reasoning_key: str = "reasoning_content"
    think: bool = False  # reasoning always goes inside content as <think> tags
    top: dict[str, Any] = field(default_factory=dict)
    choice: dict[str, Any] = field(default_factory=dict)
    message: dict[str, Any] = field(default_factory=dict)
    null_usage_in_chunks: bool = False


SHAPE_TABLE: dict[str, Shape] = {
    "openai": Shape(
        "openai",
        "chatcmpl-",
        _usage_openai,
        top={"service_tier": "default", "system_fingerprint": "fp_mock0001"},
        choice={"logprobs": None},
        message={"refusal": None, "annotations": []},
        null_usage_in_chunks=True,
    ),
    "liandanxia": Shape(
        "liandanxia",
        "",
        _usage_sglang,
        think=True,
        top={"metadata": {"weight_version": "default"}},
        choice={"logprobs": None},
        message={"reasoning_content": None, "tool_calls": None},
        null_usage_in_chunks=True,
    ),
    "relay": Shape("relay", "chatcmpl-", _usage_plain, model=False),
    "jiekou": Shape("jiekou", "", _usage_plain),
    "deepseek": Shape(
        "deepseek",
        "",
        _usage_deepseek,
        top={"system_fingerprint": "fp_mock_prod0820"},
        choice={"logprobs": None},
    ),
    "openrouter": Shape(
        "openrouter",
        "gen-",
        _usage_openrouter,
        reasoning_key="reasoning",
        top={"provider": "Mock"},
        choice={"logprobs": None},
        message={"refusal": None},
    ),
}


def think_text(a: MockAnswer) -> str:
    """Reasoning and answer as one content string with <think> tags (unclosed if cut)."""
    if a.reasoning_cut:
        return f"<think>\n{a.reasoning}"
    return f"<think>\n{a.reasoning}\n</think>\n{a.content or ''}"


def pieces(text: str, size: int = PIECE) -> list[str]:
    """`text` in pieces of `size`, also cut inside each <think> tag so tags span two deltas."""
    cuts = set(range(size, len(text), size))
    for tag in ("<think>", "</think>"):
        at = text.find(tag)
        if at >= 0:
            cuts.add(at + 3)
    points = [0, *sorted(c for c in cuts if 0 < c < len(text)), len(text)]
    return [text[a:b] for a, b in itertools.pairwise(points) if b > a]


def finish_fields(shape: Shape, finish: str) -> dict[str, Any]:
    """finish_reason, with the shape's companions (matched_stop, native_finish_reason)."""
    fields: dict[str, Any] = {"finish_reason": finish}
    if shape.name == "liandanxia":
        fields["matched_stop"] = 1 if finish == "stop" else None
    elif shape.name == "openrouter":
        fields["native_finish_reason"] = finish
    return fields
