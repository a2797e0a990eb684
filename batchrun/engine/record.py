"""Result records: one typed, frozen record per finished request, in the columns of the output."""

from __future__ import annotations

import operator
import time
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import orjson

from batchrun.errors import InvalidAnswer, RequestError
from batchrun.parse import Answer

if TYPE_CHECKING:
    from batchrun.parse import Structured, Usage
    from batchrun.providers.http import Reply
    from batchrun.sources import Request


@dataclass(frozen=True, slots=True)
class ResultRecord:
    """One finished request, ok or error, as its journal line and its output row hold it.

    `extra` holds the input's keep_columns and the `parse.fields` values, spread into columns of
    their own; `finished_at` is microseconds since the epoch.
    """

    id: str
    variant: str
    provider: str
    model: str
    sample: int
    request_hash: str
    status: str
    attempts: int
    finished_at: int
    content: str | None = None
    reasoning: str | None = None
    refusal: str | None = None
    parsed: str | None = None
    tool_calls: str | None = None
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    reasoning_tokens: int | None = None
    cached_tokens: int | None = None
    total_tokens: int | None = None
    cost_usd: float | None = None
    latency_s: float | None = None
    error_type: str | None = None
    error_message: str | None = None
    response_id: str | None = None
    raw: str | None = None
    mode: str = "online"  # "batch" for rows answered through a provider's batch API
    batch_id: str | None = None
    extra: Mapping[str, Any] | None = None

    @property
    def ok(self) -> bool:
        """Whether the request ended ok."""
        return self.status == "ok"

    @property
    def answered(self) -> bool:
        """Whether some answer was received (and so paid for), even if it was then rejected."""
        return self.ok or self.prompt_tokens is not None

    def to_line(self) -> bytes:
        """The journal line: one JSON object, the result columns then the extra ones."""
        row = dict(zip(_COLUMNS, _values(self), strict=True))
        if self.extra:
            row.update(self.extra)
        # default=str: Decimal and other exotic input values in keep_columns.
        return orjson.dumps(row, default=str) + b"\n"


# `shard` is not a record field: readers set it from the shard folder a result lies in.
_COLUMNS = tuple(f.name for f in fields(ResultRecord) if f.name != "extra")
_values = operator.attrgetter(*_COLUMNS)


def _answer_columns(answer: Answer, usage: Usage, request: Request) -> dict[str, Any]:
    return {
        "content": answer.content,
        "reasoning": answer.reasoning,
        "refusal": answer.refusal,
        "tool_calls": orjson.dumps(answer.tool_calls).decode() if answer.tool_calls else None,
        "finish_reason": answer.finish_reason,
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "reasoning_tokens": usage.reasoning_tokens,
        "cached_tokens": usage.cached_tokens,
        "total_tokens": usage.total_tokens,
        "cost_usd": request.price.cost(usage) if request.price is not None else None,
        "response_id": answer.response_id,
    }


def ok_record(
    request: Request, reply: Reply, attempts: int, structured: Structured | None, usage: Usage
) -> ResultRecord:
    """The record of a request that ended ok; `usage` covers every answer paid for."""
    extra = dict(request.keep)
    if structured is not None:
        extra.update(structured.fields)
    return ResultRecord(
        request.row_id, request.variant, request.provider, request.model, request.sample,
        request.hash, "ok", attempts, now_us(),
        parsed=structured.parsed if structured is not None else None,
        latency_s=reply.latency_s, raw=reply.raw, extra=extra,
        **_answer_columns(reply.answer, usage, request),
    )


def error_record(
    request: Request, error: RequestError, attempts: int, reply: Reply | None,
    usage: Usage | None,
) -> ResultRecord:
    """The record of a request that ended in error; answers paid for keep their usage."""
    answered: dict[str, Any] = {}
    if isinstance(error, InvalidAnswer) and reply is not None:
        # The answer was paid for: keep its text and usage so the cost is not lost.
        answered = _answer_columns(reply.answer, usage or reply.answer.usage, request)
    elif usage is not None:
        # Earlier attempts were answered (and rejected), then one failed: keep what was paid.
        answered = {k: v for k, v in _answer_columns(_NO_ANSWER, usage, request).items()
                    if k not in ("content", "refusal", "finish_reason", "response_id")}
    return ResultRecord(
        request.row_id, request.variant, request.provider, request.model, request.sample,
        request.hash, "error", attempts, now_us(),
        error_type=error.error_type, error_message=error.message, extra=request.keep,
        **answered,
    )


def now_us() -> int:
    """Now, in microseconds since the epoch (the journal's `finished_at`)."""
    return int(time.time() * 1_000_000)


_NO_ANSWER = Answer(content=None)
