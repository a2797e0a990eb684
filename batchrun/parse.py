"""Raw responses and stream events -> `Answer`: pure functions over parsed JSON, no I/O.

Callers parse bytes with orjson and hand the result here; streams are fed the events of
`batchrun.providers.sse.SSEDecoder`. Reasoning follows `batchrun.reasoning` (one rule for all
providers); usage follows `openai_usage` / `anthropic_usage`; an error object anywhere raises
the matching class of `batchrun.errors` (see `batchrun.error_bodies`).

Tool calls always come out in OpenAI's shape,
`[{"id", "type": "function", "function": {"name", "arguments"}}]`, with `arguments` a JSON
string ("{}" when the provider sent none). A refusal (OpenAI `refusal`) is the content when
there is no other content. With `n` > 1 the `*_choices` / `finish_all` forms return one answer
per choice; the response's usage is carried by the first answer only, so sums stay right.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from batchrun.answer import Answer, Usage
from batchrun.error_bodies import error_from_body
from batchrun.errors import IncompleteStream, MalformedResponse, ProviderError
from batchrun.providers.sse import SSEEvent
from batchrun.reasoning import separate, split_think
from batchrun.responses import (
    NO_USAGE,
    anthropic_answer,
    anthropic_usage,
    as_str,
    block_of,
    choice_failed,
    load_event,
    openai_usage,
    parse_anthropic,
    parse_openai,
    parse_openai_choices,
    raise_error,
    tool_call,
)

__all__ = [
    "AnthropicStream",
    "OpenAIStream",
    "anthropic_usage",
    "error_from_body",
    "openai_usage",
    "parse_anthropic",
    "parse_openai",
    "parse_openai_choices",
    "split_think",
]


class _ToolParts:
    __slots__ = ("arguments", "id", "name")

    def __init__(self) -> None:
        self.id: str | None = None
        self.name: str | None = None
        self.arguments: list[str] = []


class _ChoiceParts:
    __slots__ = ("content", "finish_reason", "reasoning", "refusal", "tools")

    def __init__(self) -> None:
        self.content: list[str] = []
        self.reasoning: list[str] = []
        self.refusal: list[str] = []
        self.tools: dict[int, _ToolParts] = {}
        self.finish_reason: str | None = None

    def add_tools(self, calls: list[Any]) -> None:
        tools = self.tools
        for call in calls:
            index = call.get("index")
            call_id = call.get("id")
            if not isinstance(index, int):
                # Some servers omit `index`: a new id opens a call, anything else continues one.
                known = any(t.id == call_id for t in tools.values())
                index = len(tools) if not tools or (call_id and not known) else max(tools)
            tool = tools.get(index)
            if tool is None:
                tool = tools[index] = _ToolParts()
            if call_id and tool.id is None:
                tool.id = call_id
            function = call.get("function")
            if function:
                name = function.get("name")
                # Most servers send the name once; some repeat it whole in every delta.
                if name and name != tool.name:
                    tool.name = name if tool.name is None else tool.name + name
                arguments = function.get("arguments")
                if arguments:
                    if not isinstance(arguments, str):
                        arguments = orjson.dumps(arguments).decode()
                    tool.arguments.append(arguments)

    def answer(self, mode: str, usage: Usage, response_id: str | None, model: str | None) -> Answer:
        content = "".join(self.content) or "".join(self.refusal)
        text, reasoning = separate(content, "".join(self.reasoning), mode)
        calls = [
            tool_call(t.id, t.name, "".join(t.arguments)) for _, t in sorted(self.tools.items())
        ]
        return Answer(text, reasoning, calls or None, self.finish_reason, usage, response_id, model)


class OpenAIStream:
    """Accumulates `chat.completion.chunk` events; complete at `data: [DONE]`."""

    __slots__ = ("_choices", "_done", "_id", "_mode", "_model", "_usage")

    def __init__(self, *, reasoning: str = "auto") -> None:
        self._mode = reasoning
        self._done = False
        self._choices: dict[int, _ChoiceParts] = {}
        self._usage: object = None
        self._id: str | None = None
        self._model: str | None = None

    def feed(self, event: SSEEvent) -> bool:
        """Take one event; True once the stream is complete. Raises on an error event."""
        if self._done:
            return True
        data = event.data
        if not data:
            return False
        if data.startswith("[DONE]"):
            self._done = True
            return True
        chunk = load_event(data)
        if "error" in chunk or chunk.get("object") == "error":
            raise_error(chunk)
        try:
            self._take(chunk)
        except (AttributeError, TypeError) as exc:
            raise MalformedResponse(f"unexpected chunk shape ({exc}): {data[:200]!r}") from exc
        return False

    def _take(self, chunk: dict[str, Any]) -> None:
        if self._id is None:
            self._id = as_str(chunk.get("id"))
        if self._model is None:
            self._model = as_str(chunk.get("model"))
        usage = chunk.get("usage")
        if usage:
            self._usage = usage  # the last report is the complete one
        for choice in chunk.get("choices") or ():
            index = choice.get("index") or 0
            parts = self._choices.get(index)
            if parts is None:
                parts = self._choices[index] = _ChoiceParts()
            delta = choice.get("delta")
            if delta:
                text = delta.get("content")
                if text and isinstance(text, str):
                    parts.content.append(text)
                thought = delta.get("reasoning_content") or delta.get("reasoning")
                if thought and isinstance(thought, str):
                    parts.reasoning.append(thought)
                refusal = delta.get("refusal")
                if refusal and isinstance(refusal, str):
                    parts.refusal.append(refusal)
                calls = delta.get("tool_calls")
                if calls:
                    parts.add_tools(calls)
            finish = choice.get("finish_reason")
            if finish:
                if finish == "error":
                    raise choice_failed(choice, chunk)
                parts.finish_reason = finish

    def finish(self) -> Answer:
        """The answer of the first choice; IncompleteStream if `[DONE]` never came."""
        return self.finish_all()[0]

    def finish_all(self) -> list[Answer]:
        """One answer per choice (`n` > 1), in index order; usage on the first only."""
        if not self._done:
            raise IncompleteStream("stream ended before data: [DONE]")
        if not self._choices:
            raise MalformedResponse("stream completed without any choice")
        usage = openai_usage(self._usage)
        return [
            parts.answer(self._mode, usage if i == 0 else NO_USAGE, self._id, self._model)
            for i, (_, parts) in enumerate(sorted(self._choices.items()))
        ]


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
            kind, text, start = block_of(block.start)
            if block.parts:
                joined = "".join(block.parts)
                # Tool input arrives whole as partial_json; the start's `input` is only `{}`.
                text = joined if kind == "tool_use" else text + joined
            blocks.append((kind, text, start))
        message = self._message
        stop_reason = self._stop_reason or message.get("stop_reason")
        return anthropic_answer(
            blocks,
            self._mode,
            stop_reason,
            anthropic_usage(self._usage or None),
            message.get("id"),
            message.get("model"),
        )
