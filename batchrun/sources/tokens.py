"""Offline token estimates: no tokenizer, no network, good to a few tens of percent.

Latin-script text runs near four characters per token in the tokenizers of GPT, Claude and Qwen;
CJK text near one token per character (often a little less). We count ASCII characters with one
C-level call and treat everything else as CJK-like, which overestimates accented Latin text a
little: estimates feed rate-limit reservations and budget bounds, where erring high is safe.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from batchrun.parse.common import text_of

LATIN_CHARS_PER_TOKEN = 4.0
OTHER_TOKENS_PER_CHAR = 1.0
# Every chat message costs a few tokens of framing (role markers, separators).
TOKENS_PER_MESSAGE = 4


def estimate_text_tokens(text: str) -> int:
    """Estimated tokens of one text."""
    if not text:
        return 0
    ascii_chars = len(text.encode("ascii", "ignore"))
    other_chars = len(text) - ascii_chars
    return int(ascii_chars / LATIN_CHARS_PER_TOKEN + other_chars * OTHER_TOKENS_PER_CHAR) + 1


def estimate_messages_tokens(messages: Iterable[Mapping[str, Any]]) -> int:
    """Estimated prompt tokens of a chat message list."""
    total = 0
    for message in messages:
        total += TOKENS_PER_MESSAGE + estimate_text_tokens(text_of(message.get("content")) or "")
    return total
