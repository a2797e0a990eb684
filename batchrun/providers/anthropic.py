"""Anthropic Messages: POST {base_url}/messages.

The canonical (chat-shaped) body is translated where the Messages API names a thing differently:
system messages go to the top-level `system`; `image_url` parts become image blocks (a base64
source for data URLs, a url source for http(s) URLs); chat `tools`, `tool_choice` and
`parallel_tool_calls` become Anthropic tools and tool choice; `stop` becomes `stop_sequences`;
a `response_format` JSON schema becomes `output_config.format` (Anthropic's structured outputs,
whose answer is the JSON text, so `content` and `[parse] json` work unchanged). Only what is
recognisably chat-shaped is translated: a body already in Anthropic's shapes passes through as
it is, and so does every other key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from batchrun.parse import Answer, AnthropicStream, parse_anthropic
from batchrun.parse.common import text_of
from batchrun.providers.base import StreamParser, WireFormat

ANTHROPIC_VERSION = "2023-06-01"
_TOOL_CHOICE = {"auto": {"type": "auto"}, "required": {"type": "any"}, "none": {"type": "none"}}


def refused_params(params: Mapping[str, Any]) -> str | None:
    """What of the canonical params the Messages API cannot be sent, and what to do instead."""
    response_format = params.get("response_format")
    if isinstance(response_format, Mapping):
        kind = response_format.get("type")
        if kind == "json_object":
            return (
                'params.response_format = { type = "json_object" } has no Anthropic equivalent '
                "(its structured outputs need a schema): give a JSON schema, response_format = "
                '{ type = "json_schema", json_schema = { name = "...", schema = {...} } }, or ask '
                "for JSON in the prompt and set [parse] json = true"
            )
        if kind == "json_schema" and _schema(response_format) is None:
            return (
                "params.response_format.json_schema needs a schema table, "
                '{ name = "...", schema = {...} }'
            )
    return None


def _schema(response_format: Mapping[str, Any]) -> Any:
    spec = response_format.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, Mapping) else None
    return schema if isinstance(schema, Mapping) else None


def _part(part: Any) -> Any:
    """A chat `image_url` part as an Anthropic image block; any other part as it is."""
    if not isinstance(part, Mapping) or part.get("type") != "image_url":
        return part
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, Mapping) else image
    if not isinstance(url, str):
        return part
    if url.startswith("data:"):
        header, _, data = url.partition(",")
        media_type = header[len("data:"):].partition(";")[0]
        return {"type": "image", "source": {"type": "base64", "media_type": media_type,
                                            "data": data}}
    if url.startswith(("http://", "https://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    return part


def _message(message: Any) -> Any:
    if isinstance(message, Mapping) and isinstance(message.get("content"), list):
        return {**message, "content": [_part(part) for part in message["content"]]}
    return message


def _tool(tool: Any) -> Any:
    """A chat tool `{"type": "function", "function": {...}}` as an Anthropic tool."""
    if not isinstance(tool, Mapping) or tool.get("type") != "function":
        return tool
    function = tool.get("function")
    if not isinstance(function, Mapping):
        return tool
    out: dict[str, Any] = {"name": function.get("name")}
    if function.get("description") is not None:
        out["description"] = function["description"]
    # Anthropic requires a schema; a chat tool without parameters takes no arguments.
    out["input_schema"] = function.get("parameters") or {"type": "object", "properties": {}}
    if function.get("strict") is not None:
        out["strict"] = function["strict"]
    return out


def _tool_choice(choice: Any) -> Any:
    if isinstance(choice, str):
        return dict(_TOOL_CHOICE[choice]) if choice in _TOOL_CHOICE else choice
    if isinstance(choice, Mapping) and choice.get("type") == "function":
        function = choice.get("function")
        if isinstance(function, Mapping):
            return {"type": "tool", "name": function.get("name")}
    return choice


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
        wire = dict(body)
        messages = body.get("messages") or []
        system = [text_of(m.get("content")) or "" for m in messages if m.get("role") == "system"]
        if "messages" in body:
            wire["messages"] = [_message(m) for m in messages if m.get("role") != "system"]
        if system:
            # Anthropic takes the system prompt as a top-level field, not as a message.
            given = wire.get("system")
            wire["system"] = "\n\n".join([*([given] if isinstance(given, str) else []), *system])
        if isinstance(wire.get("tools"), list):
            wire["tools"] = [_tool(tool) for tool in wire["tools"]]
        if "tool_choice" in wire:
            wire["tool_choice"] = _tool_choice(wire["tool_choice"])
        _parallel_tool_calls(wire)
        _stop(wire)
        _response_format(wire)
        return wire

    def parse_body(self, data: Any, *, reasoning: str) -> Answer:
        return parse_anthropic(data, reasoning=reasoning)

    def stream_parser(self, *, reasoning: str) -> StreamParser:
        return AnthropicStream(reasoning=reasoning)


def _parallel_tool_calls(wire: dict[str, Any]) -> None:
    if "parallel_tool_calls" not in wire:
        return
    if wire.pop("parallel_tool_calls") is False:
        # Anthropic says it the other way round, inside tool_choice ("none" cannot carry it).
        choice = wire.get("tool_choice", {"type": "auto"})
        if isinstance(choice, Mapping) and choice.get("type") in ("auto", "any", "tool"):
            wire["tool_choice"] = {**choice, "disable_parallel_tool_use": True}


def _stop(wire: dict[str, Any]) -> None:
    if "stop" not in wire:
        return
    stop = wire.pop("stop")
    sequences = [stop] if isinstance(stop, str) else list(stop or ())
    given = wire.get("stop_sequences")
    merged = [*(given if isinstance(given, list) else ()), *sequences]
    if merged:
        wire["stop_sequences"] = list(dict.fromkeys(merged))


def _response_format(wire: dict[str, Any]) -> None:
    response_format = wire.get("response_format")
    if not isinstance(response_format, Mapping):
        return
    kind = response_format.get("type")
    if kind == "text":  # the default: nothing to say
        del wire["response_format"]
    elif kind == "json_schema" and (schema := _schema(response_format)) is not None:
        del wire["response_format"]
        given = wire.get("output_config")
        config = dict(given) if isinstance(given, Mapping) else {}
        config["format"] = {"type": "json_schema", "schema": schema}
        wire["output_config"] = config
