"""OpenAI-format wire of the mock provider: bodies, SSE chunks, error bodies, in any shape."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import orjson

from batchrun.mock.answer import MockAnswer
from batchrun.mock.limits import FixedWindow, Refusal
from batchrun.mock.shapes import Shape, finish_fields, pieces, think_text

DONE = b"data: [DONE]\n\n"
KEEP_ALIVE = b": keep-alive\n\n"
PROCESSING = b": OPENROUTER PROCESSING\n\n"


def _tool_call(a: MockAnswer) -> dict[str, Any]:
    return {
        "id": f"call_{a.digest[:24]}",
        "type": "function",
        "function": {"name": a.tool_name, "arguments": a.tool_arguments},
    }


def _head(shape: Shape, rid: str, created: int, model: str, obj: str) -> dict[str, Any]:
    head: dict[str, Any] = {"id": shape.id_prefix + rid, "object": obj, "created": created}
    if shape.model:
        head["model"] = model
    head.update(shape.top)
    return head


def completion(
    shape: Shape, answers: list[MockAnswer], *, rid: str, created: int, model: str, think: bool
) -> dict[str, Any]:
    """A non-streamed chat.completion; `think` puts reasoning into content as tags."""
    choices = []
    for index, a in enumerate(answers):
        message: dict[str, Any] = {"role": "assistant", "content": a.content}
        message.update(shape.message)
        if a.reasoning is not None:
            if think or shape.think:
                message["content"] = think_text(a)
            else:
                message[shape.reasoning_key] = a.reasoning
        if a.tool_name is not None:
            message["tool_calls"] = [_tool_call(a)]
        choice = {"index": index, "message": message, **shape.choice}
        choice.update(finish_fields(shape, a.finish))
        choices.append(choice)
    body = _head(shape, rid, created, model, "chat.completion")
    body["choices"] = choices
    body["usage"] = shape.usage(_total(answers))
    return body


def _total(answers: list[MockAnswer]) -> MockAnswer:
    """The first answer carrying the completion tokens of all choices (usage of n > 1)."""
    if len(answers) == 1:
        return answers[0]
    return replace(
        answers[0],
        completion_tokens=sum(a.completion_tokens for a in answers),
        reasoning_tokens=sum(a.reasoning_tokens for a in answers),
    )


def _deltas(shape: Shape, a: MockAnswer, think: bool) -> list[dict[str, Any]]:
    role: dict[str, Any] = {"role": "assistant", "content": ""}
    if shape.name == "openai":
        role["refusal"] = None
    deltas = [role]
    content = a.content or ""
    if a.reasoning is not None:
        if think or shape.think:
            content = think_text(a)
        else:
            deltas += [{shape.reasoning_key: p} for p in pieces(a.reasoning)]
    deltas += [{"content": p} for p in pieces(content)]
    if a.tool_name is not None:
        start = _tool_call(a)
        start["function"] = {"name": a.tool_name, "arguments": ""}
        deltas.append({"tool_calls": [{"index": 0, **start}]})
        deltas += [
            {"tool_calls": [{"index": 0, "function": {"arguments": p}}]}
            for p in pieces(a.tool_arguments or "", 8)
        ]
    return deltas


def stream_events(
    shape: Shape,
    answers: list[MockAnswer],
    *,
    rid: str,
    created: int,
    model: str,
    think: bool,
    include_usage: bool,
) -> list[bytes]:
    """The SSE events of a streamed completion, from the role chunk to `data: [DONE]`."""
    head = _head(shape, rid, created, model, "chat.completion.chunk")
    if include_usage and shape.null_usage_in_chunks:
        head["usage"] = None
    events: list[bytes] = [PROCESSING] if shape.name == "openrouter" else []
    for index, a in enumerate(answers):
        for delta in _deltas(shape, a, think):
            choice = {"index": index, "delta": delta, **shape.choice, "finish_reason": None}
            if shape.name == "liandanxia":
                choice["matched_stop"] = None
            events.append(_data({**head, "choices": [choice]}))
        final = {"index": index, "delta": {}, **shape.choice, **finish_fields(shape, a.finish)}
        events.append(_data({**head, "choices": [final]}))
    events.insert(min(2, len(events)), KEEP_ALIVE)
    if include_usage:
        events.append(_data({**head, "choices": [], "usage": shape.usage(_total(answers))}))
    events.append(DONE)
    return events


def _data(obj: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


_ERROR_TYPES = {401: "invalid_request_error", 403: "permission_error", 429: "requests"}
_ERROR_CODES = {401: "invalid_api_key", 404: "model_not_found", 429: "rate_limit_exceeded"}


def error_body(
    status: int, message: str, *, code: str | None = None, kind: str | None = None
) -> bytes:
    """OpenAI's error object: {"error": {"message", "type", "param", "code"}}."""
    default = "server_error" if status >= 500 else "invalid_request_error"
    error = {
        "message": message,
        "type": kind or _ERROR_TYPES.get(status, default),
        "param": None,
        "code": code or _ERROR_CODES.get(status),
    }
    return orjson.dumps({"error": error})


@dataclass(frozen=True, slots=True)
class OpenAIWire:
    """The OpenAI chat-completions format in one shape, as the server uses it."""

    shape: Shape
    think: bool  # reasoning as <think> tags in content instead of a field

    def validate(self, body: dict[str, Any]) -> str | None:
        """What makes the body unacceptable to this provider, or None."""
        if self.shape.name == "jiekou" and not isinstance(body.get("max_tokens"), int):
            return "max_tokens is required"
        return None

    def authorized(self, headers: Mapping[str, str], key: str) -> bool:
        """Whether the request carries `key` as a bearer token."""
        return headers.get("Authorization") == f"Bearer {key}"

    def choices(self, body: dict[str, Any]) -> int:
        """How many choices to answer (`n`, 1 to 16)."""
        n = body.get("n", 1)
        return n if isinstance(n, int) and 1 <= n <= 16 else 1

    def body(self, answers: list[MockAnswer], *, rid: str, model: str) -> bytes:
        """A non-streamed response."""
        obj = completion(
            self.shape, answers, rid=rid, created=int(time.time()), model=model, think=self.think
        )
        return orjson.dumps(obj)

    def events(
        self, answers: list[MockAnswer], body: dict[str, Any], *, rid: str, model: str
    ) -> list[bytes]:
        """A streamed response, event by event."""
        options = body.get("stream_options")
        return stream_events(
            self.shape,
            answers,
            rid=rid,
            created=int(time.time()),
            model=model,
            think=self.think,
            include_usage=isinstance(options, dict) and options.get("include_usage") is True,
        )

    def rate_headers(self, window: FixedWindow) -> dict[str, str]:
        """x-ratelimit-* headers."""
        return window.openai_headers()

    def error(self, status: int, message: str) -> bytes:
        """An error body for an HTTP status."""
        return error_body(status, message)

    def rate_limited(self, refusal: Refusal) -> bytes:
        """The body of a 429 from the enforced limits."""
        message = (
            f"Rate limit reached on {refusal.limit} per min. "
            f"Please try again in {refusal.wait_s:.3f}s."
        )
        return error_body(429, message, kind=refusal.limit)

    def overloaded(self) -> bytes:
        """The body of a 529."""
        return error_body(529, "Overloaded", kind="overloaded_error", code="overloaded")

    def context_error(self, tokens: int) -> bytes:
        """The body of a 400 for a prompt longer than the context."""
        message = (
            f"This model's maximum context length is 8192 tokens. However, your messages "
            f"resulted in {tokens} tokens. Please reduce the length of the messages."
        )
        return error_body(400, message, code="context_length_exceeded")

    def error_in_200(self) -> bytes:
        """An error object sent with HTTP 200, as some gateways do."""
        return error_body(502, "upstream failure", kind="server_error", code="upstream_error")

    def malformed_events(self) -> list[bytes]:
        """A chunk that is not JSON, then the end marker."""
        return [b"data: <html><body>502 Bad Gateway</body></html>\n\n", DONE]

    def stream_error(self) -> bytes:
        """An error object arriving mid-stream."""
        error = {"message": "upstream failure", "type": "server_error", "code": "internal_error"}
        return _data({"error": error})
