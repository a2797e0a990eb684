"""OpenAI Responses API -> `Answer`: a whole `response` object, or its typed event stream.

Output items map onto the usual columns: `message` items' `output_text` parts are the content and
their `refusal` parts the refusal; `reasoning` items give the reasoning (their `reasoning_text`
content when the server sends it, as vLLM and gpt-oss servers do, else their summaries);
`function_call` items become tool calls in OpenAI's chat shape. `status = "incomplete"` gives
`finish_reason = "length"` for `max_output_tokens` (else the reason given); `"failed"` raises the
error it carries. Usage: `input_tokens`, `output_tokens`, `input_tokens_details.cached_tokens`,
`output_tokens_details.reasoning_tokens`.

A stream is complete at `response.completed` or `response.incomplete`; the response object they
carry is authoritative, and the deltas seen on the way are used only when it lists no output.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from batchrun.errors import IncompleteStream, MalformedResponse, ProviderError, RequestError
from batchrun.parse.answer import Answer, Usage
from batchrun.parse.common import as_int, as_str, load_event, raise_error, tool_call
from batchrun.parse.error_bodies import error_from_body
from batchrun.parse.reasoning import separate
from batchrun.parse.sse import SSEEvent
from batchrun.parse.usage import NO_USAGE

_END_EVENTS = ("response.completed", "response.incomplete")


def responses_usage(usage: object) -> Usage:
    """Usage from a Responses API `usage` object; what is not reported stays None."""
    if not isinstance(usage, Mapping):
        return NO_USAGE
    inputs = usage.get("input_tokens_details")
    outputs = usage.get("output_tokens_details")
    return Usage(
        as_int(usage.get("input_tokens")),
        as_int(usage.get("output_tokens")),
        as_int(outputs.get("reasoning_tokens")) if isinstance(outputs, Mapping) else None,
        as_int(inputs.get("cached_tokens")) if isinstance(inputs, Mapping) else None,
        as_int(usage.get("total_tokens")),
    )


def parse_responses(body: object, *, reasoning: str = "auto") -> Answer:
    """Parse a Responses API `response` object into an Answer."""
    if not isinstance(body, Mapping):
        raise MalformedResponse(f"response is not a JSON object but {type(body).__name__}")
    status = body.get("status")
    if status == "failed" or (body.get("error") and status != "completed"):
        raise _failure(body)
    if body.get("object") != "response":
        raise_error(body)  # an error object answering in place of a response (a gateway's)
    output = body.get("output")
    if not isinstance(output, list):
        raise MalformedResponse("response without an output list")
    parts = _Parts()
    for item in output:
        if isinstance(item, Mapping):
            parts.add_item(item)
    return parts.answer(body, reasoning)


def _failure(body: Mapping[str, Any]) -> RequestError:
    error = body.get("error")
    found = error_from_body(None, {"error": error}) if error else None
    return found or ProviderError(f"response failed without an error object (id {body.get('id')})")


def _finish_reason(body: Mapping[str, Any], has_calls: bool) -> str | None:
    status = body.get("status")
    if status == "incomplete":
        details = body.get("incomplete_details")
        reason = details.get("reason") if isinstance(details, Mapping) else None
        return "length" if reason in (None, "max_output_tokens") else as_str(reason)
    if status == "completed":
        return "tool_calls" if has_calls else "stop"
    return as_str(status)


class _Parts:
    """The text, reasoning, refusal and calls of one response, item by item."""

    __slots__ = ("calls", "reasoning", "refusal", "summary", "text")

    def __init__(self) -> None:
        self.text: list[str] = []
        self.refusal: list[str] = []
        self.reasoning: list[str] = []
        self.summary: list[str] = []
        self.calls: list[dict[str, Any]] = []

    def add_item(self, item: Mapping[str, Any]) -> None:
        kind = item.get("type")
        if kind == "message":
            for part in item.get("content") or ():
                if not isinstance(part, Mapping):
                    continue
                if part.get("type") == "output_text" and isinstance(part.get("text"), str):
                    self.text.append(part["text"])
                elif part.get("type") == "refusal" and isinstance(part.get("refusal"), str):
                    self.refusal.append(part["refusal"])
        elif kind == "reasoning":
            for part in item.get("content") or ():
                if isinstance(part, Mapping) and isinstance(part.get("text"), str):
                    self.reasoning.append(part["text"])
            for part in item.get("summary") or ():
                if isinstance(part, Mapping) and isinstance(part.get("text"), str):
                    self.summary.append(part["text"])
        elif kind == "function_call":
            call_id = item.get("call_id") or item.get("id")
            self.calls.append(tool_call(call_id, item.get("name"),
                                        as_str(item.get("arguments")) or ""))

    def answer(self, body: Mapping[str, Any], mode: str) -> Answer:
        field = "".join(self.reasoning) or "\n\n".join(self.summary) or None
        content, reasoning = separate("".join(self.text) or None, field, mode)
        return Answer(
            content,
            reasoning,
            self.calls or None,
            _finish_reason(body, bool(self.calls)),
            responses_usage(body.get("usage")),
            as_str(body.get("id")),
            as_str(body.get("model")),
            "".join(self.refusal) or None,
        )


class ResponsesStream:
    """Accumulates Responses API stream events; complete at `response.completed`."""

    __slots__ = ("_calls", "_done", "_final", "_mode", "_parts", "_started")

    def __init__(self, *, reasoning: str = "auto") -> None:
        self._mode = reasoning
        self._done = False
        self._parts = _Parts()
        self._calls: dict[object, dict[str, Any]] = {}  # function_call items by output index
        self._started: Mapping[str, Any] = {}
        self._final: Mapping[str, Any] | None = None

    def feed(self, event: SSEEvent) -> bool:
        """Take one event; True once the response is complete. Raises on an error event."""
        if self._done:
            return True
        if not event.data or event.data.startswith("[DONE]"):
            return False
        data = load_event(event.data)
        kind = data.get("type") or event.event
        try:
            return self._take(data, kind)
        except (AttributeError, TypeError) as exc:
            preview = event.data[:200]
            raise MalformedResponse(f"unexpected event shape ({exc}): {preview!r}") from exc

    def _take(self, data: dict[str, Any], kind: object) -> bool:
        parts = self._parts
        if kind == "response.output_text.delta":
            parts.text.append(str(data.get("delta") or ""))
        elif kind == "response.refusal.delta":
            parts.refusal.append(str(data.get("delta") or ""))
        elif kind == "response.reasoning_text.delta":
            parts.reasoning.append(str(data.get("delta") or ""))
        elif kind == "response.reasoning_summary_text.delta":
            parts.summary.append(str(data.get("delta") or ""))
        elif kind == "response.reasoning_summary_part.done" and parts.summary:
            parts.summary.append("\n\n")  # summaries are separate paragraphs
        elif kind == "response.output_item.added":
            item = data.get("item") or {}
            if item.get("type") == "function_call":
                self._calls[data.get("output_index")] = {**item, "arguments": ""}
        elif kind == "response.function_call_arguments.delta":
            call = self._calls.get(data.get("output_index"))
            if call is not None:
                call["arguments"] += str(data.get("delta") or "")
        elif kind == "response.created":
            self._started = data.get("response") or {}
        elif kind in _END_EVENTS:
            self._final = data.get("response") or {}
            self._done = True
            return True
        elif kind == "response.failed":
            raise _failure(data.get("response") or {})
        elif kind == "error":
            raise error_from_body(None, {"error": data}) or ProviderError(f"error event: {data}")
        return False

    def finish(self) -> Answer:
        """The answer; IncompleteStream if the response never completed."""
        if not self._done or self._final is None:
            raise IncompleteStream("stream ended before response.completed")
        final = self._final
        if final.get("output"):
            return parse_responses(final, reasoning=self._mode)
        # A server that leaves the final output empty: the deltas are the answer.
        parts = self._parts
        parts.summary = ["".join(parts.summary).strip()] if parts.summary else []
        for _, call in sorted(self._calls.items(), key=lambda kv: as_int(kv[0]) or 0):
            parts.add_item(call)
        body = {**self._started, **final}
        return parts.answer(body, self._mode)
