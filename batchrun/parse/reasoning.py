"""The reasoning rule: one way to separate reasoning from the answer, for every provider.

With `parse.reasoning = "auto"`:

1. A reasoning field wins: OpenAI-style `reasoning_content` or `reasoning` (message or stream
   delta), else the readable entries of a `reasoning_details` array (`reasoning.text` and
   `reasoning.summary`; `reasoning.encrypted` has nothing to read), or Anthropic `thinking`
   blocks. `redacted_thinking` blocks hold no readable text: they give no reasoning.
2. Otherwise `<think>…</think>` is split out of the content. Only a closing `</think>` (the
   chat template opened the tag in the prompt): everything before it is reasoning. Only an
   opening `<think>` (the answer was cut off while thinking): everything after it is reasoning.
3. When a field and tags both exist, the field wins and the tagged text is still removed from
   the content.

The whitespace that separated reasoning from the answer is stripped (reasoning is stripped at
both ends, the answer at its start); an answer with no reasoning is left exactly as sent.
Empty text becomes None. Streams apply the same rule to the joined text, so tags split across
chunks are found.

With `parse.reasoning = "none"` nothing is extracted: content is exactly what the provider sent
as the answer text and reasoning is always None, fields included.
"""

from __future__ import annotations

from collections.abc import Mapping

OPEN = "<think>"
CLOSE = "</think>"
# What a `reasoning_details` entry of each readable type keeps its text in (OpenRouter's shape).
_DETAIL_TEXT = {"reasoning.text": "text", "reasoning.summary": "summary"}


def details_text(details: object) -> str | None:
    """The readable text of a `reasoning_details` array, joined; None when it has none."""
    if not isinstance(details, list):
        return None
    texts = []
    for entry in details:
        if isinstance(entry, Mapping):
            key = _DETAIL_TEXT.get(entry.get("type"))  # type: ignore[arg-type]
            value = entry.get(key) if key is not None else None
            if isinstance(value, str) and value:
                texts.append(value)
    return "".join(texts) or None


def _text(value: str) -> str | None:
    return value if value else None


def split_think(text: str) -> tuple[str | None, str | None]:
    """Split `<think>…</think>` out of text: (content, reasoning), each None when empty."""
    close = text.find(CLOSE)
    if close < 0:
        start = text.find(OPEN)
        if start < 0:
            return _text(text), None
        return _text(text[:start].rstrip()), _text(text[start + len(OPEN) :].strip())
    start = text.find(OPEN, 0, close)
    if start < 0:
        before, inner = "", text[:close]
    else:
        before, inner = text[:start].rstrip(), text[start + len(OPEN) : close]
    after = text[close + len(CLOSE) :].lstrip()
    content = f"{before}\n\n{after}" if before and after else before or after
    return _text(content), _text(inner.strip())


def separate(
    content: str | None, field: str | None, mode: str = "auto"
) -> tuple[str | None, str | None]:
    """Apply the reasoning rule to an answer text and a reasoning field: (content, reasoning)."""
    if mode == "none":
        return (content or None), None
    reasoning = (field.strip() or None) if field else None
    if not content:
        return None, reasoning
    if CLOSE in content or OPEN in content:
        content, tagged = split_think(content)
        return content, reasoning if reasoning is not None else tagged
    if reasoning is not None:
        content = content.lstrip() or None
    return content, reasoning
