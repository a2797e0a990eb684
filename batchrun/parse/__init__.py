"""Bytes and JSON -> `Answer`, pure: SSE, bodies and streams per format, reasoning, usage, errors.

Nothing here does I/O or knows the transport: callers hand in parsed JSON or stream events.
"""

from batchrun.parse.answer import Answer, Usage
from batchrun.parse.anthropic import AnthropicStream, parse_anthropic
from batchrun.parse.error_bodies import error_from_body
from batchrun.parse.json_answers import AnswerChecker, Structured
from batchrun.parse.openai import OpenAIStream, parse_openai
from batchrun.parse.reasoning import separate, split_think
from batchrun.parse.sse import SSEDecoder, SSEEvent
from batchrun.parse.usage import anthropic_usage, openai_usage

__all__ = [
    "Answer",
    "AnswerChecker",
    "AnthropicStream",
    "OpenAIStream",
    "SSEDecoder",
    "SSEEvent",
    "Structured",
    "Usage",
    "anthropic_usage",
    "error_from_body",
    "openai_usage",
    "parse_anthropic",
    "parse_openai",
    "separate",
    "split_think",
]
