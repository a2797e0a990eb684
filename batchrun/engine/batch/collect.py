"""An ended batch's result lines -> result records, and what to do with the unfinished ones.

Lines are matched to their requests by custom_id, in whatever order they come; a line whose
custom_id is not the batch's, or a second line for the same one, is ignored. Answers go through
the wire format's own body parser, exactly as online answers do. A request with no line (the
batch failed, lost its output file, or vanished) and the lines that come back expired,
cancelled or with a retryable error are *unfinished*: `[batch] unfinished` says whether they
are resubmitted (up to `[retry] max_attempts` batches), sent online, or recorded as errors.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from batchrun.engine.record import ResultRecord, now_us
from batchrun.errors import InvalidAnswer, RequestError, RetryableError
from batchrun.job import Price
from batchrun.store import done_key

if TYPE_CHECKING:
    from batchrun.engine.batch.plan import Pending
    from batchrun.job import Job
    from batchrun.parse import Answer, AnswerChecker
    from batchrun.providers.batches.base import BatchAPI, ResultLine
    from batchrun.store.batches import BatchState

CHUNK_RECORDS = 1000
_UNFINISHED_TYPES = {"expired": "BatchExpired", "cancelled": "BatchCancelled",
                     "missing": "BatchFailed"}


@dataclass(slots=True)
class Collected:
    """What committing a batch decided, besides the records it wrote."""

    ok: int = 0
    error: int = 0
    cost_usd: float = 0.0
    priced: bool = False
    resubmit: list[str] = field(default_factory=list)
    online: list[list[str]] = field(default_factory=list)


class Collector:
    """Reads one ended batch's result files into records, chunk by chunk.

    `leave_unfinished`: a cancel leaves its unfinished requests pending, neither resubmitted nor
    recorded, for a later run to plan again.
    """

    def __init__(
        self, job: Job, state: BatchState, api: BatchAPI, files: list[Path], sidecar: Path,
        pending: Pending, checker: AnswerChecker | None, *,
        leave_unfinished: bool = False,
    ) -> None:
        self.job = job
        self.state = state
        self.api = api
        self.files = files
        self.sidecar = sidecar
        self.pending = pending
        self.resubmits = pending.resubmits
        self.checker = checker
        self.leave_unfinished = leave_unfinished
        self.price = Price(**state.price) if state.price else None
        self.outcome = Collected(priced=self.price is not None)
        self._chunk: list[ResultRecord] = []

    def chunks(self) -> Iterator[list[ResultRecord]]:
        """The records to write, a chunk at a time (blocking reads: call it in a thread)."""
        meta = _read_sidecar(self.sidecar)
        for path in self.files:
            for line in self.api.read_results(path):
                request = meta.pop(line.custom_id, None)
                if request is None:
                    continue  # another batch's line, or a second one for the same request
                self._line(line, request)
                if len(self._chunk) >= CHUNK_RECORDS:
                    yield self._take()
        reason = self.state.message or f"batch {self.state.batch_id} returned no line for it"
        for request in meta.values():
            if self.state.status == "refused":  # sending it again gets the same refusal
                self._error(request, self.state.error_type or "BatchFailed", reason)
            else:
                self._unfinished(request, "missing", reason)
            if len(self._chunk) >= CHUNK_RECORDS:
                yield self._take()
        if self._chunk:
            yield self._take()

    def _take(self) -> list[ResultRecord]:
        chunk, self._chunk = self._chunk, []
        return chunk

    def _line(self, line: ResultLine, request: dict[str, Any]) -> None:
        if line.kind == "ok":
            try:
                answer = self.api.wire.parse_body(line.body, reasoning=self.job.parse.reasoning)
            except RequestError as error:
                self._failed(request, error)
                return
            self._answered(request, answer, line.body)
        elif line.kind == "error":
            assert line.error is not None
            self._failed(request, line.error)
        else:
            what = "expired before" if line.kind == "expired" else "was cancelled before"
            self._unfinished(request, line.kind,
                             f"batch {self.state.batch_id} {what} this request was answered")

    def _answered(self, request: dict[str, Any], answer: Answer, body: Any) -> None:
        answer, raw = self.api.http.redact.answer(
            answer, orjson.dumps(body).decode() if self.job.output.keep_raw else None)
        extra = dict(request["keep"])
        parsed: str | None = None
        failure: InvalidAnswer | None = None
        if self.checker is not None and answer.refusal is None:
            try:
                structured = self.checker.check(answer.content)
            except InvalidAnswer as error:
                failure = error  # paid for, and asking again costs a batch: recorded as it is
            else:
                parsed = structured.parsed
                extra.update(structured.fields)
        usage = answer.usage
        cost = self.price.batch_cost(usage) if self.price is not None else None
        self._add(request, "ok" if failure is None else "error", extra=extra, parsed=parsed,
                  content=answer.content, reasoning=answer.reasoning, refusal=answer.refusal,
                  tool_calls=orjson.dumps(answer.tool_calls).decode() if answer.tool_calls
                  else None, finish_reason=answer.finish_reason,
                  prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens,
                  reasoning_tokens=usage.reasoning_tokens, cached_tokens=usage.cached_tokens,
                  total_tokens=usage.total_tokens, cost_usd=cost, response_id=answer.response_id,
                  raw=raw, error_type=failure.error_type if failure else None,
                  error_message=failure.message if failure else None)

    def _failed(self, request: dict[str, Any], error: RequestError) -> None:
        if isinstance(error, RetryableError) and not isinstance(error, InvalidAnswer):
            self._unfinished(request, "error", error.message, error.error_type)
        else:
            self._error(request, error.error_type, error.message)

    def _unfinished(
        self, request: dict[str, Any], kind: str, message: str, error_type: str | None = None
    ) -> None:
        if self.leave_unfinished:
            return
        policy = self.job.batch.unfinished
        cid = request["cid"]
        kind_type = error_type or _UNFINISHED_TYPES.get(kind, "BatchFailed")
        if policy == "online":
            self.outcome.online.append([cid, request["id"]])
        elif policy == "resubmit":
            batches = 1 + self.resubmits.get(cid, 0)
            if batches < self.job.retry.max_attempts:
                self.outcome.resubmit.append(cid)
            else:
                self._error(request, kind_type, f"{message} (after {batches} batches; "
                            "[retry] max_attempts)")
        else:
            self._error(request, kind_type, message)

    def _error(self, request: dict[str, Any], error_type: str, message: str) -> None:
        self._add(request, "error", extra=dict(request["keep"]), error_type=error_type,
                  error_message=message)

    def _add(self, request: dict[str, Any], status: str, *, extra: dict[str, Any],
             **columns: Any) -> None:
        if self.pending.done(done_key(request["id"], request["hash"])):
            return  # written by a commit that a crash cut short
        state = self.state
        record = ResultRecord(
            request["id"], state.variant, state.provider, state.model, int(request["sample"]),
            request["hash"], status, 1 + self.resubmits.get(request["cid"], 0), now_us(),
            mode="batch", batch_id=state.batch_id, extra=extra, **columns,
        )
        outcome = self.outcome
        if record.ok:
            outcome.ok += 1
        else:
            outcome.error += 1
        if record.cost_usd is not None:
            outcome.cost_usd += record.cost_usd
        self._chunk.append(record)


def _read_sidecar(path: Path) -> dict[str, dict[str, Any]]:
    with path.open("rb") as lines:
        return {item["cid"]: item for item in map(orjson.loads, lines)}
