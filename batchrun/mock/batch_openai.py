"""OpenAI's Batch API in the mock: `POST /v1/batches`, `GET /v1/batches[/{id}]`, cancel.

A batch is `validating` for the first tenth of `batch_seconds`, then `in_progress` while its
lines are answered one after another (request_counts grow), `finalizing` for the last
`batch_finalizing_share` with every count already final, then `completed` with its output and
error files. It may instead end `failed` (an invalid input file, or an injected
token_limit_exceeded), `expired` (the window closes on some lines: they go to the error file as
batch_expired, the answered ones to the output file), or `cancelling` then `cancelled`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from batchrun.mock.answer import request_key
from batchrun.mock.batch_files import (
    FileStore,
    StoredFile,
    check_input,
    json_response,
    not_found,
    openai_error,
)
from batchrun.mock.batches import (
    CANCEL_SHARE,
    UNPLANNED,
    BatchLedger,
    Job,
    Line,
    LinePlanner,
    LineWire,
    schedule,
)
from batchrun.mock.config import MockConfig

ENDPOINTS = ("/v1/responses", "/v1/chat/completions", "/v1/embeddings", "/v1/completions",
             "/v1/moderations", "/v1/images/generations", "/v1/images/edits", "/v1/videos")
SERVED = ("/v1/chat/completions", "/v1/responses")
WINDOWS = ("24h",)
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
VALIDATING_SHARE = 0.1
DAY_S = 86_400
_UNFINISHED = {
    "batch_expired": "This request could not be executed before the completion window expired.",
    "batch_cancelled": "This request was not executed because the batch was cancelled.",
}


@dataclass(slots=True)
class OpenAIBatch:
    """One batch: the shared job and the fields only OpenAI has."""

    job: Job
    endpoint: str
    input_file_id: str
    metadata: dict[str, str] | None
    model: str | None
    work_ends: float  # monotonic: the last line that will be answered is answered
    errors: list[dict[str, Any]] = field(default_factory=list)
    output_file_id: str | None = None
    error_file_id: str | None = None


def _quoted(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


def _create_problem(body: Any) -> web.Response | None:
    """The 400 a create request gets before any batch exists, or None."""
    if not isinstance(body, dict):
        return openai_error(400, "The body must be a JSON object.")
    for key in ("input_file_id", "endpoint", "completion_window"):
        if not isinstance(body.get(key), str):
            return openai_error(400, f"Missing required parameter: '{key}'.", param=key,
                                code="missing_required_parameter")
    endpoint, window = body["endpoint"], body["completion_window"]
    if endpoint not in ENDPOINTS:
        return openai_error(400, f"Invalid value: '{endpoint}'. Supported values are: "
                            f"{_quoted(ENDPOINTS)}.", param="endpoint", code="invalid_value")
    if endpoint not in SERVED:
        return openai_error(400, f"The mock runs batches of {_quoted(SERVED)} only, not "
                            f"'{endpoint}'.", param="endpoint", code="invalid_value")
    if window not in WINDOWS:
        return openai_error(400, f"Invalid value: '{window}'. Supported values are: "
                            f"{_quoted(WINDOWS)}.", param="completion_window",
                            code="invalid_value")
    return _metadata_problem(body.get("metadata"))


def _metadata_problem(metadata: Any) -> web.Response | None:
    if metadata is None:
        return None
    ok = (
        isinstance(metadata, dict)
        and len(metadata) <= 16
        and all(isinstance(k, str) and len(k) <= 64 for k in metadata)
        and all(isinstance(v, str) and len(v) <= 512 for v in metadata.values())
    )
    if ok:
        return None
    return openai_error(400, "Invalid 'metadata': at most 16 pairs of strings, keys of at most "
                        "64 characters, values of at most 512.", param="metadata",
                        code="invalid_value")


class OpenAIBatches:
    """The batches of the OpenAI side, on top of the shared ledger and the file store."""

    def __init__(
        self,
        config: MockConfig,
        ledger: BatchLedger,
        planner: LinePlanner,
        files: FileStore,
        wires: Mapping[str, LineWire],
        new_hex: Callable[[], str],
    ) -> None:
        self.config, self.ledger, self.planner, self.files = config, ledger, planner, files
        self.batches: dict[str, OpenAIBatch] = {}
        self._wires = wires
        self._new_hex = new_hex
        self._failures_left = config.batch_validation_failures

    async def create(self, request: web.Request) -> web.Response:
        """POST /v1/batches."""
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return openai_error(400, "We could not parse the JSON body of your request.")
        problem = _create_problem(body)
        if problem is not None:
            return problem
        stored = self.files.find(body["input_file_id"])
        if stored is None:
            return not_found("File", body["input_file_id"], param="input_file_id")
        if stored.purpose != "batch":
            return openai_error(400, f"The input file was uploaded with purpose "
                                f"'{stored.purpose}'; a batch needs purpose 'batch'.",
                                param="input_file_id", code="invalid_value")
        batch = self._new_batch(body, stored)
        return json_response(200, self._object(batch, time.monotonic()))

    def _new_batch(self, body: dict[str, Any], stored: StoredFile) -> OpenAIBatch:
        endpoint = body["endpoint"]
        items, model, errors = check_input(stored.content, endpoint)
        if not errors and self._failures_left > 0:
            self._failures_left -= 1
            errors = [{"code": "token_limit_exceeded", "param": None, "line": None,
                       "message": f"Enqueued token limit reached for {model} in organization "
                       "org-mock. Please try again once some in_progress batches have been "
                       "completed."}]
        now, span = time.monotonic(), self.config.batch_seconds
        seq = self.ledger.next_seq()
        job = Job(id=f"batch_{self._new_hex()}", api="openai", seq=seq, lines=[], created=now,
                  wall=time.time(), starts=now + VALIDATING_SHARE * span, ends=now + span,
                  failed=bool(errors), seed=f"{self.config.seed}:openai:{seq}")
        work_ends = now + (1 - self.config.batch_finalizing_share) * span
        if errors:
            job.lines = [Line(cid, "", UNPLANNED) for cid, _ in items]
            job.ends = job.starts
        else:
            job.lines = self._plan(items, endpoint, job.seed)
            job.expiring = schedule(job.lines, job.starts, work_ends,
                                    self.config.batch_expire_share)
        batch = OpenAIBatch(job, endpoint, stored.id, body.get("metadata"), model, work_ends,
                            errors)
        job.on_end = lambda _: self._finish(batch)
        self.batches[job.id] = batch
        self.ledger.add(job)
        return batch

    def _plan(
        self, items: list[tuple[str, dict[str, Any]]], endpoint: str, seed: str
    ) -> list[Line]:
        wire, rng, stats = self._wires[endpoint], random.Random(seed), self.ledger.stats
        return [Line(cid, request_key(body), self.planner.plan(stats, wire, body, rng))
                for cid, body in items]

    def retrieve(self, batch_id: str) -> web.Response:
        """GET /v1/batches/{id}."""
        batch = self.batches.get(batch_id)
        if batch is None:
            return not_found("Batch", batch_id)
        return json_response(200, self._object(batch, time.monotonic()))

    def list_batches(self, query: Mapping[str, str]) -> web.Response:
        """GET /v1/batches?limit=&after=: newest first."""
        try:
            limit = int(query.get("limit", "20"))
        except ValueError:
            limit = 0
        if not 1 <= limit <= 100:
            return openai_error(400, "Invalid 'limit': an integer between 1 and 100.",
                                param="limit", code="invalid_value")
        now = time.monotonic()
        ordered = sorted(self.batches.values(), key=lambda b: -b.job.seq)
        ids = [b.job.id for b in ordered]
        after = query.get("after")
        start = ids.index(after) + 1 if after in ids else (len(ids) if after else 0)
        page = ordered[start : start + limit]
        data = [self._object(b, now) for b in page]
        return json_response(200, {
            "object": "list", "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": start + limit < len(ordered),
        })

    def cancel(self, batch_id: str) -> web.Response:
        """POST /v1/batches/{id}/cancel: cancelling for a tenth of batch_seconds, then cancelled."""
        batch = self.batches.get(batch_id)
        if batch is None:
            return not_found("Batch", batch_id)
        now = time.monotonic()
        status = self._status(batch, now)
        if status in TERMINAL:
            return openai_error(409, f"Cannot cancel a batch with status '{status}'.")
        if status != "cancelling":
            self.ledger.cancel(batch.job, now, CANCEL_SHARE * self.config.batch_seconds)
        return json_response(200, self._object(batch, now))

    def _status(self, batch: OpenAIBatch, now: float) -> str:
        job = batch.job
        self.ledger.observe(job, now)
        if job.settled:
            return job.status
        if job.cancel_at is not None:
            return "cancelling"
        if now < job.starts:
            return "validating"
        if job.expiring or now < batch.work_ends:
            return "in_progress"
        return "finalizing"

    def _object(self, batch: OpenAIBatch, now: float) -> dict[str, Any]:
        """The batch object as it stands at `now`."""
        job = batch.job
        status = self._status(batch, now)

        def stamp(moment: float, reached: bool = True) -> int | None:
            return int(job.wall_at(moment)) if reached and moment <= now else None

        started = not job.failed and job.cutoff >= job.starts  # not cancelled while validating
        done = job.done(now) if started and now >= job.starts else []
        ok = [line for line in done if line.outcome.ok]
        return {
            "id": job.id, "object": "batch", "endpoint": batch.endpoint, "model": batch.model,
            "errors": {"object": "list", "data": batch.errors} if batch.errors else None,
            "input_file_id": batch.input_file_id, "completion_window": "24h",
            "status": status, "output_file_id": batch.output_file_id,
            "error_file_id": batch.error_file_id, "created_at": int(job.wall),
            "in_progress_at": stamp(job.starts, started),
            "expires_at": int(job.wall) + DAY_S,
            "finalizing_at": stamp(batch.work_ends, started and not job.expiring
                                   and job.cutoff >= batch.work_ends),
            "completed_at": stamp(job.ends, status == "completed"),
            "failed_at": stamp(job.starts, status == "failed"),
            "expired_at": stamp(job.ends, status == "expired"),
            "cancelling_at": stamp(job.cancel_at) if job.cancel_at is not None else None,
            "cancelled_at": stamp(job.cancel_ends, status == "cancelled"),
            "request_counts": {"total": len(job.lines) if started and now >= job.starts else 0,
                               "completed": len(ok), "failed": len(done) - len(ok)},
            "usage": _usage(ok),
            "metadata": batch.metadata,
        }

    def _finish(self, batch: OpenAIBatch) -> str:
        """The batch has ended: write its output and error files; return its final status."""
        job = batch.job
        if job.cancel_at is None and job.failed:
            return "failed"
        done = {id(line) for line in job.done(job.end)}
        unfinished = "batch_cancelled" if job.cancel_at is not None else "batch_expired"
        output: list[bytes] = []
        errors: list[bytes] = []
        for line in job.lines:
            if id(line) not in done:
                errors.append(self._unfinished_line(line, unfinished))
            elif line.outcome.ok:
                output.append(self._answered_line(line))
            else:
                errors.append(self._answered_line(line))
        if self.config.batch_shuffle_results:
            shuffler = random.Random(job.seed + ":shuffle")
            shuffler.shuffle(output)
            shuffler.shuffle(errors)
        if output and not self.config.batch_no_output_file:
            batch.output_file_id = self._file(job.id, "output", output)
        if errors:
            batch.error_file_id = self._file(job.id, "error", errors)
        if job.cancel_at is not None:
            return "cancelled"
        return "expired" if job.expiring else "completed"

    def _file(self, batch_id: str, kind: str, lines: list[bytes]) -> str:
        content = b"".join(line + b"\n" for line in lines)
        return self.files.add(f"{batch_id}_{kind}.jsonl", "batch_output", content).id

    def _answered_line(self, line: Line) -> bytes:
        response = {"status_code": line.outcome.status, "request_id": f"req_{self._new_hex()}",
                    "body": orjson.loads(line.outcome.payload)}
        return orjson.dumps({"id": f"batch_req_{self._new_hex()}", "custom_id": line.custom_id,
                             "response": response, "error": None})

    def _unfinished_line(self, line: Line, code: str) -> bytes:
        return orjson.dumps({"id": f"batch_req_{self._new_hex()}", "custom_id": line.custom_id,
                             "response": None,
                             "error": {"code": code, "message": _UNFINISHED[code]}})


def _usage(lines: list[Line]) -> dict[str, Any]:
    """The batch's token usage so far: the answered lines'."""
    prompt = sum(line.outcome.prompt_tokens for line in lines)
    completion = sum(line.outcome.completion_tokens for line in lines)
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {
            "reasoning_tokens": sum(line.outcome.reasoning_tokens for line in lines)},
        "total_tokens": prompt + completion,
    }
