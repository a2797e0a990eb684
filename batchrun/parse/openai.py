"""OpenAI chat completions -> `Answer`: a whole `chat.completion` body, or its chunk stream.

Tool calls come out in OpenAI's shape, `arguments` a JSON string ("{}" when none was sent). A
refusal (`message.refusal`) goes to `Answer.refusal`, never into the content. Only the first
choice is read: the job loader refuses `n` > 1 in favour of `samples`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from batchrun.errors import IncompleteStream, MalformedResponse, ProviderError, RequestError
from batchrun.parse.answer import Answer
from batchrun.parse.common import as_str, load_event, raise_error, text_of, tool_call
from batchrun.parse.error_bodies import error_from_body
from batchrun.parse.reasoning import details_text, separate
from batchrun.parse.sse import SSEEvent
from batchrun.parse.usage import openai_usage


def parse_openai(body: object, *, reasoning: str = "auto") -> Answer:
    """Parse a `chat.completion` body (its first choice) into an Answer."""
    if not isinstance(body, Mapping):
        raise MalformedResponse(f"response is not a JSON object but {type(body).__name__}")
    raise_error(body)
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices:
        raise MalformedResponse("chat.completion without choices")
    choice = choices[0]
    if not isinstance(choice, Mapping):
        raise MalformedResponse("chat.completion choice is not an object")
    message = choice.get("message")
    if not isinstance(message, Mapping):
        raise MalformedResponse("chat.completion choice without a message")
    finish = choice.get("finish_reason")
    if finish == "error" or choice.get("error"):
        raise _choice_failed(choice, body)
    content = text_of(message.get("content"))
    refusal = message.get("refusal")
    field = message.get("reasoning_content") or message.get("reasoning")
    if not isinstance(field, str) or not field:
        field = details_text(message.get("reasoning_details"))
    text, thought = separate(content, field, reasoning)
    return Answer(
        content=text,
        reasoning=thought,
        tool_calls=_tool_calls(message.get("tool_calls")),
        finish_reason=as_str(finish),
        usage=openai_usage(body.get("usage")),
        response_id=as_str(body.get("id")),
        model=as_str(body.get("model")),
        refusal=refusal if isinstance(refusal, str) and refusal else None,
    )


def _tool_calls(calls: object) -> list[dict[str, Any]] | None:
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


def _choice_failed(choice: Mapping[str, Any], chunk: Mapping[str, Any]) -> RequestError:
    """The error of a choice that finished with `finish_reason: "error"` (OpenRouter)."""
    error = choice.get("error")
    found = error_from_body(None, {"error": error}) if error else None
    return found or ProviderError(f"finish_reason 'error' in {orjson.dumps(chunk)[:300]!r}")


class _ToolParts:
    __slots__ = ("arguments", "id", "name")

    def __init__(self) -> None:
        self.id: str | None = None
        self.name: str | None = None
        self.arguments: list[str] = []


class OpenAIStream:
    """Accumulates `chat.completion.chunk` events; complete at `data: [DONE]`."""

    __slots__ = ("_content", "_details", "_done", "_finish", "_id", "_mode", "_model",
                 "_reasoning", "_refusal", "_seen_choice", "_tools", "_usage")

    def __init__(self, *, reasoning: str = "auto") -> None:
        self._mode = reasoning
        self._done = False
        self._seen_choice = False
        self._content: list[str] = []
        self._reasoning: list[str] = []
        self._details: list[str] = []  # reasoning_details text: used when no field came
        self._refusal: list[str] = []
        self._tools: dict[int, _ToolParts] = {}
        self._finish: str | None = None
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
            if choice.get("index") or 0:
                continue  # another choice: `n` > 1 is refused, so none is expected
            self._seen_choice = True
            delta = choice.get("delta")
            if delta:
                self._take_delta(delta)
            finish = choice.get("finish_reason")
            if finish:
                if finish == "error":
                    raise _choice_failed(choice, chunk)
                self._finish = finish

    def _take_delta(self, delta: dict[str, Any]) -> None:
        text = delta.get("content")
        if text and isinstance(text, str):
            self._content.append(text)
        thought = delta.get("reasoning_content") or delta.get("reasoning")
        if thought and isinstance(thought, str):
            self._reasoning.append(thought)
        details = details_text(delta.get("reasoning_details"))
        if details:
            self._details.append(details)
        refusal = delta.get("refusal")
        if refusal and isinstance(refusal, str):
            self._refusal.append(refusal)
        calls = delta.get("tool_calls")
        if calls:
            self._take_tools(calls)

    def _take_tools(self, calls: list[Any]) -> None:
        tools = self._tools
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

    def finish(self) -> Answer:
        """The answer; IncompleteStream if `[DONE]` never came."""
        if not self._done:
            raise IncompleteStream("stream ended before data: [DONE]")
        if not self._seen_choice:
            raise MalformedResponse("stream completed without any choice")
        field = "".join(self._reasoning) or "".join(self._details)
        text, reasoning = separate("".join(self._content), field, self._mode)
        calls = [
            tool_call(t.id, t.name, "".join(t.arguments)) for _, t in sorted(self._tools.items())
        ]
        return Answer(text, reasoning, calls or None, self._finish, openai_usage(self._usage),
                      self._id, self._model, "".join(self._refusal) or None)
