"""Small readers shared by the body and stream parsers of every format."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from batchrun.errors import MalformedResponse
from batchrun.parse.error_bodies import error_from_body


def as_int(value: object) -> int | None:
    """A JSON count as an int (whole floats too); anything else is None."""
    if type(value) is int:
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def as_str(value: object) -> str | None:
    """A JSON scalar as text (ids are sometimes numbers); None stays None."""
    if value is None or isinstance(value, str):
        return value
    return str(value)


def load_event(data: str) -> dict[str, Any]:
    """One stream event's JSON object; MalformedResponse if it is not one."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise MalformedResponse(f"stream event is not JSON: {data[:200]!r}") from exc
    if not isinstance(value, dict):
        raise MalformedResponse(f"stream event is not a JSON object: {data[:200]!r}")
    return value


def raise_error(body: Mapping[str, Any]) -> None:
    """Raise the error an error object in `body` describes, if there is one."""
    error = error_from_body(None, body)
    if error is not None:
        raise error


def tool_call(call_id: object, name: object, arguments: str) -> dict[str, Any]:
    """A tool call in OpenAI's shape; missing arguments become "{}"."""
    return {
        "id": as_str(call_id),
        "type": "function",
        "function": {"name": as_str(name), "arguments": arguments or "{}"},
    }


def text_of(content: object) -> str | None:
    """Message content as text: a string as it is, a list of parts as their text parts joined."""
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [p.get("text") for p in content if isinstance(p, Mapping)]
        return "".join(t for t in texts if isinstance(t, str))
    return str(content)
