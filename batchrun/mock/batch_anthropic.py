"""Anthropic's Message Batches API in the mock: `/v1/messages/batches` and its results.

A batch is `in_progress` for `batch_seconds` (request_counts say every request is `processing`
until the end, as Anthropic's do), `canceling` for a tenth of that after a cancel, then `ended`
with a `results_url` on the mock's own host. Each request's `params` are checked when it is
processed, not at creation: a bad one ends `errored` with an invalid_request_error. Its
`custom_id` is checked at creation (pattern, uniqueness), refusing the whole batch with a 400.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from batchrun.mock.answer import request_key
from batchrun.mock.anthropic import error_body
from batchrun.mock.batch_files import json_response
from batchrun.mock.batches import (
    CANCEL_SHARE,
    BatchLedger,
    Job,
    Line,
    LinePlanner,
    LineWire,
    rfc3339,
    schedule,
)
from batchrun.mock.config import MockConfig

CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
MAX_REQUESTS = 100_000
MAX_BYTES = 256 * 1000 * 1000
DAY_S = 86_400
_ITEM_KEYS = frozenset({"custom_id", "params"})


def anthropic_error(status: int, message: str) -> web.Response:
    """Anthropic's error object for an HTTP status."""
    return json_response(status, error_body(status, message))


def _not_found(batch_id: str) -> web.Response:
    return anthropic_error(404, f"Message batch {batch_id} was not found.")


def _requests_problem(body: Any) -> str | None:
    """Why a create request is refused as a whole, or None."""
    if not isinstance(body, dict) or "requests" not in body:
        return "requests: Field required"
    requests = body["requests"]
    if not isinstance(requests, list) or not requests:
        return "requests: List should have at least 1 item"
    if len(requests) > MAX_REQUESTS:
        return f"requests: List should have at most {MAX_REQUESTS} items, not {len(requests)}"
    seen: set[str] = set()
    for index, item in enumerate(requests):
        where = f"requests.{index}"
        if not isinstance(item, dict):
            return f"{where}: Input should be a valid dictionary"
        missing, extra = sorted(_ITEM_KEYS - item.keys()), sorted(item.keys() - _ITEM_KEYS)
        if missing:
            return f"{where}.{missing[0]}: Field required"
        if extra:
            return f"{where}.{extra[0]}: Extra inputs are not permitted"
        custom_id = item["custom_id"]
        if not isinstance(custom_id, str) or not CUSTOM_ID.fullmatch(custom_id):
            return f"{where}.custom_id: String should match pattern '{CUSTOM_ID.pattern}'"
        if custom_id in seen:
            return (f"{where}.custom_id: Duplicate custom_id '{custom_id}': each request in a "
                    "batch needs its own")
        seen.add(custom_id)
        if not isinstance(item["params"], dict):
            return f"{where}.params: Input should be a valid dictionary"
    return None


@dataclass(slots=True)
class MessageBatch:
    """One batch: the shared job and its results file once it has ended."""

    job: Job
    results: bytes | None = None  # the results file, once ended
    counts: dict[str, int] | None = None  # the final request_counts, once ended


class AnthropicBatches:
    """The message batches of the Anthropic side, on top of the shared ledger."""

    def __init__(
        self,
        config: MockConfig,
        ledger: BatchLedger,
        planner: LinePlanner,
        wire: LineWire,
        new_hex: Callable[[], str],
    ) -> None:
        self.config, self.ledger, self.planner, self.wire = config, ledger, planner, wire
        self.batches: dict[str, MessageBatch] = {}
        self._new_hex = new_hex
        self._failures_left = config.batch_validation_failures

    async def create(self, request: web.Request, base: str) -> web.Response:
        """POST /v1/messages/batches."""
        raw = await request.read()
        if len(raw) > MAX_BYTES:
            return anthropic_error(413, "Request exceeds the maximum size of 256 MB.")
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return anthropic_error(400, "The request body is not valid JSON.")
        problem = _requests_problem(body)
        if problem is None and self._failures_left > 0:
            self._failures_left -= 1
            problem = "requests: the batch failed validation (a failure injected by the mock)"
        if problem is not None:
            return anthropic_error(400, problem)
        batch = self._new_batch(body["requests"])
        return json_response(200, self._object(batch, time.monotonic(), base))

    def _new_batch(self, requests: list[dict[str, Any]]) -> MessageBatch:
        now, span = time.monotonic(), self.config.batch_seconds
        seq = self.ledger.next_seq()
        fresh = self._new_hex()  # 6 digits of boot, then a counter: keep both
        job = Job(id=f"msgbatch_{fresh[:6]}{fresh[-18:]}", api="anthropic", seq=seq, lines=[],
                  created=now, wall=time.time(), starts=now, ends=now + span,
                  seed=f"{self.config.seed}:anthropic:{seq}")
        rng, stats = random.Random(job.seed), self.ledger.stats
        job.lines = [
            Line(item["custom_id"], request_key(item["params"]),
                 self.planner.plan(stats, self.wire, item["params"], rng))
            for item in requests
        ]
        job.expiring = schedule(job.lines, job.starts, job.ends, self.config.batch_expire_share)
        batch = MessageBatch(job)
        job.on_end = lambda _: self._finish(batch)
        self.batches[job.id] = batch
        self.ledger.add(job)
        return batch

    def retrieve(self, batch_id: str, base: str) -> web.Response:
        """GET /v1/messages/batches/{id}."""
        batch = self.batches.get(batch_id)
        if batch is None:
            return _not_found(batch_id)
        return json_response(200, self._object(batch, time.monotonic(), base))

    def list_batches(self, query: Mapping[str, str], base: str) -> web.Response:
        """GET /v1/messages/batches?limit=&after_id=&before_id=: newest first."""
        try:
            limit = int(query.get("limit", "20"))
        except ValueError:
            limit = 0
        if not 1 <= limit <= 1000:
            return anthropic_error(400, "limit: Input should be between 1 and 1000")
        now = time.monotonic()
        ordered = sorted(self.batches.values(), key=lambda b: -b.job.seq)
        ids = [b.job.id for b in ordered]
        before, after = query.get("before_id"), query.get("after_id")
        if before is not None:
            end = ids.index(before) if before in ids else 0
            start = max(0, end - limit)
            has_more = start > 0
        else:
            start = ids.index(after) + 1 if after in ids else (len(ids) if after else 0)
            end = start + limit
            has_more = end < len(ids)
        data = [self._object(b, now, base) for b in ordered[start:end]]
        return json_response(200, {
            "data": data, "has_more": has_more,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
        })

    def cancel(self, batch_id: str, base: str) -> web.Response:
        """POST /v1/messages/batches/{id}/cancel: canceling, then ended with what was done."""
        batch = self.batches.get(batch_id)
        if batch is None:
            return _not_found(batch_id)
        now = time.monotonic()
        job = batch.job
        self.ledger.observe(job, now)
        if job.settled:
            return anthropic_error(400, f"Message batch {batch_id} has already ended and can no "
                                   "longer be canceled.")
        if job.cancel_at is None:
            self.ledger.cancel(job, now, CANCEL_SHARE * self.config.batch_seconds)
        return json_response(200, self._object(batch, now, base))

    def results(self, batch_id: str) -> web.Response:
        """GET /v1/messages/batches/{id}/results: JSONL, one line a request."""
        batch = self.batches.get(batch_id)
        if batch is None:
            return _not_found(batch_id)
        self.ledger.observe(batch.job, time.monotonic())
        if batch.results is None:
            return anthropic_error(400, f"Message batch {batch_id} is still processing; its "
                                   "results are available once processing_status is ended.")
        return web.Response(body=batch.results, content_type="application/binary")

    def delete(self, batch_id: str) -> web.Response:
        """DELETE /v1/messages/batches/{id}: only an ended batch."""
        batch = self.batches.get(batch_id)
        if batch is None:
            return _not_found(batch_id)
        self.ledger.observe(batch.job, time.monotonic())
        if not batch.job.settled:
            return anthropic_error(400, f"Message batch {batch_id} is still processing; cancel "
                                   "it before deleting it.")
        del self.batches[batch_id]
        return json_response(200, {"id": batch_id, "type": "message_batch_deleted"})

    def _object(self, batch: MessageBatch, now: float, base: str) -> dict[str, Any]:
        """The message batch object as it stands at `now`."""
        job = batch.job
        self.ledger.observe(job, now)
        status = "ended" if job.settled else "canceling" if job.cancel_at is not None else (
            "in_progress")
        return {
            "id": job.id,
            "type": "message_batch",
            "processing_status": status,
            "request_counts": batch.counts or {"processing": len(job.lines), "succeeded": 0,
                                               "errored": 0, "canceled": 0, "expired": 0},
            "ended_at": rfc3339(job.wall_at(job.end)) if job.settled else None,
            "created_at": rfc3339(job.wall),
            "expires_at": rfc3339(job.wall + DAY_S),
            "archived_at": None,
            "cancel_initiated_at": (
                rfc3339(job.wall_at(job.cancel_at)) if job.cancel_at is not None else None),
            "results_url": (
                f"{base}/messages/batches/{job.id}/results" if job.settled else None),
        }

    def _results(self, job: Job) -> list[tuple[str, Line]]:
        done = {id(line) for line in job.done(job.end)}
        unfinished = "canceled" if job.cancel_at is not None else "expired"
        return [(_kind(line, id(line) in done, unfinished), line) for line in job.lines]

    def _finish(self, batch: MessageBatch) -> str:
        """The batch has ended: count each request's result type and write the results file.

        Until then every request counts as `processing`, as Anthropic's counts do.
        """
        results = self._results(batch.job)
        counts = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        for kind, _ in results:
            counts[kind] += 1
        batch.counts = counts
        lines = [_result_line(kind, line) for kind, line in results]
        if self.config.batch_shuffle_results:
            random.Random(batch.job.seed + ":shuffle").shuffle(lines)
        batch.results = b"".join(line + b"\n" for line in lines)
        return "ended"


def _kind(line: Line, done: bool, unfinished: str) -> str:
    """A request's result type: what it answered when done, else canceled or expired."""
    if not done:
        return unfinished
    return "succeeded" if line.outcome.ok else "errored"


def _result_line(kind: str, line: Line) -> bytes:
    result: dict[str, Any] = {"type": kind}
    if kind == "succeeded":
        result["message"] = orjson.loads(line.outcome.payload)
    elif kind == "errored":
        result["error"] = orjson.loads(line.outcome.payload)
    return orjson.dumps({"custom_id": line.custom_id, "result": result})
