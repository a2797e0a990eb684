"""Anthropic Messages -> `Answer`: a whole message body, or its typed event stream.

Text blocks make the content, `thinking` blocks the reasoning (through the one reasoning rule),
`tool_use` blocks are mapped onto OpenAI's tool-call shape, and `stop_reason` is kept as the
finish reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from batchrun.errors import IncompleteStream, MalformedResponse, ProviderError
from batchrun.parse.answer import Answer, Usage
from batchrun.parse.common import as_str, load_event, raise_error, tool_call
from batchrun.parse.error_bodies import error_from_body
from batchrun.parse.reasoning import separate
from batchrun.parse.sse import SSEEvent
from batchrun.parse.usage import anthropic_usage


def _answer(
    blocks: list[tuple[str, str, Any]],
    mode: str,
    stop_reason: object,
    usage: Usage,
    response_id: object,
    model: object,
) -> Answer:
    """Blocks as (type, text, tool_use block) in order -> Answer."""
    texts: list[str] = []
    thinking: list[str] = []
    calls: list[dict[str, Any]] = []
    for kind, text, extra in blocks:
        if kind == "text":
            texts.append(text)
        elif kind == "thinking":
            if text:
                thinking.append(text)
        elif kind == "tool_use":
            calls.append(tool_call(extra.get("id"), extra.get("name"), text))
        # redacted_thinking holds only encrypted data: nothing readable to keep.
    content, reasoning = separate("".join(texts), "\n\n".join(thinking) or None, mode)
    refusal = None
    if stop_reason == "refusal":
        # The model stopped to decline; what text came before is the refusal, never a label.
        refusal = content or "the model declined to answer (stop_reason: refusal)"
    return Answer(
        content,
        reasoning,
        calls or None,
        as_str(stop_reason),
        usage,
        as_str(response_id),
        as_str(model),
        refusal,
    )


def _block_of(block: Mapping[str, Any]) -> tuple[str, str, Any]:
    """An Anthropic content block as (type, text, the block when it is a tool_use)."""
    kind = block.get("type")
    if kind == "text":
        return "text", as_str(block.get("text")) or "", None
    if kind == "thinking":
        return "thinking", as_str(block.get("thinking")) or "", None
    if kind == "tool_use":
        return "tool_use", orjson.dumps(block.get("input") or {}).decode(), block
    return str(kind), "", None


def parse_anthropic(body: object, *, reasoning: str = "auto") -> Answer:
    """Parse a Messages API response body into an Answer."""
    if not isinstance(body, Mapping):
        raise MalformedResponse(f"response is not a JSON object but {type(body).__name__}")
    raise_error(body)
    content = body.get("content")
    if not isinstance(content, list):
        raise MalformedResponse("message without a content list")
    blocks = [_block_of(block) for block in content if isinstance(block, Mapping)]
    return _answer(
        blocks,
        reasoning,
        body.get("stop_reason"),
        anthropic_usage(body.get("usage")),
        body.get("id"),
        body.get("model"),
    )


# A delta's type -> (its text field, the block type it belongs to).
_DELTAS: dict[object, tuple[str, str]] = {
    "text_delta": ("text", "text"),
    "thinking_delta": ("thinking", "thinking"),
    "input_json_delta": ("partial_json", "tool_use"),
}


class _Block:
    __slots__ = ("parts", "start")

    def __init__(self, start: Mapping[str, Any]) -> None:
        self.start = start
        self.parts: list[str] = []


class AnthropicStream:
    """Accumulates Messages API stream events; complete at `message_stop`."""

    __slots__ = ("_blocks", "_done", "_message", "_mode", "_stop_reason", "_usage")

    def __init__(self, *, reasoning: str = "auto") -> None:
        self._mode = reasoning
        self._done = False
        self._blocks: dict[int, _Block] = {}
        self._message: Mapping[str, Any] = {}
        self._usage: dict[str, Any] = {}
        self._stop_reason: object = None

    def feed(self, event: SSEEvent) -> bool:
        """Take one event; True once the stream is complete. Raises on an `error` event."""
        if self._done:
            return True
        if not event.data:
            return False
        msg = load_event(event.data)
        try:
            return self._take(msg, msg.get("type") or event.event)
        except (AttributeError, TypeError) as exc:
            preview = event.data[:200]
            raise MalformedResponse(f"unexpected event shape ({exc}): {preview!r}") from exc

    def _take(self, msg: dict[str, Any], kind: object) -> bool:
        if kind == "content_block_delta":
            delta = msg.get("delta") or {}
            known = _DELTAS.get(delta.get("type"))
            if known is None:  # signature_delta, citations_delta: nothing to keep
                return False
            field, block_type = known
            index = msg.get("index", 0)
            block = self._blocks.get(index)
            if block is None:  # a delta without its start: infer the block from it
                block = self._blocks[index] = _Block({"type": block_type})
            piece = delta.get(field)
            if piece:
                block.parts.append(piece)
        elif kind == "content_block_start":
            start = msg.get("content_block") or {}
            self._blocks[msg.get("index", len(self._blocks))] = _Block(start)
        elif kind == "message_start":
            self._message = msg.get("message") or {}
            usage = self._message.get("usage")
            if isinstance(usage, Mapping):
                self._usage.update(usage)
        elif kind == "message_delta":
            delta = msg.get("delta")
            if isinstance(delta, Mapping) and delta.get("stop_reason"):
                self._stop_reason = delta["stop_reason"]
            usage = msg.get("usage")
            if isinstance(usage, Mapping):
                # Counts in message_delta are cumulative: they replace those of message_start.
                self._usage.update((k, v) for k, v in usage.items() if v is not None)
        elif kind == "message_stop":
            self._done = True
            return True
        elif kind == "error":
            raise error_from_body(None, msg) or ProviderError(f"error event: {msg}")
        return False

    def finish(self) -> Answer:
        """The accumulated answer; IncompleteStream if `message_stop` never came."""
        if not self._done:
            raise IncompleteStream("stream ended before message_stop")
        blocks = []
        for _, block in sorted(self._blocks.items()):
            kind, text, start = _block_of(block.start)
            if block.parts:
                joined = "".join(block.parts)
                # Tool input arrives whole as partial_json; the start's `input` is only `{}`.
                text = joined if kind == "tool_use" else text + joined
            blocks.append((kind, text, start))
        message = self._message
        stop_reason = self._stop_reason or message.get("stop_reason")
        return _answer(
            blocks,
            self._mode,
            stop_reason,
            anthropic_usage(self._usage or None),
            message.get("id"),
            message.get("model"),
        )
