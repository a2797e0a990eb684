"""The mock provider's "model": a deterministic answer, reasoning and usage for any request body.

Pure functions over the request body, shared by the server (`batchrun.mock`) and by tests that
check results against what the mock must have said.

The label comes from sha256(model + "\\n" + last user text). With a `seed` in the body and a
temperature above 0 (absent counts as 1, the APIs' default), a fifth of the seeds move the answer
to another label, so repeated samples agree most of the time but not always.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

LABELS = ("positive", "negative", "neutral")
THINK_DIRECTIVE = "[[mock:think]]"
# Fault kinds a directive may name besides an HTTP status number.
FAULT_KINDS = frozenset(
    {"drop", "truncate", "malformed", "error200", "overloaded", "context", "slow", "hang"}
)
_DIRECTIVE = re.compile(r"\[\[mock:([^\]]*)\]\]")
_VARIED_SHARE = 52  # out of 256: about one seed in five changes the label


@dataclass(frozen=True, slots=True)
class Directives:
    """What `[[mock:...]]` markers in the last user message ask of the mock."""

    faults: tuple[tuple[str, int | None], ...] = ()  # (kind, attempts or None = every attempt)
    sleep_ms: float = 0.0
    think: bool = False

    def fault_for(self, attempt: int) -> str | None:
        """The fault for the 1-based `attempt` of a request: the faults apply in order."""
        done = 0
        for kind, times in self.faults:
            if times is None:
                return kind
            done += times
            if attempt <= done:
                return kind
        return None


NO_DIRECTIVES = Directives()


def parse_directives(text: str) -> Directives:
    """Read `[[mock:fail=503x2]]`, `[[mock:sleep_ms=500]]`, `[[mock:think]]`; ValueError if bad."""
    if "[[mock:" not in text:
        return NO_DIRECTIVES
    faults: list[tuple[str, int | None]] = []
    sleep_ms = 0.0
    think = False
    for raw in _DIRECTIVE.findall(text):
        name, _, value = raw.partition("=")
        if name == "think" and not value:
            think = True
        elif name == "sleep_ms":
            sleep_ms += float(value)
        elif name == "fail":
            faults.append(_parse_fault(value))
        else:
            raise ValueError(f"unknown mock directive [[mock:{raw}]]")
    return Directives(tuple(faults), sleep_ms, think)


def _parse_fault(value: str) -> tuple[str, int | None]:
    kind, times = value, None
    head, sep, tail = value.rpartition("x")
    if sep and tail.isdigit():  # "context" ends in "t", so it is never read as a count
        kind, times = head, int(tail)
    if kind in FAULT_KINDS or (kind.isdigit() and 100 <= int(kind) <= 599):
        return kind, times
    raise ValueError(f"unknown mock fault {value!r} in [[mock:fail=...]]")


@dataclass(frozen=True, slots=True)
class MockAnswer:
    """One answer of the mock, with max_tokens already applied."""

    label: str
    digest: str
    content: str | None  # None when the answer is a tool call
    reasoning: str | None
    reasoning_cut: bool  # max_tokens ran out inside the reasoning
    tool_name: str | None
    tool_arguments: str | None  # JSON text
    finish: str  # "stop" | "length" | "tool_calls"
    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens


def request_key(body: Mapping[str, Any]) -> str:
    """sha256 of the body's canonical JSON (sorted keys): one key per distinct request."""
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


def content_text(content: Any) -> str:
    """The text of a message's content: a string, or its text parts joined by newlines."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def messages_of(body: Mapping[str, Any]) -> list[Any]:
    """The messages of a chat body, or the `input` of a Responses body (a string is one)."""
    messages = body.get("messages", body.get("input"))
    if isinstance(messages, str):
        return [{"role": "user", "content": messages}]
    return messages if isinstance(messages, list) else []


def last_user_text(body: Mapping[str, Any]) -> str:
    """The text of the last user message, or "" when there is none."""
    messages = messages_of(body)
    if messages:
        for message in reversed(messages):
            if isinstance(message, dict) and message.get("role") == "user":
                return content_text(message.get("content"))
    return ""


def count_tokens(text: str) -> int:
    """The mock's tokenizer: four characters a token."""
    return (len(text) + 3) // 4


def prompt_tokens(body: Mapping[str, Any]) -> int:
    """About len(text)/4 plus 4 a message, the system prompt counted as one; at least 1."""
    messages = messages_of(body)
    chars = sum(len(content_text(m.get("content"))) for m in messages if isinstance(m, dict))
    count = len(messages)
    system = body.get("system")  # Anthropic's top-level system prompt
    if system:
        chars += len(content_text(system))
        count += 1
    return max(1, chars // 4 + 4 * count)


def wants_reasoning(body: Mapping[str, Any], text: str, mode: str) -> bool:
    """Whether the answer carries reasoning: the body's switches win, then the mode or directive."""
    if body.get("enable_thinking") is False:
        return False
    thinking = body.get("thinking")
    if isinstance(thinking, dict):
        kind = thinking.get("type")
        if kind == "disabled":
            return False
        if kind in ("enabled", "adaptive"):
            return True
    return mode != "none" or THINK_DIRECTIVE in text


def wants_json(body: Mapping[str, Any], text: str) -> bool:
    """A JSON answer when response_format asks for one or the prompt says JSON."""
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema"):
        return True
    return "JSON" in text


def answer_digest(body: Mapping[str, Any], text: str, index: int = 0) -> tuple[str, str]:
    """(digest, label) of the answer; `index` is the choice number when n > 1."""
    model = body.get("model")
    base = hashlib.sha256(f"{model if isinstance(model, str) else ''}\n{text}".encode()).hexdigest()
    base_label = int(base[:8], 16) % 3
    seed = body.get("seed")
    temperature = body.get("temperature", 1.0)
    if (
        (seed is None and index == 0)
        or not isinstance(temperature, int | float)
        or temperature <= 0
    ):
        return base, LABELS[base_label]
    varied = hashlib.sha256(f"{base}\n{seed}:{index}".encode()).hexdigest()
    if int(varied[:2], 16) >= _VARIED_SHARE:
        return base, LABELS[base_label]
    return varied, LABELS[(base_label + 1 + int(varied[2:4], 16) % 2) % 3]


def _tool_name(body: Mapping[str, Any]) -> str | None:
    tools = body.get("tools")
    if not isinstance(tools, list) or not tools:
        return None
    choice = body.get("tool_choice")
    if choice == "none" or (isinstance(choice, dict) and choice.get("type") == "none"):
        return None
    if isinstance(choice, dict):  # a named tool: OpenAI {"function": {"name"}}, Anthropic {"name"}
        named = choice.get("name") or (choice.get("function") or {}).get("name")
        if isinstance(named, str):
            return named
    first = tools[0]
    if isinstance(first, dict):
        name = first.get("name") or (first.get("function") or {}).get("name")
        if isinstance(name, str):
            return name
    return "tool"


def make_answer(
    body: Mapping[str, Any], text: str, *, reasoning: bool, index: int = 0
) -> MockAnswer:
    """The answer to `body` whose last user text is `text`."""
    digest, label = answer_digest(body, text, index)
    confidence = f"0.{50 + int(digest[8:10], 16) % 50}"
    thought = (
        f"The message has {len(text.split())} words and reads as {label}. "
        f"Checking once more ({digest[10:16]}), the answer is {label}."
        if reasoning
        else None
    )
    tool = _tool_name(body)
    arguments = None
    if tool is not None:
        arguments = f'{{"label": "{label}", "confidence": {confidence}}}'
        answer: str | None = None
        finish = "tool_calls"
        answer_tokens = count_tokens(arguments) + 8
    else:
        if wants_json(body, text):
            answer = f'{{"label": "{label}", "confidence": {confidence}}}'
        else:
            answer = f"{label} ({digest[:10]})"
        finish = "stop"
        answer_tokens = count_tokens(answer)
    thought_tokens = count_tokens(thought) if thought is not None else 0
    cut = False
    budget = body.get("max_completion_tokens", body.get("max_tokens",
                                                        body.get("max_output_tokens")))
    if (
        answer is not None
        and isinstance(budget, int)
        and budget > 0
        and thought_tokens + answer_tokens > budget
    ):
        finish = "length"
        if thought is not None and thought_tokens >= budget:
            thought, thought_tokens, cut = thought[: budget * 4], budget, True
            answer, answer_tokens = "", 0
        else:
            answer = answer[: (budget - thought_tokens) * 4]
            answer_tokens = count_tokens(answer)
    return MockAnswer(
        label=label,
        digest=digest,
        content=answer,
        reasoning=thought,
        reasoning_cut=cut,
        tool_name=tool,
        tool_arguments=arguments,
        finish=finish,
        prompt_tokens=prompt_tokens(body),
        completion_tokens=max(1, thought_tokens + answer_tokens),
        reasoning_tokens=thought_tokens,
    )
