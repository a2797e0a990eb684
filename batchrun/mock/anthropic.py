"""Anthropic Messages wire shapes of the mock provider: bodies, named SSE events, error bodies."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import orjson

from batchrun.mock.answer import MockAnswer
from batchrun.mock.limits import FixedWindow, Refusal
from batchrun.mock.shapes import pieces

STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}
PING = b'event: ping\ndata: {"type": "ping"}\n\n'
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def _signature(a: MockAnswer) -> str:
    return base64.b64encode(bytes.fromhex(a.digest)).decode()


def _usage(a: MockAnswer, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": a.prompt_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def _tool_id(a: MockAnswer) -> str:
    return f"toolu_{a.digest[:24]}"


def message(a: MockAnswer, *, rid: str, model: str) -> dict[str, Any]:
    """A non-streamed Messages response."""
    content: list[dict[str, Any]] = []
    if a.reasoning is not None:
        block = {"type": "thinking", "thinking": a.reasoning, "signature": _signature(a)}
        content.append(block)
    if a.content:
        content.append({"type": "text", "text": a.content})
    if a.tool_name is not None:
        content.append(
            {
                "type": "tool_use",
                "id": _tool_id(a),
                "name": a.tool_name,
                "input": orjson.loads(a.tool_arguments or "{}"),
            }
        )
    return {
        "id": f"msg_{rid}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": STOP_REASONS[a.finish],
        "stop_sequence": None,
        "usage": _usage(a, a.completion_tokens),
    }


def _event(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def stream_events(a: MockAnswer, *, rid: str, model: str) -> list[bytes]:
    """The named SSE events of a streamed Messages response, message_start to message_stop."""
    start = message(a, rid=rid, model=model)
    start.update(content=[], stop_reason=None, usage=_usage(a, 1))
    events = [_event("message_start", {"type": "message_start", "message": start}), PING]
    blocks: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    if a.reasoning is not None:
        deltas = [{"type": "thinking_delta", "thinking": p} for p in pieces(a.reasoning)]
        deltas.append({"type": "signature_delta", "signature": _signature(a)})
        blocks.append(({"type": "thinking", "thinking": "", "signature": ""}, deltas))
    if a.content:
        text = [{"type": "text_delta", "text": p} for p in pieces(a.content)]
        blocks.append(({"type": "text", "text": ""}, text))
    if a.tool_name is not None:
        tool = {"type": "tool_use", "id": _tool_id(a), "name": a.tool_name, "input": {}}
        json = [
            {"type": "input_json_delta", "partial_json": p}
            for p in pieces(a.tool_arguments or "{}", 8)
        ]
        blocks.append((tool, json))
    for index, (block, deltas) in enumerate(blocks):
        events.append(
            _event(
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": block},
            )
        )
        events.extend(
            _event(
                "content_block_delta", {"type": "content_block_delta", "index": index, "delta": d}
            )
            for d in deltas
        )
        events.append(_event("content_block_stop", {"type": "content_block_stop", "index": index}))
        events.append(PING)
    events.append(
        _event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": STOP_REASONS[a.finish], "stop_sequence": None},
                "usage": {"output_tokens": a.completion_tokens},
            },
        )
    )
    events.append(_event("message_stop", {"type": "message_stop"}))
    return events


def error_body(status: int, message: str, *, kind: str | None = None) -> bytes:
    """Anthropic's error object: {"type": "error", "error": {"type", "message"}}."""
    kind = kind or _ERROR_TYPES.get(status, "api_error")
    return orjson.dumps({"type": "error", "error": {"type": kind, "message": message}})


class AnthropicWire:
    """The Anthropic Messages format, as the server uses it."""

    __slots__ = ()

    def validate(self, body: dict[str, Any]) -> str | None:
        """What makes the body unacceptable, or None: max_tokens is required."""
        return None if isinstance(body.get("max_tokens"), int) else "max_tokens: Field required"

    def authorized(self, headers: Mapping[str, str], key: str) -> bool:
        """Whether the request carries `key` (x-api-key, or a bearer token)."""
        return headers.get("x-api-key") == key or headers.get("Authorization") == f"Bearer {key}"

    def choices(self, body: dict[str, Any]) -> int:
        """Always one answer."""
        return 1

    def body(self, answers: list[MockAnswer], *, rid: str, model: str) -> bytes:
        """A non-streamed response."""
        return orjson.dumps(message(answers[0], rid=rid, model=model))

    def events(
        self, answers: list[MockAnswer], body: dict[str, Any], *, rid: str, model: str
    ) -> list[bytes]:
        """A streamed response, event by event."""
        return stream_events(answers[0], rid=rid, model=model)

    def rate_headers(self, window: FixedWindow) -> dict[str, str]:
        """anthropic-ratelimit-* headers."""
        return window.anthropic_headers()

    def error(self, status: int, message: str) -> bytes:
        """An error body for an HTTP status."""
        return error_body(status, message)

    def rate_limited(self, refusal: Refusal) -> bytes:
        """The body of a 429 from the enforced limits."""
        return error_body(
            429, f"This request would exceed your organization's rate limit of {refusal.limit}."
        )

    def overloaded(self) -> bytes:
        """The body of a 529."""
        return error_body(529, "Overloaded")

    def context_error(self, tokens: int) -> bytes:
        """The body of a 400 for a prompt longer than the context."""
        return error_body(400, f"prompt is too long: {tokens} tokens > 8192 maximum")

    def error_in_200(self) -> bytes:
        """An error object sent with HTTP 200."""
        return error_body(500, "upstream failure")

    def malformed_events(self) -> list[bytes]:
        """A delta event whose data is not JSON."""
        return [b"event: content_block_delta\ndata: <html><body>502 Bad Gateway</body></html>\n\n"]

    def stream_error(self) -> bytes:
        """An `error` event arriving mid-stream."""
        error = {"type": "overloaded_error", "message": "Overloaded"}
        return _event("error", {"type": "error", "error": error})
