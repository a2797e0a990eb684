"""Keeping the API key out of everything a provider sends back: answers, raw bodies, errors.

A provider (or a model) may echo the key it was sent, whole or in pieces: an error page that
quotes the Authorization header, a body cut off in the middle of the key, a JSON string that
writes it with escapes (`\\u0073k-...`). `Redactor` replaces, with `***`:

- every run of at least `PIECE` characters that matches the key at some alignment (the whole
  key, or a piece of it: what is left when a text is cut);
- a piece of at least `EDGE` characters at either end of the text that begins or ends the key:
  what a cut leaves at the end of a text (and a cut at the front at its start);
- the same in the text's JSON escapes decoded, when that is where the key shows.

A key shorter than `PIECE` is only ever replaced whole: pieces of it would match ordinary text.
`Redactor.answer` does this to every text field of an answer and to its raw body (one cheap
search over all of them first, since an answer almost never holds the key); `preview` to error
text before and after it is cut.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import orjson

from batchrun.parse import Answer

MASK = "***"
PIECE = 12
EDGE = 6
# Every run of PIECE key characters contains one of the key's aligned CHUNK-character chunks
# (PIECE >= 2 * CHUNK), so searching for those few chunks finds every run, and finds nothing in
# the common case at the cost of a handful of substring searches.
CHUNK = PIECE // 2

# A JSON escape: an escaped backslash (left as it is, so `\\u0073` stays text), `\/`, or \uXXXX.
_ESCAPE = re.compile(r"\\(\\|/|u[0-9a-fA-F]{4})")
_ANSWER_FIELDS = tuple(field.name for field in dataclasses.fields(Answer))


class Redactor:
    """Replaces the key (and any piece of it long enough to matter) in texts with `***`."""

    __slots__ = ("_chunks", "_key", "_needles")

    def __init__(self, key: str | None) -> None:
        self._key = key or ""
        n = len(self._key)
        self._chunks = (
            tuple((c, self._key[c:c + CHUNK]) for c in range(0, n - CHUNK + 1, CHUNK))
            if n >= PIECE else ()
        )
        # What any piece must contain: an aligned chunk, or the key's first or last EDGE
        # characters (a piece at a cut); a short key only ever whole.
        self._needles = (
            (*(chunk for _, chunk in self._chunks), self._key[:EDGE], self._key[-EDGE:])
            if self._chunks else (self._key,) if self._key else ()
        )

    def __bool__(self) -> bool:
        """Whether there is a key to redact at all."""
        return bool(self._needles)

    def may_hold(self, text: str) -> bool:
        """Whether `text` may hold a piece of the key: False is certain, and cheap to learn.

        One call over several texts joined is how a whole answer is checked at the cost of one.
        """
        if not self._needles:
            return False
        return "\\u" in text or "\\/" in text or any(needle in text for needle in self._needles)

    def __call__(self, text: str) -> str:
        """`text` with the key's pieces replaced; the same object when there were none."""
        if not self._key or not text:
            return text
        if "\\u" in text or "\\/" in text:
            decoded = _ESCAPE.sub(_unescape, text)
            if decoded != text:
                # The decoded form holds every piece the text does, and the escaped ones too.
                # It replaces the text only when a piece was found, so a text without the key
                # keeps its escapes exactly as sent.
                spans = self._spans(decoded)
                return _masked(decoded, spans) if spans else text
        spans = self._spans(text)
        return _masked(text, spans) if spans else text

    def preview(self, text: str, limit: int) -> str:
        """The start of `text` for a message: redacted, cut, and redacted again at the cut.

        Cut only after redacting, so a key across the cut is never left half-hidden; then once
        more, for a piece of the key that ends exactly where the text is cut.
        """
        return self(self(text).strip()[:limit])

    def answer(self, answer: Answer, raw: str | None) -> tuple[Answer, str | None]:
        """`answer` with every text it carries redacted, whatever its field, and `raw` too."""
        if not self:
            return answer, raw
        texts = [(name, value) for name in _ANSWER_FIELDS
                 if (value := getattr(answer, name)) and isinstance(value, str | list | dict)]
        # All fields at once first: an answer almost never holds the key.
        probe = "\n".join(value if isinstance(value, str) else orjson.dumps(value).decode()
                          for _, value in texts)
        if not self.may_hold(probe) and not (raw and self.may_hold(raw)):
            return answer, raw
        changed: dict[str, Any] = {}
        for name, value in texts:
            clean = self(value) if isinstance(value, str) else self.value(value)
            if clean is not value and clean != value:
                changed[name] = clean
        if changed:
            answer = dataclasses.replace(answer, **changed)
        return answer, self(raw) if raw is not None else None

    def value(self, value: Any) -> Any:
        """A JSON-like value with every string in it (keys of objects too) redacted."""
        if isinstance(value, str):
            return self(value)
        if isinstance(value, list):
            return [self.value(item) for item in value]
        if isinstance(value, dict):
            return {self(k): self.value(v) for k, v in value.items()}
        return value

    def _spans(self, text: str) -> list[tuple[int, int]]:
        key, n = self._key, len(self._key)
        spans: list[tuple[int, int]] = []
        if not self._chunks:  # a short key: only the whole of it
            at = text.find(key)
            while at != -1:
                spans.append((at, at + n))
                at = text.find(key, at + n)
        for offset, chunk in self._chunks:
            at = text.find(chunk)
            while at != -1:
                start, end = _extend(text, key, at, offset)
                if end - start >= PIECE:
                    spans.append((start, end))
                at = text.find(chunk, at + 1)
        if not self._chunks:
            return spans
        edge = EDGE
        tail = len(text) - min(n, len(text))
        at = text.find(key[:edge], tail)
        while at != -1:  # the key's beginning at the very end: the text was cut in the key
            if key.startswith(text[at:]):
                spans.append((at, len(text)))
                break
            at = text.find(key[:edge], at + 1)
        head = text[:n]
        at = head.rfind(key[-edge:])
        while at != -1:  # the key's end at the very start: the text was cut in front of it
            if key.endswith(head[:at + edge]):
                spans.append((0, at + edge))
                break
            at = head.rfind(key[-edge:], 0, at + edge - 1)
        return spans


def _extend(text: str, key: str, at: int, offset: int) -> tuple[int, int]:
    """The run around `text[at:]`, which matches the key from `offset`, as far as both agree."""
    start, k = at, offset
    while start > 0 and k > 0 and text[start - 1] == key[k - 1]:
        start, k = start - 1, k - 1
    end, k = at + CHUNK, offset + CHUNK
    while end < len(text) and k < len(key) and text[end] == key[k]:
        end, k = end + 1, k + 1
    return start, end


def _masked(text: str, spans: list[tuple[int, int]]) -> str:
    out: list[str] = []
    last = 0
    for start, end in sorted(spans):
        if end <= last:
            continue
        out.append(text[last:start] if start > last else "")
        if start >= last:
            out.append(MASK)
        last = end
    out.append(text[last:])
    return "".join(out)


def _unescape(match: re.Match[str]) -> str:
    escape = match.group(1)
    if escape == "\\":
        return match.group(0)
    if escape == "/":
        return "/"
    code = int(escape[1:], 16)
    # Leave what would change the JSON around it: quotes, backslashes, control characters and
    # halves of surrogate pairs stay escaped (a key is made of none of them).
    if code < 0x20 or code in (0x22, 0x5C) or 0xD800 <= code <= 0xDFFF:
        return match.group(0)
    return chr(code)
