"""OpenAI Responses API: POST {base_url}/responses.

The canonical (chat-shaped) body is translated: `messages` go as `input` (text and image parts
renamed to `input_text` / `input_image`), `max_tokens` as
`max_output_tokens`, chat-style `tools`, `tool_choice` and `response_format` into their
Responses shapes, and `store` is false unless the params say otherwise (a batch run should not
leave a stored copy of every answer on the provider). Everything else passes through as it is.

The Responses API has no stop sequences, so a variant whose params set `stop` is refused when the
job loads (`refused_params`): dropping it would quietly send a different request, longer answers
at a higher cost, than the same variant on a chat-completions provider.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from batchrun.parse import Answer
from batchrun.parse.responses import ResponsesStream, parse_responses
from batchrun.providers.base import StreamParser, WireFormat, bearer


def refused_params(params: Mapping[str, Any]) -> str | None:
    """What of the canonical params the Responses API cannot be sent, and what to do instead."""
    if "stop" in params:
        return (
            'params.stop cannot be sent: the Responses API has no stop sequences; drop it from '
            'this variant, or use a provider with api = "openai" (chat completions)'
        )
    return None


def _part(part: Any, role: object) -> Any:
    """A chat content part as a Responses input part (text and image_url parts are renamed)."""
    if not isinstance(part, Mapping):
        return part
    kind = part.get("type")
    if kind == "text":
        return {"type": "output_text" if role == "assistant" else "input_text",
                "text": part.get("text", "")}
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, Mapping) else image
        out: dict[str, Any] = {"type": "input_image", "image_url": url}
        if isinstance(image, Mapping) and image.get("detail"):
            out["detail"] = image["detail"]
        return out
    return part


def _message(message: Any) -> Any:
    if isinstance(message, Mapping) and isinstance(message.get("content"), list):
        role = message.get("role")
        return {**message, "content": [_part(part, role) for part in message["content"]]}
    return message


def _tool(tool: Any) -> Any:
    """A chat tool `{"type": "function", "function": {...}}` as a Responses tool (flat)."""
    if isinstance(tool, Mapping) and tool.get("type") == "function":
        function = tool.get("function")
        if isinstance(function, Mapping):
            return {"type": "function", **function}
    return tool


def _tool_choice(choice: Any) -> Any:
    if isinstance(choice, Mapping) and isinstance(choice.get("function"), Mapping):
        return {"type": "function", "name": choice["function"].get("name")}
    return choice


def _text_format(response_format: Any) -> Any:
    """Chat `response_format` as the Responses `text.format`."""
    if not isinstance(response_format, Mapping):
        return None
    if response_format.get("type") == "json_schema":
        schema = response_format.get("json_schema")
        if isinstance(schema, Mapping):
            return {"type": "json_schema", **schema}
    return dict(response_format)


class ResponsesFormat(WireFormat):
    """The OpenAI Responses API (also served by vLLM, OpenRouter, xAI, Groq and LiteLLM)."""

    name = "responses"
    path = "/responses"

    def auth_headers(self, api_key: str | None) -> dict[str, str]:
        return bearer(api_key)

    def wire_body(self, body: dict[str, Any]) -> dict[str, Any]:
        wire = {key: value for key, value in body.items()
                if key not in ("messages", "max_tokens", "max_completion_tokens",
                               "response_format", "stream_options")}
        wire["input"] = [_message(m) for m in body.get("messages") or []]
        limit = body.get("max_tokens", body.get("max_completion_tokens"))
        if limit is not None and "max_output_tokens" not in wire:
            wire["max_output_tokens"] = limit
        wire.setdefault("store", False)
        if isinstance(wire.get("tools"), list):
            wire["tools"] = [_tool(tool) for tool in wire["tools"]]
        if "tool_choice" in wire:
            wire["tool_choice"] = _tool_choice(wire["tool_choice"])
        text_format = _text_format(body.get("response_format"))
        if text_format is not None:
            wire["text"] = {**(wire.get("text") or {}), "format": text_format}
        return wire

    def parse_body(self, data: Any, *, reasoning: str) -> Answer:
        return parse_responses(data, reasoning=reasoning)

    def stream_parser(self, *, reasoning: str) -> StreamParser:
        return ResponsesStream(reasoning=reasoning)
