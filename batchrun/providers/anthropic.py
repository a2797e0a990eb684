"""Anthropic Messages: POST {base_url}/messages."""

from __future__ import annotations

from typing import Any

from batchrun.parse import Answer, AnthropicStream, parse_anthropic
from batchrun.parse.common import text_of
from batchrun.providers.base import StreamParser, WireFormat

ANTHROPIC_VERSION = "2023-06-01"


class AnthropicFormat(WireFormat):
    """The Anthropic Messages format: system on top, max_tokens required, content blocks."""

    name = "anthropic"
    path = "/messages"

    def auth_headers(self, api_key: str | None) -> dict[str, str]:
        headers = {"anthropic-version": ANTHROPIC_VERSION}
        if api_key:
            headers["x-api-key"] = api_key
        return headers

    def wire_body(self, body: dict[str, Any]) -> dict[str, Any]:
        messages = body.get("messages") or []
        system = [text_of(m.get("content")) or "" for m in messages if m.get("role") == "system"]
        if not system:
            return body
        # Anthropic takes the system prompt as a top-level field, not as a message.
        wire = {**body, "messages": [m for m in messages if m.get("role") != "system"]}
        given = wire.get("system")
        wire["system"] = "\n\n".join([*([given] if isinstance(given, str) else []), *system])
        return wire

    def parse_body(self, data: Any, *, reasoning: str) -> Answer:
        return parse_anthropic(data, reasoning=reasoning)

    def stream_parser(self, *, reasoning: str) -> StreamParser:
        return AnthropicStream(reasoning=reasoning)
