"""What a provider's response means, independent of its wire format."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts as the provider reported them; None where it reported nothing.

    `prompt_tokens` counts every input token, cached ones included; `cached_tokens` those read
    from a cache; `reasoning_tokens` are part of `completion_tokens`, not added to them.
    """

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    reasoning_tokens: int | None = None
    cached_tokens: int | None = None
    total_tokens: int | None = None

    def __post_init__(self) -> None:
        # The one place `total_tokens` is filled in: as reported, else prompt + completion.
        if (self.total_tokens is None and self.prompt_tokens is not None
                and self.completion_tokens is not None):
            object.__setattr__(self, "total_tokens", self.prompt_tokens + self.completion_tokens)


@dataclass(frozen=True, slots=True)
class Answer:
    """One parsed response: text, reasoning, tool calls, finish reason, usage and any refusal."""

    content: str | None
    reasoning: str | None = None
    # OpenAI's shape: [{"id", "type": "function", "function": {"name", "arguments": str}}]
    tool_calls: list[dict[str, Any]] | None = None
    finish_reason: str | None = None
    usage: Usage = Usage()
    response_id: str | None = None
    model: str | None = None
    # The model declined: OpenAI `refusal`, Anthropic `stop_reason: "refusal"`. `content` keeps
    # only what the answer field held, so a refusal never passes for an answer (or a label).
    refusal: str | None = None
