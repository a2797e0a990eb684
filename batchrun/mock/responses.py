"""Responses-API wire of the mock provider: `response` objects, typed SSE events, error bodies.

Shaped as OpenAI documents `POST /v1/responses`, closely enough for the official SDK's
`client.responses.create` (streamed and not) to accept it: reasoning as a `reasoning` item with
a summary, the answer as a `message` item with `output_text`, a tool call as a `function_call`
item; `max_output_tokens` running out gives `status = "incomplete"`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import orjson

from batchrun.mock.answer import MockAnswer
from batchrun.mock.limits import FixedWindow, Refusal
from batchrun.mock.openai import error_body
from batchrun.mock.shapes import pieces


def _usage(a: MockAnswer) -> dict[str, Any]:
    return {
        "input_tokens": a.prompt_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": a.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": a.reasoning_tokens},
        "total_tokens": a.total_tokens,
    }


def _items(a: MockAnswer) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    if a.reasoning is not None:
        items.append({"id": f"rs_{a.digest[:24]}", "type": "reasoning",
                      "summary": [{"type": "summary_text", "text": a.reasoning}]})
    if a.tool_name is not None:
        items.append({"id": f"fc_{a.digest[:24]}", "type": "function_call", "status": "completed",
                      "call_id": f"call_{a.digest[:24]}", "name": a.tool_name,
                      "arguments": a.tool_arguments or "{}"})
    else:
        status = "incomplete" if a.finish == "length" else "completed"
        items.append({"id": f"msg_{a.digest[:24]}", "type": "message", "role": "assistant",
                      "status": status, "content": [
                          {"type": "output_text", "text": a.content or "", "annotations": []}]})
    return items


def response(a: MockAnswer | None, *, rid: str, model: str, status: str) -> dict[str, Any]:
    """A `response` object; `a` None for the empty one that opens a stream."""
    incomplete = a is not None and a.finish == "length"
    return {
        "id": f"resp_{rid}",
        "object": "response",
        "created_at": int(time.time()),
        "status": "incomplete" if incomplete else status,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
        "model": model,
        "output": _items(a) if a is not None else [],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "store": False,
        "usage": _usage(a) if a is not None else None,
    }


def _event(kind: str, seq: int, **data: Any) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(
        {"type": kind, "sequence_number": seq, **data}) + b"\n\n"


def stream_events(a: MockAnswer, *, rid: str, model: str) -> list[bytes]:
    """The typed events of a streamed response, ending with response.completed."""
    events = [_event("response.created", 0,
                     response=response(None, rid=rid, model=model, status="in_progress"))]
    final = response(a, rid=rid, model=model, status="completed")
    for index, item in enumerate(final["output"]):
        seq = len(events)
        if item["type"] == "reasoning":
            events.append(_event("response.output_item.added", seq, output_index=index,
                                 item={**item, "summary": []}))
            where = {"item_id": item["id"], "output_index": index, "summary_index": 0}
            events.append(_event("response.reasoning_summary_part.added", len(events), **where,
                                 part={"type": "summary_text", "text": ""}))
            for piece in pieces(a.reasoning or ""):
                events.append(_event("response.reasoning_summary_text.delta", len(events),
                                     **where, delta=piece))
            events.append(_event("response.reasoning_summary_text.done", len(events), **where,
                                 text=a.reasoning or ""))
            events.append(_event("response.reasoning_summary_part.done", len(events), **where,
                                 part=item["summary"][0]))
        elif item["type"] == "function_call":
            events.append(_event("response.output_item.added", seq, output_index=index,
                                 item={**item, "arguments": "", "status": "in_progress"}))
            events.append(_event("response.function_call_arguments.delta", len(events),
                                 item_id=item["id"], output_index=index,
                                 delta=item["arguments"]))
            events.append(_event("response.function_call_arguments.done", len(events),
                                 item_id=item["id"], output_index=index,
                                 arguments=item["arguments"]))
        else:
            events.append(_event("response.output_item.added", seq, output_index=index,
                                 item={**item, "content": [], "status": "in_progress"}))
            where = {"item_id": item["id"], "output_index": index, "content_index": 0}
            events.append(_event("response.content_part.added", len(events), **where,
                                 part={"type": "output_text", "text": "", "annotations": []}))
            for piece in pieces(a.content or ""):
                events.append(_event("response.output_text.delta", len(events), **where,
                                     delta=piece, logprobs=[]))
            events.append(_event("response.output_text.done", len(events), **where,
                                 text=a.content or "", logprobs=[]))
            events.append(_event("response.content_part.done", len(events), **where,
                                 part=item["content"][0]))
        events.append(_event("response.output_item.done", len(events), output_index=index,
                             item=item))
    end = "response.incomplete" if final["status"] == "incomplete" else "response.completed"
    events.append(_event(end, len(events), response=final))
    return events


class ResponsesWire:
    """The Responses API format, as the server uses it."""

    __slots__ = ()

    def validate(self, body: dict[str, Any]) -> str | None:
        """What makes the body unacceptable, or None."""
        if "messages" in body:
            return "messages: unknown parameter; the Responses API takes input"
        return None

    def authorized(self, headers: Mapping[str, str], key: str) -> bool:
        """Whether the request carries `key` as a bearer token."""
        return headers.get("Authorization") == f"Bearer {key}"

    def choices(self, body: dict[str, Any]) -> int:
        """Always one answer."""
        return 1

    def body(self, answers: list[MockAnswer], *, rid: str, model: str) -> bytes:
        """A non-streamed response."""
        return orjson.dumps(response(answers[0], rid=rid, model=model, status="completed"))

    def events(
        self, answers: list[MockAnswer], body: dict[str, Any], *, rid: str, model: str
    ) -> list[bytes]:
        """A streamed response, event by event."""
        return stream_events(answers[0], rid=rid, model=model)

    def rate_headers(self, window: FixedWindow) -> dict[str, str]:
        """x-ratelimit-* headers, as OpenAI sends them on every endpoint."""
        return window.openai_headers()

    def error(self, status: int, message: str) -> bytes:
        """An error body for an HTTP status."""
        return error_body(status, message)

    def rate_limited(self, refusal: Refusal) -> bytes:
        """The body of a 429 from the enforced limits."""
        return error_body(429, f"Rate limit reached for {refusal.limit}")

    def overloaded(self) -> bytes:
        """The body of a 529."""
        return error_body(529, "The server is overloaded", kind="overloaded_error")

    def context_error(self, tokens: int) -> bytes:
        """The body of a 400 for a prompt longer than the context."""
        return error_body(400, f"Your input exceeds the context window: {tokens} tokens",
                          code="context_length_exceeded")

    def error_in_200(self) -> bytes:
        """A failed response sent with HTTP 200."""
        failed = {"id": "resp_failed", "object": "response", "status": "failed", "output": [],
                  "error": {"code": "server_error", "message": "upstream failure"}}
        return orjson.dumps(failed)

    def malformed_events(self) -> list[bytes]:
        """A delta event whose data is not JSON."""
        return [b"event: response.output_text.delta\ndata: <html>502 Bad Gateway</html>\n\n"]

    def stream_error(self) -> bytes:
        """An `error` event arriving mid-stream."""
        return _event("error", 99, code="server_error", message="upstream failure", param=None)
