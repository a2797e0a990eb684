"""Complete (non-streamed) response bodies -> `Answer`, and the usage rule.

Pure functions over parsed JSON. The public entry points are re-exported by `batchrun.parse`;
the helpers without a leading underscore are shared with its stream accumulators.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from batchrun.answer import Answer, Usage
from batchrun.error_bodies import error_from_body
from batchrun.errors import MalformedResponse, ProviderError, RequestError
from batchrun.reasoning import REDACTED, separate

__all__ = [
    "anthropic_usage",
    "openai_usage",
    "parse_anthropic",
    "parse_openai",
    "parse_openai_choices",
]

NO_USAGE = Usage()


def _int(value: object) -> int | None:
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


def openai_usage(usage: object) -> Usage:
    """Usage from an OpenAI-style `usage` object; what is not reported stays None."""
    if not isinstance(usage, Mapping):
        return NO_USAGE
    prompt = _int(usage.get("prompt_tokens"))
    if prompt is None:
        prompt = _int(usage.get("input_tokens"))
    completion = _int(usage.get("completion_tokens"))
    if completion is None:
        completion = _int(usage.get("output_tokens"))
    details = usage.get("completion_tokens_details")
    reasoning = _int(details.get("reasoning_tokens")) if isinstance(details, Mapping) else None
    if reasoning is None:
        reasoning = _int(usage.get("reasoning_tokens"))
    details = usage.get("prompt_tokens_details")
    cached = _int(details.get("cached_tokens")) if isinstance(details, Mapping) else None
    if cached is None:
        cached = _int(usage.get("prompt_cache_hit_tokens"))  # DeepSeek
    total = _int(usage.get("total_tokens"))
    if total is None and prompt is not None and completion is not None:
        total = prompt + completion
    return Usage(prompt, completion, reasoning, cached, total)


def anthropic_usage(usage: object) -> Usage:
    """Usage from an Anthropic `usage` object: prompt = input + cache creation + cache read."""
    if not isinstance(usage, Mapping):
        return NO_USAGE
    parts = [
        _int(usage.get(key))
        for key in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    ]
    prompt = None if parts == [None, None, None] else sum(p for p in parts if p is not None)
    completion = _int(usage.get("output_tokens"))
    details = usage.get("output_tokens_details")
    reasoning = _int(details.get("thinking_tokens")) if isinstance(details, Mapping) else None
    total = prompt + completion if prompt is not None and completion is not None else None
    return Usage(prompt, completion, reasoning, parts[2], total)


def _openai_tool_calls(calls: object) -> list[dict[str, Any]] | None:
    if not isinstance(calls, list) or not calls:
        return None
    out = []
    for call in calls:
        if not isinstance(call, Mapping):
            continue
        function = call.get("function")
        if not isinstance(function, Mapping):
            function = {}
        arguments = function.get("arguments")
        if arguments is not None and not isinstance(arguments, str):
            arguments = orjson.dumps(arguments).decode()
        out.append(tool_call(call.get("id"), function.get("name"), arguments or ""))
    return out or None


def _text_parts(content: object) -> str | None:
    """Content given as a list of parts: the text parts, joined."""
    if isinstance(content, list):
        texts = [p.get("text") for p in content if isinstance(p, Mapping)]
        return "".join(t for t in texts if isinstance(t, str))
    return None


def choice_failed(choice: Mapping[str, Any], chunk: Mapping[str, Any]) -> RequestError:
    """The error of a choice that finished with `finish_reason: "error"` (OpenRouter)."""
    error = choice.get("error")
    found = error_from_body(None, {"error": error}) if error else None
    return found or ProviderError(f"finish_reason 'error' in {orjson.dumps(chunk)[:300]!r}")


def _openai_answer(choice: object, mode: str, usage: Usage, body: Mapping[str, Any]) -> Answer:
    if not isinstance(choice, Mapping):
        raise MalformedResponse("chat.completion choice is not an object")
    message = choice.get("message")
    if not isinstance(message, Mapping):
        raise MalformedResponse("chat.completion choice without a message")
    finish = choice.get("finish_reason")
    if finish == "error" or choice.get("error"):
        raise choice_failed(choice, body)
    content = message.get("content")
    if content is not None and not isinstance(content, str):
        content = _text_parts(content)
    if not content:
        refusal = message.get("refusal")
        content = refusal if isinstance(refusal, str) else content
    field = message.get("reasoning_content") or message.get("reasoning")
    text, reasoning = separate(content, field if isinstance(field, str) else None, mode)
    return Answer(
        content=text,
        reasoning=reasoning,
        tool_calls=_openai_tool_calls(message.get("tool_calls")),
        finish_reason=as_str(finish),
        usage=usage,
        response_id=as_str(body.get("id")),
        model=as_str(body.get("model")),
    )


def _openai_choices(body: object) -> tuple[Mapping[str, Any], list[Any]]:
    if not isinstance(body, Mapping):
        raise MalformedResponse(f"response is not a JSON object but {type(body).__name__}")
    raise_error(body)
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices:
        raise MalformedResponse("chat.completion without choices")
    return body, choices


def parse_openai(body: object, *, reasoning: str = "auto") -> Answer:
    """Parse a `chat.completion` body (its first choice) into an Answer."""
    body, choices = _openai_choices(body)
    return _openai_answer(choices[0], reasoning, openai_usage(body.get("usage")), body)


def parse_openai_choices(body: object, *, reasoning: str = "auto") -> list[Answer]:
    """Parse every choice of a `chat.completion` body (`n` > 1); usage on the first only."""
    body, choices = _openai_choices(body)
    usage = openai_usage(body.get("usage"))
    return [
        _openai_answer(choice, reasoning, usage if i == 0 else NO_USAGE, body)
        for i, choice in enumerate(choices)
    ]


def anthropic_answer(
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
    redacted = False
    for kind, text, extra in blocks:
        if kind == "text":
            texts.append(text)
        elif kind == "thinking":
            if text:
                thinking.append(text)
        elif kind == "redacted_thinking":
            redacted = True
        elif kind == "tool_use":
            calls.append(tool_call(extra.get("id"), extra.get("name"), text))
    field = "\n\n".join(thinking) or (REDACTED if redacted else None)
    content, reasoning = separate("".join(texts), field, mode)
    return Answer(
        content,
        reasoning,
        calls or None,
        as_str(stop_reason),
        usage,
        as_str(response_id),
        as_str(model),
    )


def block_of(block: Mapping[str, Any]) -> tuple[str, str, Any]:
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
    blocks = [block_of(block) for block in content if isinstance(block, Mapping)]
    return anthropic_answer(
        blocks,
        reasoning,
        body.get("stop_reason"),
        anthropic_usage(body.get("usage")),
        body.get("id"),
        body.get("model"),
    )
