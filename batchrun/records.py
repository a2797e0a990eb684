"""Result records: one dict per finished request, in the columns of the output."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import orjson

from batchrun.answer import Answer, Usage
from batchrun.errors import InvalidAnswer, RequestError
from batchrun.usage import row_cost

if TYPE_CHECKING:
    from batchrun.job import Price
    from batchrun.providers.http import Reply
    from batchrun.requests import Request
    from batchrun.structured import Structured


def _base(request: Request, attempts: int) -> dict[str, Any]:
    return {
        "id": request.row_id,
        "variant": request.variant,
        "provider": request.provider,
        "model": request.model,
        "sample": request.sample,
        "request_hash": request.hash,
        "attempts": attempts,
        "finished_at": int(time.time() * 1_000_000),
    }


def _answer_columns(answer: Answer, usage: Usage, price: Price | None) -> dict[str, Any]:
    total = usage.total_tokens
    if total is None and usage.prompt_tokens is not None and usage.completion_tokens is not None:
        total = usage.prompt_tokens + usage.completion_tokens
    return {
        "content": answer.content,
        "reasoning": answer.reasoning,
        "tool_calls": orjson.dumps(answer.tool_calls).decode() if answer.tool_calls else None,
        "finish_reason": answer.finish_reason,
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "reasoning_tokens": usage.reasoning_tokens,
        "cached_tokens": usage.cached_tokens,
        "total_tokens": total,
        "cost_usd": row_cost(usage, price),
        "response_id": answer.response_id,
    }


_EMPTY_ANSWER = dict.fromkeys(
    ("content", "reasoning", "tool_calls", "finish_reason", "prompt_tokens", "completion_tokens",
     "reasoning_tokens", "cached_tokens", "total_tokens", "cost_usd", "response_id")
)


def ok_record(
    request: Request,
    reply: Reply,
    attempts: int,
    structured: Structured | None,
    price: Price | None,
    usage: Usage,
) -> dict[str, Any]:
    """The record of a request that ended ok; `usage` covers every answer paid for."""
    record = _base(request, attempts)
    record.update(_answer_columns(reply.answer, usage, price))
    record.update(
        status="ok",
        parsed=structured.parsed if structured is not None else None,
        latency_s=reply.latency_s,
        error_type=None,
        error_message=None,
        raw=reply.raw,
    )
    if structured is not None:
        record.update(structured.fields)
    record.update(request.keep)
    return record


def error_record(
    request: Request,
    error: RequestError,
    attempts: int,
    reply: Reply | None,
    price: Price | None,
    usage: Usage | None,
) -> dict[str, Any]:
    """The record of a request that ended in error; answers paid for keep their usage."""
    record = _base(request, attempts)
    if isinstance(error, InvalidAnswer) and reply is not None:
        # The answer was paid for: keep its text and usage so the cost is not lost.
        record.update(_answer_columns(reply.answer, usage or reply.answer.usage, price))
    else:
        record.update(_EMPTY_ANSWER)
        if usage is not None:  # earlier attempts were answered (and rejected), then one failed
            record.update(_answer_columns(Answer(content=None), usage, price))
            record.update(content=None, finish_reason=None, response_id=None)
    record.update(
        status="error",
        parsed=None,
        latency_s=None,
        error_type=error.error_type,
        error_message=error.message,
        raw=None,
    )
    record.update(request.keep)
    return record
